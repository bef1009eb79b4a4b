"""FAULTY: the PyTorch MNIST example's 4-layer CNN (F.relu in forward, Adadelta, StepLR) with a
wrong learning rate: --lr 100 (100x the default 1.0) or --lr 0.001 (1000x too small).

What is wrong at lr 100: the first update is about 10x the weights' own size; the loss jumps from
2.30 to tens of thousands at step 1, the blow-up kills the F.relu units, and the loss then sits
at chance (ln 10 = 2.30) to the end. The blow-up is the cause; dead units and tiny gradients
after it are its consequences.
What is wrong at lr 0.001: the weights barely move (updates ~1000x smaller than at the default);
the loss stays near chance for the whole run, where the same net at lr 1.0 (the healthy twin,
healthy/functional_relu.py) learns the task within one epoch.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.conv2 = nn.Conv2d(16, 32, 3, 1)
        self.fc1 = nn.Linear(32 * 5 * 5, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes on 14x14 images: a bright 4x4 patch at one of ten positions."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, 14, 14, generator=g) * 0.5
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 5)
        x[i, 0, r * 6 + 1:r * 6 + 5, c * 2 + 2:c * 2 + 6] += 1.5
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=100.0)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = make_data(2560, 1)
    x_test, y_test = make_data(512, 2)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = F.nll_loss(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"epoch {epoch}: loss {loss.item():.4g} test acc {acc:.3f}")


if __name__ == "__main__":
    main()
