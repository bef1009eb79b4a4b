"""dead_units: ReLU units that are zero for every input."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._dynamics import progress
from ._numbers import nice
from .base import Param, finding_for, rule


@rule("dead_units", Severity.WARNING, "A large fraction of ReLU outputs are zero for every input",
      {"dead_share": Param(0.5, "share of a layer's units dead over a whole batch that is too many"),
       "min_samples": Param(2, "sampled forwards needed, the last of them all showing it"),
       "min_values": Param(16, "values each unit must be seen on in a sample (batch x positions) for 'zero for "
                           "every input' to mean anything: an SE block's squeeze on a batch of 4 is seen 4 times"),
       "growth": Param(0.1, "dying: the dead share rose by more than this since the first sample (else it was "
                       "dead from initialization, info while the loss comes down)")})
def dead_units(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: ReLU layers (`nn.ReLU` modules, and `F.relu` / `torch.relu` / `relu_` calls,
    named after the module whose forward makes them: `features F.relu#2`) in which at least
    half of the units (channels, or features) output zero for every example of a training
    batch, on the sampled forwards (steps 1, 5, 10, 20, 50, then every 100th) and still at the
    last ones. A dead unit gets no gradient, so it never comes back.

    Severity from consequence: a warning when the dead share grew during the run (units dying,
    `growth`) or the loss is not coming down; units dead from the first sample on, in a network
    whose loss falls, are info: they cost some capacity and nothing else.

    Why it matters: the layer's capacity is gone; with all units dead the network outputs a
    constant and stops learning. The usual causes: a learning rate too high (one large update
    pushes the biases so negative that no input activates the unit), biases initialized
    negative, or inputs on the wrong scale.

    Not flagged: ordinary sparsity (most units zero for most inputs, but each alive for some),
    which is what ReLU networks do; and a unit seen on fewer than `min_values` values in a sample
    (a squeeze-and-excitation ReLU on a batch of 4 images is seen 4 times: zero on all four says
    little).
    """
    by_module: dict[str, list[dict]] = {}
    for s in tl.habits.activations:
        if "dead" in s:
            by_module.setdefault(s["module"], []).append(s)
    def mostly_dead(s: dict) -> bool:
        return (bool(s["units"]) and s["dead"] / s["units"] >= p["dead_share"]
                and s.get("per_unit", p["min_values"]) >= p["min_values"])

    dead_layers = [m for m, ss in by_module.items()
                   if len(ss) >= p["min_samples"] and all(mostly_dead(s) for s in ss[-2:])]
    if not dead_layers:
        return
    module = max(dead_layers, key=lambda m: by_module[m][-1]["dead"] / by_module[m][-1]["units"])
    samples = by_module[module]
    share = samples[-1]["dead"] / samples[-1]["units"]
    first = next(s for s in samples if mostly_dead(s))
    lr = tl.lr_at(first["step"])
    # Severity from consequence: units dead from the first sample on, in a network whose loss
    # comes down, cost some capacity and nothing else; dying units, or a stalled loss, are a warning.
    start_share = samples[0]["dead"] / samples[0]["units"] if samples[0]["units"] else 0.0
    grew = share > start_share + p["growth"]
    losses = tl.finite_losses()
    learning = len(losses) >= 10 and progress(losses).improved(0.05)
    harmless = not grew and learning
    fixes = []
    if lr:
        fixes.append(Fix("lower_learning_rate",
                         f"Lower the learning rate: {nice(lr / 10):g} instead of {lr:g}. One large update is "
                         "enough to push a unit's bias below every input.",
                         {"lr": nice(lr / 10), "current_lr": lr}))
    fixes += [
        Fix("change_activation", "Use an activation whose gradient is never exactly zero: LeakyReLU or GELU.",
            {"activation": "LeakyReLU"}, "nn.LeakyReLU(0.01)  # instead of nn.ReLU()"),
        Fix("change_initialization", "Initialize the layers before the ReLUs with He (Kaiming) initialization and "
            "zero biases.", {"init": "kaiming_normal_"},
            "for m in model.modules():\n    if isinstance(m, (nn.Conv2d, nn.Linear)):\n"
            "        nn.init.kaiming_normal_(m.weight, nonlinearity=\"relu\")\n        nn.init.zeros_(m.bias)"),
    ]
    yield finding_for(
        "dead_units",
        f"{share:.0%} of the units of {tl.label(module)} output zero for every input of a batch"
        + (f", and {len(dead_layers) - 1} more ReLU layers are mostly dead" if len(dead_layers) > 1 else "")
        + (f"; dead from the first sample (step {samples[0]['step']}) on, in a network that learns" if harmless
           else ""),
        step=first["step"], where=module, severity=Severity.INFO if harmless else None,
        evidence={"layers": {m: round(by_module[m][-1]["dead"] / by_module[m][-1]["units"], 3) for m in dead_layers},
                  "dead": samples[-1]["dead"], "units": samples[-1]["units"],
                  "history": [[s["step"], s["dead"]] for s in samples][-20:], "lr": lr,
                  "dead_share_at_first_sample": round(start_share, 3), "grew": grew, "loss_learning": learning},
        fixes=fixes,
    )
