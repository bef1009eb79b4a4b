"""Loss plateau: the loss never moves from its initial value, for one of two classic reasons.

    python examples/loss_plateau.py                     # --bug lr: SGD with lr=1e-6, far too small
    python examples/loss_plateau.py --bug stale-model   # the optimizer holds a model that is not trained
    python examples/loss_plateau.py --lr 0.01           # fixed: the loss falls from 1.33 to 0.0006

--bug lr (default): the learning rate is 1e-6, so each step changes the weights by about a
millionth: the training and validation losses stay at ~1.38 (ln 4 = 1.386 is chance level for 4
classes) and the accuracy at chance for every epoch.

--bug stale-model: the optimizer is built on a model, and then the model is created again "to
reset it" before training. The optimizer still holds the parameters of the first model, which
never get a gradient; the model that is trained and evaluated is never updated, so every epoch
shows exactly the same loss.
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """Four classes, each a bright square in one quadrant of a noisy 16x16 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.5
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 0.5
    return TensorDataset(x, y)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bug", choices=["lr", "stale-model"], default="lr")
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-6 with --bug lr, else 0.01")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    lr = args.lr if args.lr is not None else (1e-6 if args.bug == "lr" else 0.01)

    torch.manual_seed(0)
    train_loader = DataLoader(make_data(512, seed=0), batch_size=32, shuffle=True)
    val_loader = DataLoader(make_data(256, seed=1), batch_size=64)

    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    if args.bug == "stale-model":
        model = Net()  # re-created "to reset the weights": the optimizer still holds the old model's parameters

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()

        model.eval()
        val_loss, correct = 0.0, 0
        with torch.inference_mode():
            for x, y in val_loader:
                out = model(x)
                val_loss += criterion(out, y).item() * len(y)
                correct += (out.argmax(1) == y).sum().item()
        n = len(val_loader.dataset)
        print(
            f"epoch {epoch}: train loss {total / len(train_loader):.4f}  "
            f"val loss {val_loss / n:.4f}  val acc {correct / n:.3f}"
        )


if __name__ == "__main__":
    main()
