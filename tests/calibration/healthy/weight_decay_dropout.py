"""Weight decay and dropout: an MLP with Dropout(0.3) trained by AdamW(weight_decay=0.05), with a
held-out evaluation each epoch in eval() mode.

Healthy: both regularizers are on, as they should be for an over-parameterized net on 1000
samples; train loss is noisier than eval loss (dropout), and both fall.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    w = torch.randn(30, 5)
    x = torch.randn(1200, 30)
    y = (x @ w + torch.randn(1200, 5) * 0.5).argmax(1)
    x_train, y_train, x_val, y_val = x[:1000], y[:1000], x[1000:], y[1000:]
    model = nn.Sequential(nn.Linear(30, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 256), nn.ReLU(),
                          nn.Dropout(0.3), nn.Linear(256, 5))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    for epoch in range(8):
        model.train()
        perm = torch.randperm(1000)
        for i in range(0, 1000, 50):
            idx = perm[i:i + 50]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = F.cross_entropy(model(x_val), y_val).item()
        print(f"epoch {epoch}: train {loss.item():.4f} val {val:.4f}")


if __name__ == "__main__":
    main()
