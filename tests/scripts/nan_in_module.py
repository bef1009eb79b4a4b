"""A model whose custom `Energy` block takes exp() of its input; one outlier batch (inputs 200x
larger) makes exp overflow to Inf inside body.2 and the loss goes NaN, with steady gradients."""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Energy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x) - torch.exp(-x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), Energy(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


parser = argparse.ArgumentParser()
parser.add_argument("--blowup-step", type=int, default=4)
args = parser.parse_args()

torch.manual_seed(0)
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(8):
    x = torch.randn(8, 4) * (200.0 if step == args.blowup_step else 1.0)  # an outlier batch
    optimizer.zero_grad()
    loss = F.mse_loss(model(x), torch.zeros(8, 1))
    loss.backward()
    optimizer.step()
