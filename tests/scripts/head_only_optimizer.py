"""A class-based model whose optimizer was given the head alone (`net.head.parameters()`), momentum 0.9:
the backbone gets gradients and never moves."""

import torch
import torch.nn as nn
import torch.optim as optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(10, 32), nn.ReLU())
        self.head = nn.Linear(32, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


torch.manual_seed(0)
net = Net()
optimizer = optim.SGD(net.head.parameters(), lr=0.1, momentum=0.9)
x, y = torch.randn(256, 10), torch.randint(0, 2, (256,))
for _ in range(40):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
