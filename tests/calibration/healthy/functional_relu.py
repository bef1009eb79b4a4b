"""A CNN written with F.relu in forward() instead of nn.ReLU modules (the PyTorch MNIST example's
style), trained with Adadelta at its default lr=1.0 and a StepLR(gamma=0.7) per epoch.

Healthy: this is the MNIST example's recipe on an MNIST-like synthetic task; it learns fast.
"""

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
    torch.manual_seed(0)
    x, y = make_data(1280, 1)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(3):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = F.nll_loss(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
