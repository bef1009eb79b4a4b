"""Healthy control: curve fitting with an MLP; the validation MSE is computed by hand under no_grad.

No loss function in validation: the script sums ((model(x) - y) ** 2) over a DataLoader itself.
Both MSEs fall steadily.

    python tests/scripts/dynamics/manual_val_regression.py --epochs 10
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sin(3x) + x/2 on [-2, 2], with noise of std 0.05."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    y = torch.sin(3 * x) + 0.5 * x + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(TensorDataset(*make_data(1024, seed=0)), batch_size=32, shuffle=True)
    val_loader = DataLoader(TensorDataset(*make_data(256, seed=1)), batch_size=128)
    model = nn.Sequential(nn.Linear(1, args.hidden), nn.Tanh(), nn.Linear(args.hidden, args.hidden), nn.Tanh(),
                          nn.Linear(args.hidden, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()

        model.eval()
        sq_err, count = 0.0, 0
        with torch.no_grad():
            for x, y in val_loader:
                sq_err += ((model(x) - y) ** 2).sum().item()
                count += len(y)
        val_mse = sq_err / count
        print(f"epoch {epoch}: train mse {total / len(train_loader):.4f}  val mse {val_mse:.4f}")


if __name__ == "__main__":
    main()
