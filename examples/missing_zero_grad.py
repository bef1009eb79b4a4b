"""A training loop that never resets its gradients: every step applies the sum of all the batches so far.

What is wrong: there is no `optimizer.zero_grad()` anywhere. `loss.backward()` adds into `.grad`,
so step k applies the sum of the gradients of all k batches seen so far: the gradient norm grows
step after step (0.7 -> 26 here) and the update follows the first batches more than the current
one. Adam rescales that sum, so the loss still falls for a while, which hides the bug; with plain
SGD the growing sum acts as an ever larger learning rate and the run diverges.
`--fixed` is the intentional version of accumulating: deliberate gradient accumulation over
k=4 micro-batches (loss / k, then `optimizer.step()` and `optimizer.zero_grad()` every k batches).

    torchdoctor run examples/missing_zero_grad.py           # missing_zero_grad
    torchdoctor run examples/missing_zero_grad.py --fixed   # accumulation over 4 micro-batches: clean
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 1024) -> TensorDataset:
    """Four classes from the signs of two sums of standardized features."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, :4].sum(dim=1) > 0).long() + 2 * (x[:, 4:8].sum(dim=1) > 0).long()
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--accumulate", type=int, default=4, help="micro-batches per optimizer step (--fixed)")
    parser.add_argument("--fixed", action="store_true", help="deliberate gradient accumulation")
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(make_data(), batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    k = args.accumulate
    for epoch in range(args.epochs):
        total = 0.0
        for i, (x, y) in enumerate(loader):
            loss = criterion(model(x), y)
            if args.fixed:
                (loss / k).backward()  # an effective batch of k * 16
                if (i + 1) % k == 0:
                    optimizer.step()
                    optimizer.zero_grad()
            else:
                loss.backward()  # bug: nothing ever resets the gradients
                optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.3f}")


if __name__ == "__main__":
    main()
