"""frozen_parameters: trainable parameters that no optimizer updates."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
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
        owner = _expression(module)
        fixes = [
            Fix("optimize_all_parameters",
                "If they should train: give the optimizer every trainable parameter (a lower learning rate for a "
                "pretrained part goes in its own parameter group).",
                {"params": len(names)},
                "optimizer = torch.optim.SGD([\n"
                f"    {{\"params\": {owner}.parameters(), \"lr\": 1e-4}},  # the part that was left out\n"
                "    {\"params\": model.fc.parameters()},\n], lr=1e-2)"
                if where else "optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)"),
            Fix("freeze_parameters",
                "If they should stay as they are: freeze them, and backward stops computing their gradients.",
                {"params": len(names)},
                f"for p in {owner}.parameters():\n    p.requires_grad_(False)"
                if where else "for name, p in model.named_parameters():\n"
                "    if name not in TRAINED:\n        p.requires_grad_(False)"),
        ]
        yield finding_for(
            "frozen_parameters", title, step=event.step, epoch=event.epoch, where=where or None,
            evidence={"params": names[:50], "count": len(names), "numel": data["numel"],
                      "trainable_numel": data.get("trainable_numel"), "zero_lr": zero_lr[:50]},
            fixes=fixes,
        )


def _expression(module: str) -> str:
    """The module as the script reaches it: `model.backbone`, or `netG.main` for a second
    model's `netG:main` (its modules are named after what the script calls it)."""
    if ":" in module:
        label, _, rest = module.partition(":")
        return f"{label}.{rest}" if rest else label
    return f"model.{module}"


def _common_prefix(names: list[str]) -> str:
    """The module the parameters share (`backbone` for backbone.0.weight, backbone.3.bias)."""
    modules = [n.rsplit(".", 1)[0] if "." in n else "" for n in names]
    common = os.path.commonprefix([m.split(".") for m in modules])
    return ".".join(common)
