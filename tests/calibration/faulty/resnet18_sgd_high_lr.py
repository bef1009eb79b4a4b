"""FAULTY: torchvision resnet18 (weights=None, num_classes=10) on FakeData with SGD(lr=5.0,
momentum=0.9): a learning rate 50-500x too high.

What is wrong: the first update blows the weights up; the loss jumps from ~2.4 to over 100 at
step 1 and never comes back to its start, and the validation loss is orders of magnitude above
it. BatchNorm keeps the gradient norm bounded, so the gradients do not look "exploding": the
loss against its own start (and chance, ln 10) is the evidence. Also run at --lr 1.0 and 0.5.
"""

import argparse

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(0)
    to_tensor = transforms.ToTensor()
    train = torchvision.datasets.FakeData(320, (3, 32, 32), 10, transform=to_tensor, random_offset=0)
    val = torchvision.datasets.FakeData(64, (3, 32, 32), 10, transform=to_tensor, random_offset=1000)
    train_loader = DataLoader(train, batch_size=32, shuffle=True)
    val_loader = DataLoader(val, batch_size=64)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            val_loss = sum(F.cross_entropy(model(x), y).item() for x, y in val_loader)
        print(f"epoch {epoch}: train loss {total / len(train_loader):.4g} val loss {val_loss:.4g}")


if __name__ == "__main__":
    main()
