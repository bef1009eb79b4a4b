"""data_leakage: validation samples that are also training samples."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from .base import Param, finding_for, rule


@rule("data_leakage", Severity.ERROR, "Validation samples that are also training samples",
      {"min_seen": Param(8, "validation samples found among the training ones needed before a verdict"),
       "min_share": Param(0.02, "share of the validation samples checked that must be found in training"),
       "training_set_pass": Param(0.9, "share of the fingerprinted training samples an evaluation must cover "
                                       "to count as a pass over the training set (training accuracy)"),
       "max_duplicates": Param(0.01, "share of training rows repeated within their own batch above which "
                                     "the data has natural repeats and is not judged")})
def data_leakage(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: validation batches (forwards without gradients, not over the training
    loader) whose inputs are training inputs: the same samples, found by a fingerprint of each
    sample (two sums over a strided sample of its values) compared with the fingerprints of the
    training batches of the sampled steps. Typical causes: a split made after shuffling twice, a
    `random_split` drawn again for validation, the validation set built from the training list,
    overlapping index ranges.

    Why it matters: the validation numbers measure memory, not generalization: they look good
    while the model may not work on new data, and early stopping / model selection on them
    picks the most overfitted model.

    The share seen is a lower bound: only the training batches of sampled steps are
    fingerprinted, so with a training set of N samples of which n were fingerprinted, about
    n / N of the leaked samples can be found; the evidence also gives that estimate.

    Not flagged: separate splits; a validation set that is a different random draw; an
    evaluation over the training loader, or one that covers (nearly) every training sample
    fingerprinted (a training-accuracy pass); another model's forward on the training batch (a
    distillation teacher); augmented training inputs
    (they never match); data whose own batches repeat samples (discrete inputs, oversampling);
    a run that trains on one batch over and over (an overfit-one-batch check) and evaluates on it;
    forwards without gradients when no evaluation computed a loss (predictions on a few training
    rows printed as a sanity check: there is no validation number to be misled by).
    """
    leak = tl.habits.leakage
    if not leak or not leak.get("val_rows"):
        return
    if not tl.validation():
        return  # no evaluation computed a loss: predictions on a few training rows are a sanity check
    rows, seen = leak["val_rows"], leak["val_seen"]
    if leak["train_rows"] and leak["train_duplicates"] > p["max_duplicates"] * leak["train_rows"]:
        return
    if leak["train_distinct"] <= leak.get("train_batch_rows", 0):
        return  # every sampled step trained on the same batch: an overfit-one-batch check, validated on it
    if leak.get("train_covered", 0.0) >= p["training_set_pass"]:
        return  # the evaluation went over (nearly) every training sample seen: a training-accuracy pass
    share = seen / rows
    if seen < p["min_seen"] or share < p["min_share"]:
        return
    size = _train_size(tl)
    coverage = min(1.0, leak["train_distinct"] / size) if size else None
    estimate = min(1.0, share / coverage) if coverage else None
    title = (f"{seen} of {rows} validation samples checked ({share:.0%}) are training samples"
             + (f"; with {coverage:.0%} of the training set fingerprinted, about {estimate:.0%} of the "
                "validation set is in it" if estimate is not None else ""))
    yield finding_for(
        "data_leakage", title, step=leak.get("first_step"),
        evidence={"seen_share": share, "estimated_share": estimate, "val_samples_checked": rows,
                  "val_samples_seen": seen, "train_samples_fingerprinted": leak["train_distinct"],
                  "train_set_size": size},
        fixes=[Fix("split_data",
                   "Split the samples once, into disjoint training and validation sets, and build both loaders "
                   "from that one split (a fixed generator seed; never a second random_split or shuffle).",
                   {"estimated_share": estimate},
                   "generator = torch.Generator().manual_seed(0)\n"
                   "train_set, val_set = torch.utils.data.random_split(dataset, [0.9, 0.1], generator=generator)\n"
                   "train_loader = DataLoader(train_set, batch_size=64, shuffle=True)\n"
                   "val_loader = DataLoader(val_set, batch_size=256)")],
    )


def _train_size(tl: Timeline) -> int | None:
    settings = tl.habits.loaders.get(tl.habits.train_loader or "") if tl.habits.train_loader else None
    size = settings.get("dataset_size") if settings else None
    return int(size) if isinstance(size, (int, float)) and size > 0 else None
