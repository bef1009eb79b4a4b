"""class_imbalance: imbalanced training labels, and a model that has learned to predict only the majority."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from .base import Param, finding_for, rule


@rule("class_imbalance", Severity.WARNING, "Imbalanced labels, and the model predicts the majority class",
      {"ratio": Param(10.0, "largest over smallest class count (of the classes that appear) above which labels "
                            "are imbalanced"),
       "majority_share": Param(0.9, "share of the late predictions the majority class takes to count as "
                                    "predicting the majority"),
       "minority_recall": Param(0.5, "the minority classes' late recall (their per-class accuracy, pooled) "
                                     "below which they count as not learned"),
       "min_samples": Param(6, "sampled training steps needed to judge")})
def class_imbalance(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds, from the labels, predictions (argmax) and correct predictions per class
    counted on sampled training steps of a loss over class indices (cross_entropy, nll_loss;
    per pixel for segmentation, ignore_index left out):

    - the labels are imbalanced: the largest class count is more than `ratio` (10) times the
      smallest of the classes that appear (a class that never appears is named apart), and
    - in the last third of the samples the model predicts the majority class for at least
      `majority_share` (90%) of the inputs (pixels), while the other classes' recall stays below
      `minority_recall` (50%).

    Why it matters: predicting the majority class is the cheapest way to a low average loss on
    imbalanced labels. Accuracy looks good (95% on 20:1 labels) while the model has learned
    nothing about the classes that matter; for segmentation, the background swallows the objects.

    Fixes: class weights in the loss (inverse frequency, w_c = total / (C * count_c)), a
    WeightedRandomSampler that shows the rare classes as often as the common ones
    (classification), a Dice or focal loss (segmentation).

    Not flagged: balanced labels; imbalanced labels the model predicts well (class weights or a
    sampler already work); runs with fewer than `min_samples` sampled steps.
    """
    samples = _samples(tl)
    if len(samples) < p["min_samples"]:
        return
    classes = len(samples[0]["labels"])
    counts = _sum(samples, "labels")
    present = [c for c in range(classes) if counts[c] > 0]
    if len(present) < 2:
        return
    majority = max(present, key=lambda c: counts[c])
    minority = min(present, key=lambda c: counts[c])
    ratio = counts[majority] / counts[minority]
    if ratio <= p["ratio"]:
        return
    late = samples[len(samples) - max(1, len(samples) // 3):]
    late_labels, late_predicted, late_correct = _sum(late, "labels"), _sum(late, "predicted"), _sum(late, "correct")
    predictions = sum(late_predicted)
    share = late_predicted[majority] / predictions if predictions else 0.0
    others = [c for c in present if c != majority]
    other_labels = sum(late_labels[c] for c in others)
    if share < p["majority_share"] or not other_labels:
        return
    other_recall = sum(late_correct[c] for c in others) / other_labels
    if other_recall >= p["minority_recall"]:
        return
    recall = [late_correct[c] / late_labels[c] if late_labels[c] else None for c in range(classes)]
    absent = [c for c in range(classes) if counts[c] == 0]
    dense = bool(tl.prior is not None and tl.prior.dense)
    unit = "pixels" if dense else "labels"
    yield finding_for(
        "class_imbalance",
        f"The training {unit} are imbalanced (class {majority} is {fmt(ratio)}x class {minority}) and the model "
        f"predicts class {majority} for {share:.0%} of the {'pixels' if dense else 'inputs'} late in the run: "
        f"the other classes' recall is {other_recall:.0%}",
        step=late[0]["step"],
        evidence={"class_counts": counts, "ratio": ratio, "majority_class": majority, "minority_class": minority,
                  "absent_classes": absent, "majority_prediction_share": share, "recall_late": recall,
                  "minority_recall_late": other_recall, "samples": len(samples), "late_samples": len(late),
                  "first_late_step": late[0]["step"], "dense": dense},
        fixes=_fixes(tl, counts, dense),
    )


def _samples(tl: Timeline) -> list[dict[str, Any]]:
    """The sampled steps of the loss with the most common number of classes (a second head over
    other classes is left out), in step order."""
    found = [s for s in tl.habits.classes if s.get("labels")]
    if not found:
        return []
    classes = Counter(len(s["labels"]) for s in found).most_common(1)[0][0]
    return sorted((s for s in found if len(s["labels"]) == classes), key=lambda s: s["step"])


def _sum(samples: list[dict[str, Any]], key: str) -> list[int]:
    return [sum(column) for column in zip(*(s[key] for s in samples), strict=True)]


def class_weights(counts: list[int]) -> list[float]:
    """Inverse-frequency weights, total / (C * count_c), 3 significant figures: a class of average
    frequency weighs 1. A class never seen gets the rarest seen class's weight."""
    total, classes = sum(counts), len(counts)
    weights = [total / (classes * n) if n else None for n in counts]
    largest = max(w for w in weights if w is not None)
    return [float(f"{w if w is not None else largest:.3g}") for w in weights]


def _fixes(tl: Timeline, counts: list[int], dense: bool) -> list[Fix]:
    weights = class_weights(counts)
    shown = ", ".join(f"{w:g}" for w in weights)
    ignore = tl.prior.ignore_index if tl.prior is not None else None
    ignore_arg = f", ignore_index={ignore}" if ignore is not None else ""
    loss_fn = tl.prior.loss_fn if tl.prior is not None and tl.prior.loss_fn else "cross_entropy"
    module = "NLLLoss" if loss_fn == "nll_loss" else "CrossEntropyLoss"
    weighted = Fix(
        "class_weights",
        f"Weight the loss by inverse class frequency (total / (C * count) over the {'pixels' if dense else 'labels'}"
        f" seen): weight=[{shown}].",
        {"weight": weights, "class_counts": counts},
        (f"weight = torch.tensor([{shown}], device=logits.device)\n"
         f"loss = F.{loss_fn}(logits, mask, weight=weight{ignore_arg})") if dense else
        (f"criterion = nn.{module}(weight=torch.tensor([{shown}]))  # .to(device) with the model\n"
         "loss = criterion(model(x), y)"),
    )
    if dense:
        dice = Fix(
            "dice_loss",
            "Add a Dice loss (or use a focal loss) to the cross-entropy: it scores each class's overlap, "
            "whatever its pixel count, so a small object counts as much as the background.",
            {"classes": len(counts), "ignore_index": ignore},
            "def dice_loss(logits, mask, eps=1.0):\n"
            f"    valid = (mask != {ignore if ignore is not None else -100}).unsqueeze(1)\n"
            "    probs = logits.softmax(1) * valid\n"
            "    onehot = F.one_hot(mask.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2) * valid\n"
            "    inter = (probs * onehot).sum((0, 2, 3))\n"
            "    union = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))\n"
            "    return 1 - ((2 * inter + eps) / (union + eps)).mean()\n\n"
            f"loss = F.cross_entropy(logits, mask{ignore_arg}) + dice_loss(logits, mask)\n"
            "# focal instead: ce = F.cross_entropy(logits, mask, reduction='none'"
            f"{ignore_arg}); loss = ((1 - (-ce).exp()) ** 2 * ce).mean()",
        )
        return [weighted, dice]
    sampler = Fix(
        "weighted_sampler",
        "Sample the rare classes as often as the common ones: a WeightedRandomSampler with each sample "
        f"weighted by its class's weight [{shown}].",
        {"class_sample_weight": weights},
        f"class_weight = torch.tensor([{shown}])\n"
        "sample_weight = class_weight[labels]  # labels: the dataset's targets, one per sample\n"
        "sampler = torch.utils.data.WeightedRandomSampler(sample_weight, num_samples=len(labels), replacement=True)\n"
        "loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)  # no shuffle=True with a sampler",
    )
    return [weighted, sampler]
