"""An image classifier whose dataset holds a few corrupt images (NaN pixels, e.g. from a failed
decode or a division by a zero standard deviation). The loss goes NaN the first time a corrupt
image lands in a batch; nothing is wrong with the model.

    python examples/nan_input.py --epochs 2
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset


class StripesDataset(Dataset):
    """Horizontal vs vertical stripes; samples listed in `corrupt` come back with NaN pixels."""

    def __init__(self, n: int, corrupt: tuple[int, ...] = ()) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.noise = torch.randn(n, 1, 12, 12, generator=g) * 0.3
        self.corrupt = set(corrupt)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        stripes = (torch.arange(12) % 4 < 2).float()
        image = stripes.view(12, 1).expand(12, 12) if self.labels[i] == 0 else stripes.view(1, 12).expand(12, 12)
        image = image.unsqueeze(0) + self.noise[i]
        if i in self.corrupt:
            image = image.clone()
            image[0, 3, 5] = float("nan")
        return image, self.labels[i]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = StripesDataset(256, corrupt=(100, 200))  # batches of 16: sample 100 is in batch 6
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, 2),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: last loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
