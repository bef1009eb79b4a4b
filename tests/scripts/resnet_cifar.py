"""torchvision's ResNet-18 (random init) on synthetic 32x32 images: a healthy control."""

import argparse

import torch
import torch.nn.functional as F
import torchvision

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=6)
args = parser.parse_args()

torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None, num_classes=10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 3, 32, 32, generator=g)
y = torch.randint(0, 10, (64,), generator=g)
for step in range(args.steps):
    batch = slice((step % 4) * 16, (step % 4) * 16 + 16)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x[batch]), y[batch])
    loss.backward()
    optimizer.step()
print("final loss", loss.item())
