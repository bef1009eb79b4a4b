import json
import sys

import torch
import torch.nn as nn

from . import __doc__ as package_doc

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
    optimizer.zero_grad()
    nn.functional.mse_loss(model(torch.randn(8, 4)), torch.zeros(8, 1)).backward()
    optimizer.step()
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        json.dump({"argv": sys.argv, "name": __name__, "spec_name": __spec__.name, "doc": package_doc}, f)
