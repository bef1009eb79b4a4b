"""A fraud-detection style classifier: 1 positive in 21, features that overlap, plain
CrossEntropyLoss. The cheapest low loss is to call every sample negative, and that is where it
ends (accuracy ~95%, the positives' recall near 0). Its twin is healthy/class_weights.py."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    torch.manual_seed(0)
    y = (torch.rand(4200) < 1 / 21).long()
    x = torch.randn(4200, 8) + y.unsqueeze(1).float() * 0.8
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(4):
        correct = positives = found = 0
        for xb, yb in loader:
            optimizer.zero_grad()
            logits = model(xb)
            loss = criterion(logits, yb)
            loss.backward()
            optimizer.step()
            pred = logits.argmax(1)
            correct += (pred == yb).sum().item()
            positives += (yb == 1).sum().item()
            found += ((pred == 1) & (yb == 1)).sum().item()
        print(f"epoch {epoch}: accuracy {correct / len(y):.3f}, positives recalled {found}/{positives}")


if __name__ == "__main__":
    main()
