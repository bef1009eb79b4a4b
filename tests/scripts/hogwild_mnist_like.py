"""Hogwild: 2 forked workers train one shared model (model.share_memory()); the parent trains nothing.

Like PyTorch's examples/mnist_hogwild, on synthetic MNIST-like data (28x28 images, 10 classes
whose mean image differs). Healthy by default; `--lr 50` diverges (divergence, reported once).
"""

import argparse

import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def train(rank: int, model: nn.Module, lr: float, steps: int) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(100 + rank)
    means = torch.randn(10, 28 * 28, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.5)
    model.train()
    for _ in range(steps):
        y = torch.randint(0, 10, (32,), generator=g)
        x = (means[y] + 0.5 * torch.randn(32, 28 * 28, generator=g)).view(32, 1, 28, 28)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Net()
    model.share_memory()
    processes = [mp.Process(target=train, args=(rank, model, args.lr, args.steps)) for rank in range(args.workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
