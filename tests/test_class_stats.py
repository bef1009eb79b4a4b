"""Class statistics on real runs: per-class counts on sampled training steps, the class_imbalance
finding they feed, and a segmentation pass's pixel accuracy and mean IoU."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import torchdoctor
from torchdoctor.rules import class_imbalance as module

RULE = module.class_imbalance


def data() -> tuple[torch.Generator, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(2100, generator=g) < 1 / 21).long()
    return g, torch.randn(2100, 2, generator=g) + y.unsqueeze(1).float() * 1.0, y


def classify(weight: torch.Tensor | None, steps: int = 200):
    """Two classes at 20:1 whose clusters overlap (1 std apart): without weights the cheapest low
    loss is to predict class 0; with inverse-frequency weights the rare class is predicted too."""
    g, x, y = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.CrossEntropyLoss(weight=weight)
    with torchdoctor.watch(model, opt, print_report=False) as doctor:
        for _ in range(steps):
            idx = torch.randint(0, 2100, (64,), generator=g)
            opt.zero_grad()
            loss = criterion(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    report = doctor.report
    return report, RULE.run(report.timeline, RULE.defaults())


def test_majority_only_classifier_is_found():
    report, found = classify(None)
    classes = report.timeline.habits.classes
    assert classes and all(len(s["labels"]) == 2 for s in classes)
    assert all(sum(s["labels"]) == 64 == sum(s["predicted"]) for s in classes)
    assert len(found) == 1
    ev = found[0].evidence
    assert ev["ratio"] > 10 and ev["majority_class"] == 0 and ev["majority_prediction_share"] >= 0.9
    assert ev["recall_late"][1] < 0.5 and ev["dense"] is False
    assert report.by_code("class_imbalance") is not None


def test_class_weights_twin_is_healthy():
    counts = torch.bincount(data()[2], minlength=2).float()
    report, found = classify(counts.sum() / (2 * counts))
    late = report.timeline.habits.classes[-4:]
    assert sum(s["predicted"][1] for s in late) > 0
    assert found == []


def shapes(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright squares (class 1) and dark discs (class 2) on noise; the 2-pixel border ignored (255)."""
    yy, xx = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    image = torch.randn(n, 1, 20, 20, generator=g) * 0.3
    mask = torch.zeros(n, 20, 20, dtype=torch.long)
    centers = torch.randint(6, 14, (n, 2), generator=g)
    for i in range(n):
        cy, cx = int(centers[i, 0]), int(centers[i, 1])
        if i % 2:
            region = ((yy - cy).abs() <= 3) & ((xx - cx).abs() <= 3)
            mask[i][region], image[i, 0][region] = 1, image[i, 0][region] + 1.0
        else:
            region = (yy - cy) ** 2 + (xx - cx) ** 2 <= 12
            mask[i][region], image[i, 0][region] = 2, image[i, 0][region] - 1.0
    mask[:, :2], mask[:, -2:], mask[:, :, :2], mask[:, :, -2:] = 255, 255, 255, 255
    return image, mask


def test_segmentation_validation_has_pixel_accuracy_and_rising_iou():
    g = torch.Generator().manual_seed(0)
    train = [shapes(16, g) for _ in range(6)]
    val = [shapes(16, g) for _ in range(2)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 3, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torchdoctor.watch(model, opt, print_report=False) as doctor:
        for _ in range(6):
            model.train()
            for image, mask in train:
                opt.zero_grad()
                F.cross_entropy(model(image), mask, ignore_index=255).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                for image, mask in val:
                    F.cross_entropy(model(image), mask, ignore_index=255)
    tl = doctor.report.timeline
    assert tl.prior is not None and tl.prior.dense and tl.prior.ignore_index == 255
    passes = tl.evaluations
    assert len(passes) == 6
    ious = [p.iou for p in passes]
    assert all(iou is not None and 0 < iou <= 1 for iou in ious)
    assert ious[-1] > ious[0] + 0.1
    assert all(p.accuracy is not None and 0 < p.accuracy <= 1 for p in passes)
    assert passes[-1].accuracy > 0.8
    classes = tl.habits.classes
    assert classes and all(len(s["labels"]) == 3 for s in classes)
    assert all(sum(s["labels"]) == 16 * 16 * 16 for s in classes)  # the 20x20 images less their ignored border
    assert RULE.run(tl, RULE.defaults()) == []
