"""FAULTY: the PyTorch CIFAR-10 tutorial's Net and optimizer (SGD lr=0.001, momentum=0.9, batch 4,
F.relu) run for 400 steps on a learnable CIFAR-like task.

What is wrong: at this learning rate and batch size the run is far too short to learn; the loss
stays at chance (ln 10 = 2.30) from start to end, moving 1% in 400 steps (the logits barely
grow, though their argmax starts to be right). A loss at chance after hundreds of steps is a run
that is not learning yet (raise the lr, or train far longer), a warning rather than an "info".
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes: a brighter channel and quadrant band per class, on normalized noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 3, 32, 32, generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 5)
        x[i, label % 3, r * 16:r * 16 + 16, c * 6:c * 6 + 8] += 1.0
    return x, y


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data(1600, 1)
    net = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    running_loss = 0.0
    for i in range(0, len(x), 4):
        inputs, labels = x[i:i + 4], y[i:i + 4]
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        if i // 4 % 100 == 99:
            print(f"[{i // 4 + 1:5d}] loss: {running_loss / 100:.3f}")
            running_loss = 0.0
    with torch.no_grad():
        predicted = net(x[:400]).argmax(1)
    print(f"classes predicted: {predicted.unique().tolist()}, accuracy {(predicted == y[:400]).float().mean():.3f}")


if __name__ == "__main__":
    main()
