"""An MLP whose sixth batch holds one NaN: without --heal its weights go NaN at step 5."""

import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
x, y = torch.randn(64, 4), torch.randn(64, 1)
for step in range(40):
    xb = x.clone()
    if step == 5:
        xb[0, 0] = float("nan")  # one poisoned batch
    optimizer.zero_grad()
    loss = ((model(xb) - y) ** 2).mean()
    loss.backward()
    optimizer.step()
print("final loss", ((model(x) - y) ** 2).mean().item())
