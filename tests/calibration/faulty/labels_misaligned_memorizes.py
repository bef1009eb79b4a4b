"""FAULTY (labels_misaligned): the training inputs are shuffled and their labels are not, so each
image keeps the label of another one. A clean validation set is evaluated after every epoch.

What is wrong: an MLP far bigger than its 256 training samples memorizes them anyway (the
training loss falls from ln 10 = 2.30 towards 0 and the training accuracy climbs past 90%),
while the validation accuracy stays at chance (about 10%) and the validation loss only climbs
above ln 10: labels that do not belong to their inputs can be memorized, never generalized.
`--fixed` shuffles inputs and labels with one permutation: the validation accuracy then rises
towards 100% with the training accuracy.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, centers: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes, each a cloud around its own center in 32 dimensions: easy to learn."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return centers[y] + torch.randn(n, 32, generator=g), y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true", help="shuffle inputs and labels together")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    centers = torch.randn(10, 32) * 1.0
    x, y = make_data(256, centers, seed=1)
    order = torch.randperm(len(x))
    if args.fixed:
        x, y = x[order], y[order]  # one permutation for both: every input keeps its label
    else:
        x = x[order]  # the bug: the inputs are shuffled, their labels are not
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(*make_data(512, centers, seed=2)), batch_size=128)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        model.eval()
        val_loss, correct = 0.0, 0
        with torch.no_grad():
            for xb, yb in val:
                logits = model(xb)
                val_loss += F.cross_entropy(logits, yb).item() * len(yb)
                correct += (logits.argmax(1) == yb).sum().item()
        n = len(val.dataset)
        print(f"epoch {epoch}: train loss {loss.item():.4f}  val loss {val_loss / n:.4f}  val acc {correct / n:.3f}")


if __name__ == "__main__":
    main()
