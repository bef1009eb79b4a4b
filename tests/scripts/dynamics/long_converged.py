"""Healthy control: a regression that converges within a few epochs, then trains on for many more.

The MSE falls ~100x in the first 3 epochs, to near the noise floor of the data (noise std 0.1, so
the best possible MSE is 0.01), and then stays there, nearly flat (0.02 -> 0.01), for the rest of
the 25 epochs; the validation MSE is flat at ~0.013. A converged run is not a plateau: the loss decreased a
lot first. (Wasted epochs, at most.)

    python tests/scripts/dynamics/long_converged.py --epochs 25
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """y = a smooth function of 8 features, plus Gaussian noise of std 0.1."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1, generator=g)
    g.manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = 0.5 * (x @ w) + 0.3 * torch.tanh(x[:, :1]) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--lr", type=float, default=5e-3)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(1024, seed=1), batch_size=32, shuffle=True)
    val_loader = DataLoader(make_data(512, seed=2), batch_size=512)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()

        model.eval()
        with torch.no_grad():
            val_loss = sum(criterion(model(x), y).item() for x, y in val_loader) / len(val_loader)
        print(f"epoch {epoch}: train mse {total / len(train_loader):.4f}  val mse {val_loss:.4f}")


if __name__ == "__main__":
    main()
