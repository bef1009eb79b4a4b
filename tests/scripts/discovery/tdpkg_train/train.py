"""Run as a module: relative imports need __package__/__spec__ set like `python -m` does."""

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from .model import TinyNet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(args.steps):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,))).backward()
        optimizer.step()
    with open(args.out, "w") as f:
        json.dump({"argv": sys.argv, "name": __name__, "package": __package__,
                   "spec_name": __spec__.name, "path0": sys.path[0]}, f)


if __name__ == "__main__":
    main()
