"""frozen_parameters: trainable parameters that no optimizer updates."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._fixes import at_source, located_snippet
from .base import finding_for, rule


@rule("frozen_parameters", Severity.ERROR, "Trainable parameters are never updated (in no optimizer, or lr 0)")
def frozen_parameters(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: parameters that require gradients and receive them in backward, but that
    no optimizer updates: the optimizer was built on a part of the model
    (`SGD(model.fc.parameters())`) while the rest still requires grad, or their parameter group
    has a learning rate of 0. Checked once every optimizer has stepped (step 2).

    Why it matters: those weights stay at their initialization (or pretrained values) while the
    run pays for their gradients in every backward. If you meant to fine-tune them, they do not
    train; if you meant to freeze them, the backward through them is wasted time and memory.

    Not flagged: parameters frozen on purpose with `requires_grad_(False)` (they get no
    gradient), and parameters of a model that no loss reaches.
    """
    for event in tl.events_of("unoptimized_parameters"):
        data = event.data
        names: list[str] = data["params"]
        where = _common_prefix(names)
        share = data["numel"] / data["trainable_numel"] if data.get("trainable_numel") else None
        zero_lr = data.get("zero_lr") or []
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        why = "sit in a parameter group with lr 0" if len(zero_lr) == len(names) else "are in no optimizer"
        title = (f"{len(names)} parameters ({data['numel']:,} weights"
                 + (f", {share:.0%} of the trainable ones" if share is not None else "")
                 + f") receive gradients but {why}: {shown}")
        module = where or "model"
        owner = _expression(module, _model_name(tl))
        model = _model_name(tl)
        in_none = len(zero_lr) < len(names)  # not a parameter group at lr 0: left out of the optimizer
        location = at_source(tl, "optimizer", "params", f"{model}.parameters()", position=0) if in_none else None
        if location is not None:  # the user's own optimizer line, given the whole model
            optimize = Fix("optimize_all_parameters",
                           "If they should train: give the optimizer every trainable parameter (a lower learning "
                           "rate for a pretrained part goes in its own parameter group).",
                           {"params": len(names)}, located_snippet(location), location=location)
        else:
            optimizer = tl.optimizer_name() or "SGD"
            lr = tl.optimizer_hparams.get("lr")
            optimize = Fix("optimize_all_parameters",
                           "If they should train: give the optimizer every trainable parameter (a lower learning "
                           "rate for a pretrained part goes in its own parameter group).",
                           {"params": len(names)},
                           f"optimizer = torch.optim.{optimizer}({model}.parameters()"
                           + (f", lr={lr:g})" if isinstance(lr, float) else ")"))
        if where:
            freeze = f"for p in {owner}.parameters():\n    p.requires_grad_(False)"
        else:  # no module holds them all: name them (the first few), never a name the script lacks
            listed = ", ".join(repr(n) for n in names[:6])
            more = f"  # and the {len(names) - 6} more in the evidence" if len(names) > 6 else ""
            freeze = (f"for name, p in {model}.named_parameters():\n"
                      f"    if name in {{{listed}}}:{more}\n        p.requires_grad_(False)")
        fixes = [
            optimize,
            Fix("freeze_parameters",
                "If they should stay as they are: freeze them, and backward stops computing their gradients.",
                {"params": len(names)}, freeze),
        ]
        yield finding_for(
            "frozen_parameters", title, step=event.step, epoch=event.epoch, where=where or None,
            evidence={"params": names[:50], "count": len(names), "numel": data["numel"],
                      "trainable_numel": data.get("trainable_numel"), "zero_lr": zero_lr[:50]},
            fixes=fixes,
        )


def _model_name(tl: Timeline) -> str:
    """What the script calls the (first) model, when a name for it was found (a label that is
    only its class name was not); `model` otherwise."""
    first = tl.models[0] if tl.models else None
    label = first.label if first is not None and first.label != first.name else ""
    return label if label.isidentifier() else "model"


def _expression(module: str, model: str = "model") -> str:
    """The module as the script reaches it: `model.backbone`, or `netG.main` for a second
    model's `netG:main` (its modules are named after what the script calls it)."""
    if ":" in module:
        model, _, module = module.partition(":")
        if not module:
            return model
    # `backbone.0` is reached as `backbone[0]` (a Sequential's index is no attribute name)
    return model + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in module.split("."))


def _common_prefix(names: list[str]) -> str:
    """The module the parameters share (`backbone` for backbone.0.weight, backbone.3.bias)."""
    modules = [n.rsplit(".", 1)[0] if "." in n else "" for n in names]
    common = os.path.commonprefix([m.split(".") for m in modules])
    return ".".join(common)
