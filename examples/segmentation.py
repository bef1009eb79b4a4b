"""Semantic segmentation: a torchvision segmentation model on synthetic shapes, with a choice of mask bugs.

The data are noisy 64x64 images holding a few filled rectangles or circles; each class (1..3) has
its own colour, and the masks are VOC style: class indices with a 255 ("ignore") border around each
shape. The loss is ``F.cross_entropy(out['out'], mask, ignore_index=255)`` plus 0.5 x the same on
the auxiliary head; each epoch ends with a validation pass (pixel accuracy, per-class and mean IoU).
With ``--fault none`` the mean IoU climbs (lraspp, 5 epochs of 16 steps, ~18 s of training on one
CPU thread: mIoU 0.21 -> 0.89, train loss 1.05 -> 0.11; it stays at 0.21, background everywhere,
for two epochs before the foreground classes appear). The faults:

- ``labels_out_of_range``: the model is built with one class too few, so the mask holds class index
  3 with only 3 outputs; cross entropy raises (on CPU; on CUDA it is a device-side assert).
- ``no_ignore_index``: the loss without ``ignore_index=255``, so the border pixels are class 255;
  cross entropy raises "Target 255 is out of bounds".
- ``background_only``: tiny shapes, so ~99% of the pixels are background; the model learns to
  predict background everywhere: pixel accuracy 0.996 but foreground IoU 0.0 at every epoch
  (mIoU 0.249) while the train loss falls 1.07 -> 0.05.

    python examples/segmentation.py                          # lraspp, healthy
    python examples/segmentation.py --model deeplabv3 --epochs 1
    python examples/segmentation.py --fault background_only
"""

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Dataset

COLOURS = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.4, 1.0]])  # class 1, 2, 3
NUM_CLASSES = len(COLOURS) + 1  # + background


class Shapes(Dataset):
    """Noisy images with coloured shapes; the mask holds class indices and a 255 border (VOC style)."""

    def __init__(self, n: int, size: int, shape_size: tuple[int, int], seed: int) -> None:
        self.n, self.size, self.shape_size, self.seed = n, size, shape_size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        s, (lo, hi) = self.size, self.shape_size
        img = 0.15 * torch.randn(3, s, s, generator=g) + 0.3
        mask = torch.zeros(s, s, dtype=torch.int64)
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            label = int(torch.randint(1, NUM_CLASSES, (1,), generator=g))
            w, h = (int(v) for v in torch.randint(lo, hi + 1, (2,), generator=g))
            x1, y1 = int(torch.randint(0, s - w, (1,), generator=g)), int(torch.randint(0, s - h, (1,), generator=g))
            cx, cy = x1 + w / 2, y1 + h / 2
            if torch.rand(1, generator=g) < 0.5:
                dist = torch.maximum((xx + 0.5 - cx).abs() / (w / 2), (yy + 0.5 - cy).abs() / (h / 2))
            else:
                dist = (((xx + 0.5 - cx) / (w / 2)) ** 2 + ((yy + 0.5 - cy) / (h / 2)) ** 2).sqrt()
            img[:, dist <= 1] = COLOURS[label - 1][:, None]
            mask[(dist > 1) & (dist <= 1 + 2 / min(w, h))] = 255  # ~1 px border: ignored
            mask[dist <= 1] = label
        return img.clamp(0, 1), mask


def build_model(name: str, num_classes: int) -> torch.nn.Module:
    """torchvision segmentation models from scratch (no downloads), with the auxiliary head where there is one."""
    m = torchvision.models.segmentation
    if name == "fcn":
        return m.fcn_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True)
    if name == "lraspp":
        model = m.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    else:
        model = m.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True
        )
    # MobileNetV3's BatchNorm momentum is 0.01 (tuned for long ImageNet runs): after a few dozen steps from
    # scratch its running statistics are still near their initial values and eval-mode predictions are junk.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1
    return model


def confusion(pred: torch.Tensor, mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    keep = mask != 255
    return torch.bincount(mask[keep] * num_classes + pred[keep], minlength=num_classes**2).view(num_classes, -1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["lraspp", "deeplabv3", "fcn"], default="lraspp")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--fault", choices=["none", "labels_out_of_range", "no_ignore_index", "background_only"], default="none"
    )
    args = parser.parse_args()

    torch.set_flush_denormal(True)  # subnormal floats make CPU math ~100x slower; see examples/dcgan.py
    torch.manual_seed(0)
    shape_size = (2, 4) if args.fault == "background_only" else (12, 28)
    train_loader = DataLoader(Shapes(128, 64, shape_size, seed=1), batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(Shapes(64, 64, shape_size, seed=2), batch_size=32)
    num_classes = NUM_CLASSES - 1 if args.fault == "labels_out_of_range" else NUM_CLASSES
    ignore_index = -100 if args.fault == "no_ignore_index" else 255  # -100 is cross_entropy's default

    model = build_model(args.model, num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for images, masks in train_loader:
            out = model(images)
            loss = F.cross_entropy(out["out"], masks, ignore_index=ignore_index)
            if "aux" in out:
                loss = loss + 0.5 * F.cross_entropy(out["aux"], masks, ignore_index=ignore_index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()

        model.eval()
        conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        with torch.no_grad():
            for images, masks in val_loader:
                conf += confusion(model(images)["out"].argmax(1), masks, num_classes)
        iou = conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag()).clamp(min=1)
        acc = conf.diag().sum() / conf.sum()
        print(
            f"epoch {epoch}: train loss {total / len(train_loader):.4f}  val pixel acc {acc:.3f}  "
            f"mIoU {iou.mean():.3f}  IoU per class {[round(v, 2) for v in iou.tolist()]}  "
            f"({time.perf_counter() - start:.1f}s)"
        )


if __name__ == "__main__":
    main()
