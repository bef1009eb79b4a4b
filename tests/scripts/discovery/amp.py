"""Mixed precision with a GradScaler (on CPU: bfloat16 autocast). scaler.scale(loss).backward()
calls backward on loss * 65536; the training loss is still `loss`. With a huge --init-scale the
scaled loss overflows to inf in the first steps and the scaler skips optimizer.step() (normal
AMP calibration, not a NaN loss). Writes the losses of the iterations whose step was taken."""

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--init-scale", type=float, default=2.0**16)
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--out", required=True)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
scaler = torch.amp.GradScaler("cpu", init_scale=args.init_scale)
taken = []
for _ in range(args.steps):
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x).float(), y, reduction="sum")
    scaler.scale(loss).backward()
    before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    if scaler.get_scale() >= before:  # the scale only drops when the step was skipped
        taken.append(loss.item())
with open(args.out, "w") as f:
    json.dump(taken, f)
