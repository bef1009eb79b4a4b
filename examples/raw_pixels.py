"""Raw 0-255 pixels fed straight to a CNN: the images were cast to float but never scaled.

What is wrong: the uint8 images are turned into floats with `.float()` and nothing else, so the
network sees values from 0 to 255 (mean ~125). The first layer's pre-activations are hundreds of
times larger than with normalized inputs, its gradients dwarf the rest of the network's, and
the learning rate that suits the other layers is far too large for it. `--fixed` scales the
pixels to [0, 1] (x / 255) and then standardizes each channel with the training set's mean and
standard deviation, as `torchvision.transforms.Normalize` would.

    torchdoctor run examples/raw_pixels.py           # unnormalized_input, with the per-channel statistics
    torchdoctor run examples/raw_pixels.py --fixed   # normalized: clean
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_images(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes of noisy 16x16 RGB images (uint8, as decoded from disk): a brighter square in
    one quadrant tells the class."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    pixels = torch.randn(n, 3, 16, 16, generator=g) * 40 + 110
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        pixels[i, :, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 60
    return pixels.clamp(0, 255).round().to(torch.uint8), y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fixed", action="store_true", help="scale to [0, 1] and standardize each channel")
    args = parser.parse_args()

    torch.manual_seed(0)
    images, labels = make_images()
    x = images.float()  # bug (without --fixed): 0-255 floats straight into the network
    if args.fixed:
        x = x / 255.0
        mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
        x = (x - mean) / std
    loader = DataLoader(TensorDataset(x, labels), batch_size=32, shuffle=True)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 4),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total / len(loader):.3f}")


if __name__ == "__main__":
    main()
