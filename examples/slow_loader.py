"""A data loading bottleneck: a Dataset that decodes each image in Python, read with num_workers=0.

What is wrong: every item costs 3 ms of Python work (here a stand-in sleep for decoding and
augmentation), and the DataLoader produces batches in the training process itself, so the model
waits for each batch of 16 about 50 ms, several times as long as it trains on it. Worker
processes would load the next batches while this one trains.

    python examples/slow_loader.py            # the bottleneck
    python examples/slow_loader.py --fixed    # items cached in memory: the same training, no wait
"""

import argparse
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


class DecodedImages(Dataset):
    """Images 'decoded' item by item, 3 ms each."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 4, (n,), generator=g)
        self.x = torch.randn(n, 1, 16, 16, generator=g)
        for i, label in enumerate(self.y.tolist()):
            r, c = divmod(label, 2)
            self.x[i, 0, r * 8:r * 8 + 8, c * 8:c * 8 + 8] += 1.0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        time.sleep(0.003)  # decoding a JPEG, resizing, augmenting...
        return self.x[i], self.y[i]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fixed", action="store_true", help="decode once, keep the tensors in memory")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = DecodedImages(128, seed=1)
    dataset = TensorDataset(data.x, data.y) if args.fixed else data
    loader = DataLoader(dataset, batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                          nn.Linear(8 * 16, 4))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(args.epochs):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.3f}")


if __name__ == "__main__":
    main()
