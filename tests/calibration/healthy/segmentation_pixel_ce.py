"""Segmentation-style per-pixel cross_entropy: a tiny fully-convolutional net labels each pixel of
a 24x24 image as background, square or disc.

Healthy: F.cross_entropy on (N, C, H, W) logits and (N, H, W) labels, averaged over pixels; the
loss starts near ln 3 and falls as the net learns the shapes' edges.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    image = torch.randn(n, 1, 24, 24) * 0.3
    mask = torch.zeros(n, 24, 24, dtype=torch.long)
    for i in range(n):
        cy, cx = torch.randint(6, 18, (2,)).tolist()
        if i % 2 == 0:
            region = ((yy - cy).abs() <= 4) & ((xx - cx).abs() <= 4)
            mask[i][region], image[i, 0][region] = 1, image[i, 0][region] + 1.0
        else:
            region = (yy - cy) ** 2 + (xx - cx) ** 2 <= 20
            mask[i][region], image[i, 0][region] = 2, image[i, 0][region] - 1.0
    return image, mask


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 3, 1),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(120):
        image, mask = make_batch(16)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(image), mask)
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == 119:
            print(f"step {step}: pixel loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
