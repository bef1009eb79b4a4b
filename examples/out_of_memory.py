"""Full-batch regression that dies of out-of-memory at its first loss: the model's output is
(N, 1), the target (N,), and `F.mse_loss` broadcasts them to (N, N), a million squared.

    torchdoctor run examples/out_of_memory.py           # the bug (no RAM is actually used)
    torchdoctor run examples/out_of_memory.py --fixed   # output.squeeze(-1): trains
"""

import argparse
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fixed", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(args.samples, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])  # shape (N,)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    warnings.simplefilter("ignore")  # the broadcast warning scrolls by unread in a real log
    for step in range(args.steps):
        output = model(x)
        loss = F.mse_loss(output.squeeze(-1) if args.fixed else output, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
