"""FAULTY: labels drawn apart from their inputs: the Dataset returns image i with the label of a
different, shuffled index (a sort on one list and not the other, as happens with file lists).

What is wrong: there is nothing to learn; on 4096 samples an MLP cannot memorize them within the
run, so the training loss sits at chance (ln 10 = 2.30) for all 256 steps while the optimizer
moves the weights normally. Not a learning-rate problem: the labels do not belong to the inputs.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class Pairs(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.label_order = torch.randperm(len(y))  # the bug: labels looked up in another order

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[self.label_order[i]]


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(10, 32) * 1.5
    y = torch.randint(0, 10, (4096,))
    x = centers[y] + torch.randn(4096, 32)
    loader = DataLoader(Pairs(x, y), batch_size=64, shuffle=True)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(4):
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.4f}")


if __name__ == "__main__":
    main()
