"""A convolutional autoencoder trained with RMSprop on MSE: reconstruct noisy blob images.

Healthy: the reconstruction MSE falls from the images' variance to a fraction of it.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_batch(n: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    cy, cx = torch.rand(n, 1, 1) * 1.2 - 0.6, torch.rand(n, 1, 1) * 1.2 - 0.6
    blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.08)
    return (blob + 0.05 * torch.randn(n, 16, 16)).unsqueeze(1)


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
    )
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    for step in range(200):
        x = make_batch(32)
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), x)
        loss.backward()
        optimizer.step()
        if step % 40 == 0 or step == 199:
            print(f"step {step}: mse {loss.item():.5f}")


if __name__ == "__main__":
    main()
