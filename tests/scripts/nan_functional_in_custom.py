"""NaN made by functional code inside a custom module's forward (log of a negative number between
two child layers): the origin is the custom module `block`, not its children."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class LogBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.log(self.inp(x)))  # log of negative pre-activations: NaN


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.block = LogBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(torch.relu(self.stem(x)))


torch.manual_seed(0)
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _step in range(3):
    optimizer.zero_grad()
    loss = F.mse_loss(model(torch.randn(8, 4)), torch.zeros(8, 1))
    loss.backward()
    optimizer.step()
