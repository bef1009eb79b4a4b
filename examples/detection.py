"""Object detection: a torchvision detector trained on synthetic shapes, with a choice of box bugs.

The data are noisy 128x128 images holding one or two filled rectangles or circles; each class has
its own colour and the boxes are known exactly (x1, y1, x2, y2 in absolute pixels, labels 1..K).
The loop is the torchvision reference one: images as a list of tensors, targets as a list of dicts,
``loss_dict = model(images, targets)`` summed into one loss. With ``--fault none`` the summed loss
falls (fasterrcnn, 40 steps, ~40 s of training on one CPU thread: 2.26 -> 0.84; classifier
1.42 -> 0.32, objectness 0.69 -> 0.25, while the box terms rise from their untrained values as
more proposals become foreground: box_reg 0.13 -> 0.24). The faults are the classic ways to get
detection targets wrong:

- ``degenerate_boxes``: every 4th image's first box has x2 == x1; torchvision raises at the first
  such batch (step 0).
- ``xywh_boxes``: boxes given as (x, y, w, h), COCO style, where torchvision wants (x1, y1, x2, y2);
  wherever w < x or h < y the box is degenerate, so torchvision raises at the first batch (step 0:
  3 of its 4 boxes); with only big boxes near the origin it would train on the wrong boxes instead.
- ``normalized_boxes``: coordinates divided by the image size (0-1); every box is a sub-pixel speck
  in the corner, no proposal matches it and loss_box_reg stays near 0 (0.00105 -> 0.00104) while the
  summed loss falls as if healthy (2.93 -> 0.35 in 40 steps): it learns "background everywhere".
- ``high_lr``: SGD at lr 0.5; the gradients explode at step 5 and every loss term is inf/NaN at step 6.
- ``no_targets``: images without objects given boxes of shape (0,) instead of (0, 4); torchvision
  raises on the first such image.

    python examples/detection.py                        # fasterrcnn, healthy
    python examples/detection.py --model retinanet --steps 10
    python examples/detection.py --fault xywh_boxes
"""

import argparse
import time

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset

COLOURS = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.4, 1.0]])  # class 1, 2, 3
NUM_CLASSES = len(COLOURS) + 1  # + background


class Shapes(Dataset):
    """Noisy images with 1-2 coloured rectangles/circles; targets in torchvision's detection format."""

    def __init__(self, n: int, size: int, fault: str, seed: int) -> None:
        self.n, self.size, self.fault, self.seed = n, size, fault, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        s = self.size
        img = 0.1 * torch.randn(3, s, s, generator=g) + 0.3
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        boxes, labels = [], []
        for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
            label = int(torch.randint(1, NUM_CLASSES, (1,), generator=g))
            w, h = (int(v) for v in torch.randint(s // 5, s // 2, (2,), generator=g))
            x1, y1 = int(torch.randint(0, s - w, (1,), generator=g)), int(torch.randint(0, s - h, (1,), generator=g))
            if torch.rand(1, generator=g) < 0.5:
                inside = (xx >= x1) & (xx < x1 + w) & (yy >= y1) & (yy < y1 + h)
            else:
                cx, cy = x1 + w / 2, y1 + h / 2
                inside = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1
            img[:, inside] = COLOURS[label - 1][:, None]
            boxes.append([x1, y1, x1 + w, y1 + h])
            labels.append(label)
        box = torch.tensor(boxes, dtype=torch.float32)
        if self.fault == "degenerate_boxes" and i % 4 == 3:
            box[0, 2] = box[0, 0]  # zero width: x2 == x1
        elif self.fault == "xywh_boxes":
            box[:, 2:] -= box[:, :2]  # (x, y, w, h)
        elif self.fault == "normalized_boxes":
            box /= s  # 0-1 instead of pixels
        elif self.fault == "no_targets" and i % 4 == 3:
            img = 0.1 * torch.randn(3, s, s, generator=g) + 0.3  # an image with no objects...
            box, labels = torch.zeros(0), []  # ...whose boxes are shape (0,), not (0, 4)
        return img.clamp(0, 1), {"boxes": box, "labels": torch.tensor(labels, dtype=torch.int64)}


def build_model(name: str) -> torch.nn.Module:
    """torchvision detectors from scratch (no downloads), shrunk so a CPU step takes well under a second."""
    m = torchvision.models.detection
    if name == "fasterrcnn":
        return m.fasterrcnn_mobilenet_v3_large_fpn(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=128, max_size=128,
            rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100, rpn_batch_size_per_image=64,
            box_batch_size_per_image=64,
        )
    if name == "retinanet":
        return m.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=128, max_size=128,
        )
    return m.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["fasterrcnn", "retinanet", "ssdlite"], default="fasterrcnn")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=None, help="default 0.02 (0.5 with --fault high_lr)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--fault",
        choices=["none", "degenerate_boxes", "xywh_boxes", "normalized_boxes", "high_lr", "no_targets"],
        default="none",
    )
    args = parser.parse_args()
    lr = args.lr if args.lr is not None else (0.5 if args.fault == "high_lr" else 0.02)

    torch.set_flush_denormal(True)  # subnormal floats make CPU math ~100x slower; see examples/dcgan.py
    torch.manual_seed(0)
    dataset = Shapes(args.steps * args.batch_size, size=128, fault=args.fault, seed=1)
    collate_fn = lambda batch: tuple(zip(*batch, strict=True))  # noqa: E731 - the torchvision reference idiom
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate_fn)
    model = build_model(args.model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)

    model.train()
    start = time.perf_counter()
    for step, (images, targets) in enumerate(loader):
        loss_dict = model(list(images), list(targets))
        losses = sum(loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        if step % 10 == 0 or step == args.steps - 1:
            terms = "  ".join(f"{k} {v.item():.4f}" for k, v in loss_dict.items())
            print(f"step {step}: loss {losses.item():.4f}  {terms}  ({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
