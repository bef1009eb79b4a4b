"""FAULTY: the validation set drawn from the training data: `random_split` called twice without a
shared generator, so the "validation" split of the second call is mostly training samples
(`--fixed`: one split, disjoint sets).

What is wrong: 80% of the validation samples (2000 of 2500 drawn for training) are training
samples, so the validation loss measures memory, not generalization. torchdoctor fingerprints 23%
of the training set on its sampled steps, finds 20% of the validation rows among them, and
estimates 86% of the validation set leaked (the true share is 80%); the fixed twin: 0 found.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true", help="one split into disjoint sets")
    args = parser.parse_args()
    torch.manual_seed(0)
    centers = torch.randn(5, 20) * 1.2
    y = torch.randint(0, 5, (2500,))
    x = centers[y] + torch.randn(2500, 20)
    dataset = TensorDataset(x, y)
    if args.fixed:
        train_set, val_set = random_split(dataset, [2000, 500], generator=torch.Generator().manual_seed(1))
    else:
        train_set, _ = random_split(dataset, [2000, 500])
        _, val_set = random_split(dataset, [2000, 500])  # the bug: a second, different draw
    train_loader = DataLoader(train_set, batch_size=50, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=100)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(4):
        model.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = sum(F.cross_entropy(model(xb), yb, reduction="sum").item() for xb, yb in val_loader) / 500
        print(f"epoch {epoch}: val loss {val:.4f}")


if __name__ == "__main__":
    main()
