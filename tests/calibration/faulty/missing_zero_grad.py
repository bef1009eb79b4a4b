"""FAULTY: a tidy-looking training loop that never calls optimizer.zero_grad().

What is wrong: every backward() adds to the gradients of all earlier steps, so the step the
optimizer takes grows with the step count; with momentum on top the loss soon climbs. The loss
going up is the symptom; the missing zero_grad() is the cause, and lowering the learning rate
would only delay it.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.5
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 8:r * 8 + 8, c * 8:c * 8 + 8] += 1.0
    return TensorDataset(x, y)


def main() -> None:
    torch.manual_seed(0)
    loader = DataLoader(make_data(1024, 1), batch_size=32, shuffle=True)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(3):
        total = 0.0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            loss.backward()  # gradients are never reset: optimizer.zero_grad() is missing
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.4g}")


if __name__ == "__main__":
    main()
