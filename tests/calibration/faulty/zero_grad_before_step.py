"""A small CNN whose loop calls optimizer.zero_grad() between loss.backward() and
optimizer.step(): every step finds the gradients already reset and changes nothing.

Faulty (optimizer_no_update): the loss is printed and stays where it started. `--in-place` zeroes
the gradients instead of setting them to None (zero_grad(set_to_none=False)); `--fixed` moves
zero_grad() before the forward.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true")
    parser.add_argument("--in-place", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (384,), generator=g)
    x = torch.randn(384, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 0.5
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(3):
        total = 0.0
        for xb, yb in loader:
            if args.fixed:
                optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            if not args.fixed:
                optimizer.zero_grad(set_to_none=not args.in_place)  # the bug: after backward, before step
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.4f}")


if __name__ == "__main__":
    main()
