"""ReduceLROnPlateau driven by the validation loss: SGD on a regression, the scheduler stepped once
per epoch with the epoch's validation MSE.

Healthy: when the validation loss stops improving the lr is cut 5x, and the loss takes another
step down; the flat stretches before each cut are what the scheduler waits for.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(1500, 8)
    y = x[:, :4].sum(1, keepdim=True) - (x[:, 4] * x[:, 5]).unsqueeze(1) + 0.1 * torch.randn(1500, 1)
    x_train, y_train, x_val, y_val = x[:1200], y[:1200], x[1200:], y[1200:]
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.2, patience=1)
    for epoch in range(12):
        model.train()
        perm = torch.randperm(1200)
        for i in range(0, 1200, 40):
            idx = perm[i:i + 40]
            optimizer.zero_grad()
            loss = F.mse_loss(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = F.mse_loss(model(x_val), y_val).item()
        scheduler.step(val)
        print(f"epoch {epoch}: val mse {val:.4f} lr {optimizer.param_groups[0]['lr']:.4g}")


if __name__ == "__main__":
    main()
