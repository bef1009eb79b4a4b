"""Epochs over a training DataLoader, with a validation DataLoader evaluated after every epoch
(it must not count as training epochs). --workers 2 uses worker processes; --peek takes one
batch with next(iter(loader)) before training, as scripts do to check shapes; --eval-train also
measures the training set's accuracy after each epoch (one more pass over the training loader,
without steps); --fresh-loader builds a new training DataLoader every epoch."""

import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from discovery_helper import make_dataset
from torch.utils.data import DataLoader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--persistent", action="store_true")
    parser.add_argument("--peek", action="store_true")
    parser.add_argument("--eval-train", action="store_true")
    parser.add_argument("--fresh-loader", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.manual_seed(0)
    extra = {"num_workers": args.workers}
    if args.workers:
        extra.update(multiprocessing_context="fork", persistent_workers=args.persistent)
    train = DataLoader(make_dataset(48), batch_size=16, shuffle=True, **extra)
    val = DataLoader(make_dataset(32, seed=1), batch_size=16, **extra)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if args.peek:
        x, _ = next(iter(train))
        print("input shape", tuple(x.shape))
    history = []
    for epoch in range(args.epochs):
        if args.fresh_loader and epoch:
            train = DataLoader(make_dataset(48, seed=epoch), batch_size=16, shuffle=True, **extra)
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = sum(F.cross_entropy(model(x), y, reduction="sum").item() for x, y in val) / 32
            if args.eval_train:
                correct = sum((model(x).argmax(1) == y).sum().item() for x, y in train)
                print(f"epoch {epoch}: train accuracy {correct / 48:.2f}")
        history.append({"epoch": epoch, "val_loss": val_loss})
    with open(args.out, "w") as f:
        json.dump(history, f)


if __name__ == "__main__":
    main()
