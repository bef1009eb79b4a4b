"""A Dataset class and a DataLoader with num_workers=0, shuffle and drop_last, feeding an MLP.

Healthy: the most common beginner-to-intermediate setup; the data is generated in __getitem__
(cheap), so the loop is compute-bound and the loss falls.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class Spirals(Dataset):
    """Two interleaved spirals; sample i is deterministic in i."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        label = i % 2
        r = torch.rand(1, generator=g) * 3 + 0.3
        angle = r * 2.0 + label * 3.14159
        point = torch.cat([r * torch.cos(angle), r * torch.sin(angle)]) + torch.randn(2, generator=g) * 0.1
        return point, torch.tensor(label)


def main() -> None:
    torch.manual_seed(0)
    loader = DataLoader(Spirals(1024), batch_size=32, shuffle=True, num_workers=0, drop_last=True)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for epoch in range(6):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.4f}")


if __name__ == "__main__":
    main()
