"""Fine-tuning in two phases: train the head with one optimizer for an epoch, then unfreeze
everything and train with a new optimizer (a common transfer-learning recipe)."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from discovery_helper import make_dataset
from torch.utils.data import DataLoader

torch.manual_seed(0)
loader = DataLoader(make_dataset(48), batch_size=16, shuffle=True)
backbone = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
model = nn.Sequential(backbone, nn.Linear(16, 3))
for p in backbone.parameters():
    p.requires_grad_(False)
optimizer = torch.optim.SGD(model[1].parameters(), lr=0.1)
for epoch in range(3):
    if epoch == 1:  # phase 2: unfreeze, new optimizer over everything
        for p in backbone.parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
