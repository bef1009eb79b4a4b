"""Healthy control: fine-tuning a pretrained backbone, validating only every 3rd epoch.

The backbone is "pretrained" in the script (2 quick epochs on a source task: which quadrant holds a
bright square), then frozen; a new head is trained for 12 epochs on a target task (fainter squares,
top half vs bottom half, 256 images). Validation runs only after epochs 2, 5, 8 and 11, so there
are just four validation points; the validation loss improves, then stays flat. The frozen backbone
parameters are never updated on purpose.

    python tests/scripts/dynamics/finetune_sparse_val.py --epochs 12 --val-every 3
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def make_images(n: int, strength: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 16x16 images with a square of the given strength in one quadrant; returns (x, quadrant)."""
    g = torch.Generator().manual_seed(seed)
    quadrant = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g)
    for i, q in enumerate(quadrant.tolist()):
        r, c = divmod(q, 2)
        x[i, 0, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += strength
    return x, quadrant


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.adaptive_avg_pool2d(F.relu(self.conv2(x)), 2)
        return torch.flatten(x, 1)


def pretrain(backbone: Backbone) -> None:
    x, y = make_images(1024, strength=1.0, seed=0)
    head = nn.Linear(64, 4)
    optimizer = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=3e-3)
    for epoch in range(2):
        total, batches = 0.0, 0
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True):
            optimizer.zero_grad()
            loss = F.cross_entropy(head(backbone(xb)), yb)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        print(f"pretrain epoch {epoch}: loss {total / batches:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--val-every", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    torch.manual_seed(0)
    backbone = Backbone()
    pretrain(backbone)
    backbone.requires_grad_(False)
    model = nn.Sequential(backbone, nn.Linear(64, 2))

    x, quadrant = make_images(256, strength=0.4, seed=1)
    train_loader = DataLoader(TensorDataset(x, quadrant // 2), batch_size=16, shuffle=True)
    x, quadrant = make_images(512, strength=0.4, seed=2)
    val_loader = DataLoader(TensorDataset(x, quadrant // 2), batch_size=128)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model[1].parameters(), lr=args.lr, momentum=0.9)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item()
        line = f"epoch {epoch}: train loss {total / len(train_loader):.4f}"

        if (epoch + 1) % args.val_every == 0:
            model.eval()
            val_loss, correct = 0.0, 0
            with torch.no_grad():
                for xb, yb in val_loader:
                    logits = model(xb)
                    val_loss += criterion(logits, yb).item() * len(yb)
                    correct += (logits.argmax(1) == yb).sum().item()
            n = len(val_loader.dataset)
            line += f"  val loss {val_loss / n:.4f}  val acc {correct / n:.3f}"
        print(line)


if __name__ == "__main__":
    main()
