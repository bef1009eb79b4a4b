"""Trains two steps, then ends as told: --exit N calls sys.exit(N), --raise raises."""

import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--exit", type=int, default=None)
parser.add_argument("--raise", dest="raise_", action="store_true")
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = DataLoader(TensorDataset(torch.randn(32, 3), torch.randn(32, 1)), batch_size=8)
for step, (x, y) in enumerate(loader):
    if step == 2:
        if args.exit is not None:
            sys.exit(args.exit)
        if args.raise_:
            raise RuntimeError("the data is not what I expected")
    optimizer.zero_grad()
    F.mse_loss(model(x), y).backward()
    optimizer.step()
