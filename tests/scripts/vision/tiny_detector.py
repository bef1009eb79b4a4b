"""A torchvision Faster R-CNN (MobileNetV3 FPN, no weights) on 96x96 synthetic boxes, a few steps:
the detection loop as torchvision's references write it (a list of images, a list of target
dicts, the loss dict summed). `--raw-pixels`: images in 0-255 instead of [0, 1]."""

import argparse

import torch
from torchvision.models import detection


def batch(step: int, raw: bool) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(step)
    images, targets = [], []
    for _ in range(2):
        image = torch.rand(3, 96, 96, generator=g) * 0.2
        x1, y1 = torch.randint(0, 48, (2,), generator=g).tolist()
        image[:, y1:y1 + 40, x1:x1 + 40] += 0.7
        box = torch.tensor([[x1, y1, x1 + 40, y1 + 40]], dtype=torch.float32)
        images.append(image * 255 if raw else image)
        targets.append({"boxes": box, "labels": torch.tensor([1])})
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--raw-pixels", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=96, max_size=96,
        rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, rpn_batch_size_per_image=32,
        box_batch_size_per_image=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for step in range(args.steps):
        images, targets = batch(step, args.raw_pixels)
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        print(step, {k: round(v.item(), 4) for k, v in loss_dict.items()})


if __name__ == "__main__":
    main()
