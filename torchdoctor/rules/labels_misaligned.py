"""labels_misaligned: the model memorizes its training labels while validation stays at chance."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import EvalPass, Timeline
from ._numbers import thin
from .base import Param, finding_for, rule

PARAMS = {
    "min_passes": Param(2, "validation passes needed, each at chance, before a verdict"),
    "memorized": Param(0.5, "the training loss before the last pass is at most this fraction of the chance level"),
    "min_train_gain": Param(0.3, "and the training accuracy (where measured) at least this far above the chance share"),
    "val_loss_margin": Param(0.05, "every validation loss at least (1 - this) times the chance level"),
    "acc_noise_sds": Param(3.0, "every validation accuracy within this many binomial standard deviations of chance"),
    "acc_floor": Param(0.02, "or within this absolute margin of it, whichever is larger"),
}

CLASS_INDEX_LOSSES = ("cross_entropy", "nll_loss")
MIN_LABELS_PER_CLASS = 50  # sampled training labels per class needed to take the chance level from their counts

ALIGN_CHECK = (
    "class Pairs(Dataset):\n"
    "    def __getitem__(self, i):\n"
    "        return self.x[i], self.y[i]      # the label of the same index, never of another order\n"
    "\n"
    "order = torch.randperm(len(x))\n"
    "x, y = x[order], y[order]               # one permutation for inputs and labels, never two\n"
    "for i in random.sample(range(len(dataset)), 5):\n"
    "    image, label = dataset[i]\n"
    "    print(i, label, classes[label])      # look at a few: does the label name what you see?"
)


@rule("labels_misaligned", Severity.ERROR, "The model memorizes its training labels while validation stays at chance",
      PARAMS)
def labels_misaligned(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: labels that do not belong to their inputs. A model big enough to
    memorize its training set does so even when the labels were shuffled apart from the
    inputs, so the training loss falls far below chance while every validation pass, on a
    clean held-out set, stays at chance: nothing learned on the training pairs carries over.
    Judged on a classification loss over class indices (cross_entropy, nll_loss) whose chance
    level is known (Timeline.prior: ln(C) and a share of 1/C; the entropy of the training labels'
    class counts and the majority's share when the sampled steps counted at least 50 labels per
    class, so an imbalanced set has its own chance), on at least `min_passes` (2) validation
    passes with a loss or an accuracy. All of:

    - memorized: the mean training loss of the steps before the last validation pass is at most
      `memorized` (0.5) of the chance level, and the training accuracy (the last 3 sampled
      steps since it got that low, where measured) at least `min_train_gain` (30 points) above
      the chance share;
    - every validation pass at chance: its loss at least (1 - `val_loss_margin`) of the chance
      level (a memorizer of shuffled labels is confidently wrong: its validation loss climbs
      above ln(C)), and its accuracy no more than `acc_noise_sds` (3) binomial standard
      deviations of its sample count, or `acc_floor` (2 points), above the chance share.

    Typical causes: a Dataset whose `__getitem__` returns the label of another index (two lists
    sorted or filtered apart, a label array in another order than the file list), inputs and
    labels shuffled with two permutations, a label column joined on the wrong key. The same
    picture comes from a validation set prepared unlike the training set (other normalization,
    another class-to-index mapping): check that too.

    Why it matters: the run looks like it trains (the training loss falls, the training accuracy
    climbs) and every epoch is wasted: the model learns a lookup table of the training samples.

    What to do: check that `__getitem__(i)` returns the label of the same index i, and shuffle,
    sort or filter inputs and labels together (one permutation for both, never two); print a few
    samples with their labels and look. If the pairs are right, prepare the validation set like
    the training set.

    Not flagged: overfitting (validation first improves above chance, then worsens: any pass
    above chance rules this out); a run too short to learn (the training loss still near
    chance: loss_plateau's); a small data set that generalizes poorly but above chance;
    regression and other losses without classes; a run with no validation (a training loss
    stuck at chance on a model that could fit is not told apart from a hard task without a
    re-run, so it is left to loss_plateau).
    """
    prior = tl.prior
    if prior is None or prior.loss_fn not in CLASS_INDEX_LOSSES or prior.dense or not prior.classes:
        return
    if prior.classes < 2 or tl.task != "classification":
        return
    passes = [_as_fraction(e) for e in tl.validation() if _judged(e)]
    if len(passes) < int(p["min_passes"]):
        return
    chance_loss, chance_share, counted = _chance(tl, prior.classes, prior.weighted)
    if chance_loss <= 0:
        return
    train = tl.train_loss_at(passes)
    last_train = train[-1]
    if last_train is None or not last_train <= p["memorized"] * chance_loss:
        return
    for e in passes:
        if _finite(e.loss) and _loss_comparable(e) and e.loss < (1 - p["val_loss_margin"]) * chance_loss:  # type: ignore[operator]
            return
        if _finite(e.accuracy) and e.accuracy > chance_share + _acc_margin(e, chance_share, p):  # type: ignore[operator]
            return
    first = next(i for i, t in enumerate(train) if t is not None and t <= p["memorized"] * chance_loss)
    at = passes[first]
    train_acc = _train_accuracy(tl, passes[first - 1].step if first > 0 else 0, passes[-1].step)
    if train_acc is not None and train_acc < chance_share + p["min_train_gain"]:
        return
    losses = [e.loss for e in passes if _finite(e.loss) and _loss_comparable(e)]
    accs = [e.accuracy for e in passes if _finite(e.accuracy)]
    xs = [e.epoch if e.epoch is not None else e.step for e in passes]
    evidence: dict[str, object] = {
        "classes": prior.classes,
        "chance_loss": chance_loss,
        "chance_share": chance_share,
        "chance_from": "label counts" if counted else "uniform",
        "train_loss_final": last_train,
        "train_accuracy_final": train_acc,
        "val_loss_min": min(losses) if losses else None,
        "val_loss_final": losses[-1] if losses else None,
        "val_accuracy_max": max(accs) if accs else None,
        "val_accuracy_final": accs[-1] if accs else None,
        "passes": len(passes),
        "memorized_from_step": at.step,
        "val_curve": thin([(x, e.loss) for x, e in zip(xs, passes, strict=True) if _finite(e.loss)]),
        "val_accuracy_curve": thin([(x, e.accuracy) for x, e in zip(xs, passes, strict=True) if _finite(e.accuracy)]),
        "train_curve": thin([(x, t) for x, t in zip(xs, train, strict=True) if t is not None]),
    }
    held = f"validation accuracy at most {max(accs):.0%}, chance {chance_share:.0%}" if accs else (
        f"validation loss never below {fmt(min(losses))}")  # type: ignore[type-var]
    trained = f", training accuracy {train_acc:.0%}" if train_acc is not None else ""
    title = (f"The model memorizes labels it cannot generalize: the training loss fell to {fmt(last_train)} "
             f"(chance {fmt(chance_loss)}{trained}) while all {len(passes)} validation passes stayed at chance "
             f"({held}): the labels do not belong to their inputs")
    yield finding_for("labels_misaligned", title, step=at.step, epoch=at.epoch, evidence=evidence, fixes=[
        Fix("align_labels",
            "Check that the dataset returns each input with its own label: __getitem__(i) must return the "
            "label of the same index i, and inputs and labels must be shuffled, sorted or filtered together "
            "(one permutation for both, never two). Print a few samples with their labels and look. If the "
            "training pairs are right, check that the validation set is prepared like the training set "
            "(same normalization, same class-to-index mapping).",
            {"chance_loss": chance_loss, "chance_share": chance_share}, ALIGN_CHECK),
    ])


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _loss_comparable(e: EvalPass) -> bool:
    """A validation loss is measured against ln(C) only when it is a class-index loss (or logged)."""
    return e.loss_fn is None or e.loss_fn in CLASS_INDEX_LOSSES


def _judged(e: EvalPass) -> bool:
    return (_finite(e.loss) and _loss_comparable(e)) or _finite(e.accuracy)


def _chance(tl: Timeline, classes: int, weighted: bool) -> tuple[float, float, bool]:
    """(chance loss, chance share, from counts): the entropy of the training labels and the
    majority's share when the sampled steps counted them; ln(C) and 1/C otherwise (and ln(C)
    for a class-weighted loss, whose prior prediction is the uniform one)."""
    counts = [0] * classes
    for sample in tl.habits.classes:
        labels = sample.get("labels") or []
        if len(labels) == classes:
            counts = [c + n for c, n in zip(counts, labels, strict=True)]
    total = sum(counts)
    if total < MIN_LABELS_PER_CLASS * classes:  # too few to tell the shares from sampling noise
        return math.log(classes), 1.0 / classes, False
    shares = [c / total for c in counts if c > 0]
    entropy = math.log(classes) if weighted else -sum(s * math.log(s) for s in shares)
    return entropy, max(shares), True


def _as_fraction(e: EvalPass) -> EvalPass:
    """A logged accuracy in percent (`doctor.log(val_acc=87.5)`) as a fraction."""
    if _finite(e.accuracy) and e.accuracy > 1.5:  # type: ignore[operator]
        return dataclasses.replace(e, accuracy=e.accuracy / 100)  # type: ignore[operator]
    return e


def _train_accuracy(tl: Timeline, start: int, end: int) -> float | None:
    """The mean of the last (up to 3) training accuracies measured from `start` to `end`: the
    sampled steps since the training loss was low (the probe samples a few steps, more early on)."""
    values = [r.accuracy for r in tl.steps if start <= r.step < end and _finite(r.accuracy)][-3:]
    return sum(values) / len(values) if values else None  # type: ignore[arg-type]


def _acc_margin(e: EvalPass, share: float, p: dict[str, float]) -> float:
    """How far above the chance share a pass's accuracy may be by chance: binomial noise of its samples."""
    sd = math.sqrt(share * (1 - share) / e.samples) if e.samples > 0 else 0.0
    return max(p["acc_noise_sds"] * sd, p["acc_floor"]) if e.samples > 0 else max(p["acc_floor"], 0.1)
