"""Activation checkpointing: torch.utils.checkpoint re-runs the blocks' forward during backward.
Those calls are not new forwards of a model. --poison-step poisons the stem's weight."""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return x + F.relu(self.fc(self.norm(x)))


class Deep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 16)
        self.blocks = nn.ModuleList([Block(16) for _ in range(3)])
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False)
        return self.head(x)


parser = argparse.ArgumentParser()
parser.add_argument("--poison-step", type=int, default=-1)
args = parser.parse_args()
torch.manual_seed(0)
model = Deep()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
for step in range(4):
    if step == args.poison_step:
        with torch.no_grad():
            model.stem.weight[0, 0] = float("nan")
    optimizer.zero_grad()
    F.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 2, (8,))).backward()
    optimizer.step()
