"""optimizer_holds_other_model: an optimizer built on the wrong model's parameters."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from .base import finding_for, rule


@rule("optimizer_holds_other_model", Severity.ERROR,
      "An optimizer holds another model's parameters than the one its loss trains")
def optimizer_holds_other_model(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: two optimizers over the same model while another model, whose parameters
    the losses reach, is in no optimizer at all: the second optimizer was built on the wrong
    model's parameters (`optimizerG = optim.Adam(netD.parameters())`). Read from which models
    each optimizer holds and which the losses backwarded before its steps reach.

    Why it matters: the model meant to train never moves, and the other is stepped twice per
    iteration, once on a loss that works against it (a GAN's discriminator then also follows
    the generator's objective).

    Not flagged: two optimizers over parts of one model (parameter groups split in two), and a
    model that no loss reaches.
    """
    entries = tl.roles.optimizers
    held = {m for e in entries for m in e.get("models", [])}
    for n, entry in enumerate(entries):
        models = entry.get("models") or []
        if not models:
            continue
        twin = next((e for e in entries[:n] if e.get("models") == models), None)
        if twin is None:
            continue
        meant = [m for m in entry.get("reaches", []) if m not in held]
        if not meant:
            continue
        target = meant[0]
        shown = ", ".join(models)
        title = (f"optimizer {entry['index']} ({entry.get('optimizer')}) holds {shown}'s parameters, as optimizer "
                 f"{twin['index']} does, while {target}, which its loss trains, is in no optimizer")
        yield finding_for(
            "optimizer_holds_other_model", title, where=target,
            evidence={"optimizer": entry.get("optimizer"), "optimizer_index": entry["index"], "holds": models,
                      "also_held_by": twin["index"], "unoptimized_model": target, "reaches": entry.get("reaches")},
            fixes=[Fix("optimize_right_model",
                       f"Build optimizer {entry['index']} on {target}'s parameters.",
                       {"model": target},
                       f"optimizer = torch.optim.{entry.get('optimizer') or 'Adam'}({target}.parameters(), ...)")],
        )
