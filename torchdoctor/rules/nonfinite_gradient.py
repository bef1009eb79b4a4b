"""nonfinite_gradient: the loss was finite, but backward produced NaN/Inf gradients."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from .base import Param, finding_for, rule


@rule("nonfinite_gradient", Severity.CRITICAL, "A gradient went NaN/Inf while the loss was finite",
      {"report_params": Param(8, "how many parameter names to list in the evidence")})
def nonfinite_gradient(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: a step whose loss was finite but where some parameter's gradient held
    NaN or Inf. Checked at every `optimizer.step()` from the gradient norms torchdoctor
    already computes, so it costs nothing extra.

    Why it matters: the optimizer writes those NaNs into the weights, and from the next step
    on the loss is NaN too. The usual cause is an operation whose derivative is infinite at a
    point the forward pass reached: `sqrt(x)` or `x ** 0.5` at 0, `log(x)` at 0, `x / y`
    with y = 0, `acos`/`asin` at +-1, a norm of an all-zero vector.

    Where to look: backward runs from the loss towards the input, so the parameters nearest
    the loss that went non-finite (the finding's `where`) sit just before the faulty
    operation; the layer after them still had finite gradients. Add an epsilon or clamp the
    argument there.
    """
    events = tl.events_of("nonfinite_gradient")
    if not events:
        return
    event = events[0]
    names: list[str] = event.data.get("params", [])
    position = {name: i for i, layer in enumerate(tl.layers) for name in layer.params}
    ordered = sorted(names, key=lambda n: position.get(n, -1))
    last_layer_index = max((position.get(n, -1) for n in names), default=-1)
    layer = tl.layers[last_layer_index] if last_layer_index >= 0 else None
    first_affected = [n for n in ordered if position.get(n) == last_layer_index] or ordered[-1:]
    after = None
    for later in tl.layers[last_layer_index + 1 :] if layer else []:
        if later.kind in ("weight", "norm", "other") and not set(later.params) & set(names):
            after = later.name
            break
    bad_steps = sum(1 for r in tl.steps if r.nonfinite_grads)
    where = layer.name if layer else (first_affected[0] if first_affected else None)
    between = f"between {where} and {after}" if after else f"after {where}"
    limit = int(p["report_params"])
    yield finding_for(
        "nonfinite_gradient",
        f"Gradients went NaN/Inf at step {event.step} while the loss was finite; it starts {between}",
        step=event.step,
        epoch=event.epoch,
        where=where,
        evidence={
            "step": event.step,
            "first_affected": first_affected,
            "params": ordered[-limit:],
            "num_params": len(names),
            "next_finite_layer": after,
            "nonfinite_steps": bad_steps,
        },
        fixes=[
            Fix(
                "add_epsilon",
                f"Guard the operation {between} whose derivative is infinite at its input: sqrt, "
                "log, pow with exponent < 1, division or a norm at 0. Clamp or add an epsilon.",
                {"eps": 1e-8, "after_module": where, "before_module": after},
                "x = torch.sqrt(x.clamp_min(1e-8))      # instead of torch.sqrt(x)\n"
                "x = torch.log(x + 1e-8)                # instead of torch.log(x)",
            ),
            Fix(
                "skip_nonfinite_steps",
                "Until it is fixed, skip updates whose gradients are not finite so the weights stay "
                "usable.",
                {},
                "grads = [p.grad for p in model.parameters() if p.grad is not None]\n"
                "if all(torch.isfinite(g).all() for g in grads):\n    optimizer.step()",
            ),
        ],
    )
