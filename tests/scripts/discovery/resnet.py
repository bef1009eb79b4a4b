"""torchvision's resnet18 (no pretrained weights) on 32x32 synthetic images, a few steps.
--poison LAYER sets that layer's weight to --value (nan or inf) before --poison-step."""

import argparse

import torch
import torch.nn.functional as F
import torchvision

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--poison", default="")
parser.add_argument("--poison-step", type=int, default=1)
parser.add_argument("--value", default="nan")
args = parser.parse_args()

torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None, num_classes=10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for step in range(args.steps):
    if args.poison and step == args.poison_step:
        with torch.no_grad():
            model.get_submodule(args.poison).weight[0] = float(args.value)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
