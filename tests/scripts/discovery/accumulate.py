"""Gradient accumulation: backward on every batch (loss divided by the accumulation count),
optimizer.step() every --accum batches. Writes the mean unscaled loss of each step to --out."""

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--accum", type=int, default=4)
parser.add_argument("--batches", type=int, default=12)
parser.add_argument("--out", required=True)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
step_losses, window = [], []
optimizer.zero_grad()
for i in range(args.batches):
    x = torch.randn(8, 5)
    loss = F.mse_loss(model(x), x.sum(1, keepdim=True))
    window.append(loss.item())
    (loss / args.accum).backward()
    if (i + 1) % args.accum == 0:
        optimizer.step()
        optimizer.zero_grad()
        step_losses.append(sum(window) / len(window))
        window = []
with open(args.out, "w") as f:
    json.dump(step_losses, f)
