"""A CNN whose classifier head was sized by hand for 28x28 images, then fed 32x32 ones: it dies at
its first forward. `--fixed` flattens with the size the conv stack really gives.

    torchdoctor run examples/shape_mismatch.py           # script_error: the Linear, its in_features, the fix
    torchdoctor run examples/shape_mismatch.py --fixed   # trains
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    in_features = 32 * 8 * 8 if args.fixed else 32 * 7 * 7  # 28x28 images pool to 7x7; 32x32 to 8x8
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(in_features, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(args.steps):
        x = torch.randn(16, 3, 32, 32)
        y = (x[:, 0].mean((1, 2)) > 0).long() * 3  # learnable from the first channel
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
