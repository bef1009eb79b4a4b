"""torchvision resnet18 (weights=None, num_classes=10) trained from scratch on small 3x32x32
synthetic images with SGD(lr=0.02, momentum=0.9, weight_decay=5e-4), with a validation pass.

Healthy: a learning rate in the CIFAR recipe's range for a BatchNorm ResNet; the class signal (a
patch whose channel and place give the class) is learned within two epochs. The first epoch's
validation loss is high (BatchNorm's running statistics have seen 16 batches), then it follows.
"""

import torch
import torch.nn.functional as F
import torchvision


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 3, 32, 32, generator=g)
    for i, label in enumerate(y.tolist()):  # a bright patch: its channel and place give the class
        r, c = divmod(label, 5)
        x[i, label % 3, r * 16:r * 16 + 16, c * 6:c * 6 + 8] += 1.5
    return x, y


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    x, y = make_data(512, 1)
    x_val, y_val = make_data(128, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    for epoch in range(3):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = F.cross_entropy(model(x_val), y_val).item()
        print(f"epoch {epoch}: train {loss.item():.4f} val {val:.4f}")


if __name__ == "__main__":
    main()
