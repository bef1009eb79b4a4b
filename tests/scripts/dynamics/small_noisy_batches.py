"""Healthy control: batch size 4, so the loss of single steps jumps around a lot, but the model learns.

With 4 samples per batch the per-step loss swings between ~0 and 2+ from one step to the next;
the per-epoch mean falls steadily and the validation accuracy rises. Noise is not divergence.

    python tests/scripts/dynamics/small_noisy_batches.py --epochs 5 --batch-size 4
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """Two interleaved half-moons with noise, in 2D, lifted to 8 features."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.rand(n, generator=g) * torch.pi
    x = torch.stack([torch.cos(t) + y, torch.sin(t) * (1 - 2 * y) + 0.5 * y], dim=1)
    x = x + 0.2 * torch.randn(n, 2, generator=g)
    features = torch.cat([x, x**2, x[:, :1] * x[:, 1:], torch.sin(x), x[:, :1] - x[:, 1:]], dim=1)
    return TensorDataset(features, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(320, seed=0), batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(make_data(256, seed=1), batch_size=256)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    for epoch in range(args.epochs):
        model.train()
        losses = []
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            x, y = val_loader.dataset.tensors
            logits = model(x)
            val_loss = F.cross_entropy(logits, y).item()
            val_acc = (logits.argmax(1) == y).float().mean().item()
        print(
            f"epoch {epoch}: train loss {sum(losses) / len(losses):.4f} (steps {min(losses):.3f}..{max(losses):.3f})  "
            f"val loss {val_loss:.4f}  val acc {val_acc:.3f}"
        )


if __name__ == "__main__":
    main()
