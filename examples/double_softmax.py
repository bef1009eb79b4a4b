"""A classifier that ends in nn.Softmax, trained with nn.CrossEntropyLoss: softmax applied twice.

What is wrong: CrossEntropyLoss applies log_softmax to its input itself, so it expects raw
logits. Given probabilities (all in [0, 1], each row summing to 1), it takes the softmax of
values that barely differ: the loss can never fall below log(1 + 3/e) = 0.74 even when the
model is certain and right, and the gradients shrink, so training crawls. `--fixed` keeps a
normalized output the right way: the model ends in nn.LogSoftmax(dim=1) and the loss is
nn.NLLLoss (together the same as raw logits + CrossEntropyLoss).

    torchdoctor run examples/double_softmax.py           # double_softmax, where: the final Softmax
    torchdoctor run examples/double_softmax.py --fixed   # LogSoftmax + NLLLoss: clean
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 512) -> TensorDataset:
    """Four classes from the signs of two sums of standardized features."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, :4].sum(dim=1) > 0).long() + 2 * (x[:, 4:8].sum(dim=1) > 0).long()
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fixed", action="store_true", help="LogSoftmax + NLLLoss")
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    last = nn.LogSoftmax(dim=1) if args.fixed else nn.Softmax(dim=1)  # bug: Softmax before CrossEntropyLoss
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4), last)
    criterion = nn.NLLLoss() if args.fixed else nn.CrossEntropyLoss()
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
