"""model.train() and model.eval() called correctly each epoch around a BatchNorm + Dropout MLP,
with a test pass under torch.inference_mode().

Healthy: the training mode is restored before every training epoch and evaluation runs in eval
mode; training and test losses fall together.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    model.train()
    perm = torch.randperm(len(x))
    total = 0.0
    for i in range(0, len(x), 64):
        idx = perm[i:i + 64]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / (len(x) // 64)


def test(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        return F.cross_entropy(model(x), y).item()


def main() -> None:
    torch.manual_seed(0)
    centers = torch.randn(8, 16) * 0.9
    y = torch.randint(0, 8, (2300,))
    x = centers[y] + torch.randn(2300, 16)
    model = nn.Sequential(nn.Linear(16, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.25),
                          nn.Linear(128, 8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(5):
        train_loss = train_epoch(model, optimizer, x[:2048], y[:2048])
        print(f"epoch {epoch}: train {train_loss:.4f} test {test(model, x[2048:], y[2048:]):.4f}")


if __name__ == "__main__":
    main()
