"""argparse options, a __main__ guard, a sibling import through sys.path[0], __file__, and a
script that changes directory before it trains. What it saw is written to --out (JSON)."""

import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from discovery_helper import make_dataset  # next to this file: needs sys.path[0]
from torch.utils.data import DataLoader

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description="options test")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chdir", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    seen = {"argv": list(sys.argv), "name": __name__, "file": __file__, "path0": sys.path[0],
            "here": HERE, "prog": parser.prog, "spec": repr(__spec__)}
    if args.chdir:
        os.chdir(args.chdir)
        with open("written_after_chdir.txt", "w") as f:  # relative to the new directory
            f.write("ok")
    seen["cwd"] = os.getcwd()

    torch.manual_seed(0)
    loader = DataLoader(make_dataset(64), batch_size=args.batch_size, shuffle=True)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(args.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    with open(args.out, "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main()
