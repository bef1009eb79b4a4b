"""A plain nn.Sequential (with nested Sequentials) on synthetic images."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
model = nn.Sequential(
    nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8),
                  nn.ReLU(), nn.AdaptiveAvgPool2d(1)),
    nn.Flatten(),
    nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)),
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for _ in range(4):
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
