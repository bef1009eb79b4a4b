"""Validation run with the model still in training mode: model.eval() was never called.

What is wrong: the validation pass runs under `torch.no_grad()`, which stops gradients but does
not change how layers behave. The model is still in train() mode, so its Dropout zeroes a random
half of the hidden units (the validation loss is noisy and too pessimistic) and its BatchNorm
normalizes with each validation batch's own statistics while updating its running statistics
with validation data. `--fixed` calls model.eval() before validating and model.train() after.

    torchdoctor run examples/no_eval_mode.py           # eval_mode_missing
    torchdoctor run examples/no_eval_mode.py --fixed   # eval() before validation: clean
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """Four classes from the signs of two sums of standardized features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, :4].sum(dim=1) > 0).long() + 2 * (x[:, 4:8].sum(dim=1) > 0).long()
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fixed", action="store_true", help="model.eval() for validation")
    args = parser.parse_args()

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(512, seed=1), batch_size=32, shuffle=True)
    val_loader = DataLoader(make_data(256, seed=2), batch_size=64)
    model = nn.Sequential(
        nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(64, 4),
    )
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(args.epochs):
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()

        if args.fixed:
            model.eval()  # dropout off, BatchNorm on its running statistics
        val_loss, correct = 0.0, 0
        with torch.no_grad():  # bug (without --fixed): no_grad alone leaves the model in train() mode
            for x, y in val_loader:
                logits = model(x)
                val_loss += criterion(logits, y).item() * len(y)
                correct += (logits.argmax(dim=1) == y).sum().item()
        if args.fixed:
            model.train()
        n = len(val_loader.dataset)
        print(f"epoch {epoch}: train loss {total / len(train_loader):.3f}  val loss {val_loss / n:.3f}  "
              f"val acc {correct / n:.3f}")


if __name__ == "__main__":
    main()
