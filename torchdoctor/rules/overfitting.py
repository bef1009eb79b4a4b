"""overfitting: validation gets worse (or falls far behind) while the training loss keeps falling."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from ..findings import Finding, Severity
from ..formatting import fmt
from ..timeline import EvalPass, Timeline
from ._dynamics import med3
from ._numbers import median, thin
from ._regularization import augment, dropout, early_stopping, smaller_model, weight_decay
from .base import NotEvaluated, Param, finding_for, rule

PARAMS = {
    "min_passes": Param(4, "validation passes needed before any verdict"),
    "patience": Param(3, "passes at the end of the run that must all be worse than the best one"),
    "min_rise": Param(0.10, "validation loss (median of 3) at least this fraction above its best over those passes"),
    "min_acc_drop": Param(0.03, "or validation accuracy (median of 3) this much below its best (0.03: 3 points)"),
    "min_train_drop": Param(0.05, "while the training loss fell at least this fraction below its level at the best"),
    "gap_ratio": Param(2.0, "gap criterion: validation loss at least this times the training loss at the end"),
    "gap_growth": Param(0.25, "gap criterion: and that ratio grew at least this fraction since the best pass"),
}

NOISE_SDS = 3.0  # a change smaller than this many pass-to-pass standard deviations could be noise
NO_VALIDATION = (
    "no validation was observed: evaluate a held-out set after each epoch with model.eval() under "
    "torch.no_grad() (torchdoctor picks the pass up by itself), or report it with doctor.log(val_loss=...)"
)


@dataclass
class Verdict:
    criterion: str  # "val_loss_rise", "val_accuracy_drop" or "gap"
    best: int  # index into the passes: the checkpoint early stopping keeps
    detail: str


@rule("overfitting", Severity.WARNING, "Validation gets worse while the training loss keeps falling", PARAMS)
def overfitting(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the model memorizing its training set. Judged on the validation passes
    (one point per pass, usually per epoch) against the mean training loss of the steps
    before each pass, over the whole run: validation passes are too few to split by phase, and
    the priors it uses are the run's own best validation point and its pass-to-pass noise.
    Both curves are smoothed by a centred median of three, so one odd evaluation decides
    nothing, and only the end of the run counts: a run that recovered
    (an LR drop, a warm restart, a second descent) is clean. Any one of:

    - val_loss_rise: each of the last `patience` (3) passes has a validation loss at least
      `min_rise` (10%) above its best, while the training loss fell at least
      `min_train_drop` (5%) below its level at the best pass;
    - val_accuracy_drop: validation accuracy (mean IoU for segmentation), likewise, at least `min_acc_drop` (3 points)
      below its best on each of the last `patience` passes, the validation loss (if measured)
      not having improved over them, the training loss falling as above;
    - gap: the validation loss has not improved over the last `patience` passes, the training
      loss fell as above, and the validation loss ends at least `gap_ratio` (2x) the training
      loss, a ratio that grew at least `gap_growth` (25%) since the best pass. Not judged when
      validation and training use different loss functions.

    On noisy curves each threshold grows to three pass-to-pass standard deviations (estimated
    from each point's distance to the median of it and its neighbours, which a monotone
    stretch, however curved, does not inflate), so a rise or a fall must stand out of the
    curve's own noise. A training loss above the validation loss
    (dropout, augmentation) never reads as a gap, and a training loss that rose as well is
    divergence, not overfitting. No verdict before `min_passes` (4) passes.

    The finding's step and epoch are those of the best validation pass, the checkpoint to
    keep; the evidence also says where the rise began. A run already stopped early with a
    patience of 3 or more can show the same rise; if it restored its best checkpoint,
    nothing is lost.

    Why it matters: past the best pass every epoch makes the model worse on data it has not
    seen, while the training loss says all is well.

    What to do: stop early and keep the best checkpoint (the finding names its epoch), then
    regularize: weight decay (derived from the optimizer's), data augmentation (transforms
    sized for the observed input), dropout before the last linear layers, or a smaller model.
    """
    val = tl.validation()
    if not val:
        raise NotEvaluated(NO_VALIDATION)
    passes = [e for e in val if _finite(e.loss) or e.accuracy is not None]
    needed = int(p["min_passes"])
    if len(passes) < needed:
        raise NotEvaluated(f"{len(passes)} validation passes; needs at least {needed} to tell a trend from noise")
    train = _filled(tl.train_loss_at(passes))
    if train is None:
        raise NotEvaluated("no finite training loss was observed between the validation passes")
    patience = max(1, int(p["patience"]))
    n = len(passes)
    losses = [e.loss if _finite(e.loss) else None for e in passes]
    acc = _accuracies(passes)
    sv = _smoothed(losses)
    st = med3(train)
    sa = _smoothed(acc)

    # Noisy validation needs a larger change: at least NOISE_SDS pass-to-pass standard deviations.
    p = dict(p)
    p["min_rise"] = max(p["min_rise"], math.exp(NOISE_SDS * _pass_noise(losses, log=True)) - 1)
    p["min_acc_drop"] = max(p["min_acc_drop"], NOISE_SDS * _pass_noise(acc, log=False))
    p["min_train_drop"] = max(p["min_train_drop"], 1 - math.exp(-NOISE_SDS * _pass_noise(train, log=True)))  # type: ignore[arg-type]
    verdict = _loss_rise(sv, st, patience, p) or _accuracy_drop(sa, sv, st, patience, p, _metric(passes))
    if verdict is None and _comparable(tl, passes):
        verdict = _gap(sv, st, patience, p)
    if verdict is None:
        return
    best = verdict.best
    if verdict.criterion != "val_accuracy_drop" and losses[best] is not None:
        near = [i for i in range(max(0, best - 1), min(n, best + 2)) if losses[i] is not None]
        best = min(near, key=lambda i: losses[i])  # the checkpoint early stopping would have kept
    at = passes[best]
    epochs = _by_epoch(passes)
    xs = [e.epoch if epochs else e.step for e in passes]
    where = f"epoch {at.epoch}" if epochs else f"step {at.step}"
    rise_from = passes[min(best + 1, n - 1)]
    drop = 1 - st[-1] / st[verdict.best] if st[verdict.best] > 0 else None
    best_loss, final_loss = losses[best], losses[-1]
    evidence: dict[str, object] = {
        "criterion": verdict.criterion,
        "x_axis": "epoch" if epochs else "step",
        "best_epoch": at.epoch,
        "best_step": at.step,
        "rise_from_epoch": rise_from.epoch,
        "rise_from_step": rise_from.step,
        "best_val_loss": best_loss,
        "final_val_loss": final_loss,
        "val_rise": sv[-1] / sv[verdict.best] - 1 if sv[-1] is not None and sv[verdict.best] else None,
        "train_loss_at_best": train[best],
        "final_train_loss": train[-1],
        "train_drop": drop,
        "gap_at_best": _gap_of(best_loss, train[best]),
        "gap_final": _gap_of(final_loss, train[-1]),
        "passes": n,
        "patience": patience,
        "val_curve": thin([(x, v) for x, v in zip(xs, losses, strict=True) if v is not None]),
        "train_curve": thin(list(zip(xs, train, strict=True))),
    }
    if any(a is not None for a in acc):
        best_acc = max(a for a in acc if a is not None)
        evidence.update({
            "val_accuracy_best": best_acc,
            "val_accuracy_at_best": acc[best],
            "val_accuracy_final": acc[-1],
            "val_accuracy_curve": thin([(x, a) for x, a in zip(xs, acc, strict=True) if a is not None]),
            "val_metric": _metric(passes),
        })
    title = f"Overfitting: {verdict.detail.format(where=where, best=fmt(best_loss))}"
    if drop is not None:
        title += f", while the training loss fell from {fmt(st[verdict.best])} to {fmt(st[-1])}"
    held = sa[-1] is not None and max(a for a in sa if a is not None) - sa[-1] < 0.005
    if verdict.criterion == "val_loss_rise" and held:
        title += f" (validation {_metric(passes)} held at {sa[-1]:.1%}: the model grows over-confident)"
    fixes = [early_stopping(at, where, best_loss, acc[best], n - 1 - best, patience, verdict.criterion)]
    model = tl.models[0] if tl.models else None
    for fix in (weight_decay(tl), augment(model), dropout(tl, model), smaller_model(model)):
        if fix is not None:
            fixes.append(fix)
    yield finding_for("overfitting", title, step=at.step, epoch=at.epoch, evidence=evidence, fixes=fixes)


# -- criteria ---------------------------------------------------------------------------


def _loss_rise(sv: list[float | None], st: list[float], patience: int, p: dict[str, float]) -> Verdict | None:
    idx = [i for i, v in enumerate(sv) if v is not None]
    if len(idx) < int(p["min_passes"]):
        return None
    best = min(idx, key=lambda i: sv[i])  # type: ignore[arg-type,return-value]
    low = sv[best]
    assert low is not None
    tail = idx[-patience:]
    if best >= tail[0] or low <= 0 or not _train_fell(st, best, p):
        return None
    if all(sv[i] >= low * (1 + p["min_rise"]) for i in tail):  # type: ignore[operator]
        rise = sv[idx[-1]] / low - 1  # type: ignore[operator]
        return Verdict("val_loss_rise", best, f"validation loss rose {rise:.0%} above its best ({{best}}, {{where}})")
    return None


def _accuracy_drop(sa: list[float | None], sv: list[float | None], st: list[float], patience: int,
                   p: dict[str, float], metric: str = "accuracy") -> Verdict | None:
    idx = [i for i, a in enumerate(sa) if a is not None]
    if len(idx) < int(p["min_passes"]):
        return None
    best = max(idx, key=lambda i: sa[i])  # type: ignore[arg-type,return-value]
    top = sa[best]
    assert top is not None
    tail = idx[-patience:]
    if best >= tail[0] or not _train_fell(st, best, p):
        return None
    loss_idx = [i for i, v in enumerate(sv) if v is not None]
    if loss_idx and min(loss_idx, key=lambda i: sv[i]) >= tail[0]:  # type: ignore[arg-type,return-value]
        return None  # the validation loss is still improving
    if all(sa[i] <= top - p["min_acc_drop"] for i in tail):  # type: ignore[operator]
        final = sa[idx[-1]]
        return Verdict("val_accuracy_drop", best,
                       f"validation {metric} fell from {top:.1%} ({{where}}) to {final:.1%}")
    return None


def _gap(sv: list[float | None], st: list[float], patience: int, p: dict[str, float]) -> Verdict | None:
    idx = [i for i, v in enumerate(sv) if v is not None]
    if len(idx) < int(p["min_passes"]):
        return None
    best = min(idx, key=lambda i: sv[i])  # type: ignore[arg-type,return-value]
    last = idx[-1]
    if best > len(sv) - 1 - patience or st[best] <= 0 or st[last] <= 0 or not _train_fell(st, best, p):
        return None
    ratio_end = sv[last] / st[last]  # type: ignore[operator]
    ratio_best = sv[best] / st[best]  # type: ignore[operator]
    if ratio_end >= p["gap_ratio"] and ratio_end >= ratio_best * (1 + p["gap_growth"]):
        return Verdict("gap", best, f"validation loss has not improved since {{where}} ({{best}}) and "
                                    f"ends {ratio_end:.1f}x the training loss (from {ratio_best:.1f}x)")
    return None


def _train_fell(st: list[float], best: int, p: dict[str, float]) -> bool:
    return st[best] > 0 and st[-1] <= st[best] * (1 - p["min_train_drop"])


# -- fixes --------------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _filled(values: list[float | None]) -> list[float] | None:
    """Gaps (two passes with no step between them) take the value before them, or the first one."""
    first = next((v for v in values if v is not None), None)
    if first is None:
        return None
    out, last = [], first
    for v in values:
        last = v if v is not None else last
        out.append(last)
    return out


def _smoothed(values: list[float | None]) -> list[float | None]:
    """med3 over the measured values, placed back where they were."""
    idx = [i for i, v in enumerate(values) if v is not None]
    smooth = med3([values[i] for i in idx])  # type: ignore[misc]
    out: list[float | None] = [None] * len(values)
    for i, s in zip(idx, smooth, strict=True):
        out[i] = s
    return out


def _pass_noise(values: list[float | None], log: bool) -> float:
    """The pass-to-pass spread of a curve (in log for losses): the mean distance of each point from
    the median of it and its neighbours, 0.564 of the spread for independent noise. On a
    monotone stretch, however curved (the fast descent of the first epochs), that distance is 0."""
    kept = [math.log(v) if log else v for v in values if v is not None and (v > 0 or not log)]
    residuals = [abs(kept[i] - median(kept[i - 1:i + 2])) for i in range(1, len(kept) - 1)]
    return sum(residuals) / len(residuals) / 0.564 if residuals else 0.0


def _metric(passes: list[EvalPass]) -> str:
    """What the validation passes are scored by: mean IoU for segmentation (the pixel accuracy
    of a mostly-background mask hardly moves), accuracy otherwise."""
    return "mean IoU" if any(_finite(e.iou) for e in passes) else "accuracy"


def _accuracies(passes: list[EvalPass]) -> list[float | None]:
    """Accuracy (or mean IoU) as a fraction; `doctor.log(val_acc=87.5)` in percent is recognised."""
    if _metric(passes) == "mean IoU":
        return [e.iou if _finite(e.iou) else None for e in passes]
    acc = [e.accuracy if _finite(e.accuracy) else None for e in passes]
    if any(a is not None and a > 1.5 for a in acc):
        acc = [a / 100 if a is not None else None for a in acc]
    return acc


def _comparable(tl: Timeline, passes: list[EvalPass]) -> bool:
    """The gap means something only when validation and training compute the same loss."""
    fns = {e.loss_fn for e in passes if e.loss_fn}
    return not (fns and tl.train_loss_fn and fns != {tl.train_loss_fn})


def _by_epoch(passes: list[EvalPass]) -> bool:
    epochs = [e.epoch for e in passes]
    return all(e is not None for e in epochs) and all(a < b for a, b in zip(epochs, epochs[1:], strict=False))  # type: ignore[operator]


def _gap_of(val: float | None, train: float | None) -> dict[str, float | None]:
    if val is None or train is None:
        return {"diff": None, "ratio": None}
    return {"diff": val - train, "ratio": val / train if train > 0 else None}
