"""Fixes more than one rule prescribes, with their numbers derived from the run."""

from __future__ import annotations

import ast
from collections.abc import Callable
from textwrap import dedent

from ..findings import Fix
from ..formatting import fmt
from ..timeline import Timeline
from ._edits import argument_text, replace_layer, set_keyword, unwrap_call
from ._numbers import median, nice

# A learning rate that trains with each optimizer (torch.optim's defaults; for SGD, which has no
# usual default, the top of its usual range): where one orders of magnitude above goes back to.
USUAL_LR = {"Adam": 1e-3, "AdamW": 1e-3, "RAdam": 1e-3, "NAdam": 2e-3, "Adamax": 2e-3, "Adagrad": 1e-2,
            "RMSprop": 1e-2, "Adadelta": 1.0, "SGD": 0.1}


def lower_learning_rate(tl: Timeline, step: int | None, factor: float = 10.0, to_default: bool = False) -> Fix | None:
    """`factor` lower; with `to_default`, a learning rate far above what trains with this optimizer
    (a one-step blow-up) goes back to that usual value rather than to a tenth of itself."""
    lr = tl.lr_at(step)
    if not lr:
        return None
    opt = tl.optimizer_name()
    usual = USUAL_LR.get(opt or "")
    if to_default and usual and lr > factor * usual:
        new = usual
        text = (f"Lower the learning rate from {fmt(lr)} to {fmt(new)}, a usual value for {opt}: {fmt(lr / new)}x "
                "lower (a tenth would still be far too high).")
    else:
        new = nice(lr / factor)
        text = f"Lower the learning rate {factor:g}x, from {fmt(lr)} to {fmt(new)}."
    location = at_source(tl, "optimizer", "lr", f"{new:g}", position=1)
    if location:
        text += from_a_setting(tl, location["before"], "lr", f"{new:g}", position=1)
    return Fix(
        "lower_learning_rate",
        text,
        {"lr": new, "current_lr": lr},
        located_snippet(location) if location else f"optimizer = torch.optim.{opt}(model.parameters(), lr={new:g})",
        location,
    )


def from_a_setting(tl: Timeline, statement: str, name: str, new: str, position: int | None = None,
                   what: str = "optimizer") -> str:
    """When the call takes `name` from a variable, an attribute or a config entry rather than a
    literal, say so: writing the literal in (what the location's rewrite does) would silently override
    the user's setting; for an `args.X` (or a flag the run was given) name the command-line flag."""
    current = argument_text(statement, name, position)
    if current is None:
        return ""
    try:
        node = ast.parse(current, mode="eval").body
    except SyntaxError:
        return ""
    if not any(isinstance(n, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) for n in ast.walk(node)):
        return ""  # a literal: the rewrite is the whole fix
    where = f"(your {what} takes {name} from {current})"
    flag = _flag(tl, node)
    if flag:
        return f" Pass {flag} {new} {where}."
    return (f" Set it to {new} where {current} gets its value {where}; writing {new} into the {what} line "
            "instead would override that setting.")


def _flag(tl: Timeline, node: ast.expr) -> str | None:
    """The command-line flag behind `args.x_y` (as the run was given it, else argparse's `--x-y`),
    or behind any `something.x` whose flag the run was given."""
    if not isinstance(node, ast.Attribute):
        return None
    attr = node.attr
    spellings = [f"--{attr}", f"--{attr.replace('_', '-')}"]
    given = [a.split("=", 1)[0] for a in tl.run.argv[1:] if a.startswith("--")]
    for flag in spellings:
        if flag in given:
            return flag
    if isinstance(node.value, ast.Name) and node.value.id == "args":
        return spellings[1]
    return None


def rewritten(tl: Timeline, site: str, edit: Callable[[dict], str | None]) -> dict | None:
    """The fix's place in the user's code: the statement (or block) recorded for `site`, where the
    probes saw it made, as `edit(source)` rewrites it; None when it was not recorded or the edit
    cannot be made (None, or no change)."""
    source = tl.sources.get(site)
    if not source or not source.get("text") or not source.get("file"):
        return None
    after = edit(source)
    if after is None or after == source["text"]:
        return None
    return {"file": source["file"], "line": source["line"], "before": source["text"], "after": after}


def at_source(tl: Timeline, site: str, name: str, value: str, position: int | None = None) -> dict | None:
    """The statement recorded for `site` with the argument `name` set to `value`, every other
    argument kept; None when it is not a call that can be rewritten so."""
    return rewritten(tl, site, lambda source: set_keyword(source["text"], name, value, position))


def around_source(tl: Timeline, site: str, before: str, after: str) -> dict | None:
    """The block recorded for `site` with a line added before it and one after it, at its
    indentation (`model.eval()` / `model.train()` around the evaluation)."""

    def wrap(source: dict) -> str:
        indent = source.get("indent", "")
        return f"{indent}{before}\n{source['text']}\n{indent}{after}"

    return rewritten(tl, site, wrap)


def without_probability_layer(tl: Timeline, kind: str, module: str | None) -> dict | None:
    """The fix's place when a loss that applies its own softmax/sigmoid is given probabilities: the
    model's output layer `module` (a `kind`, "Softmax" or "Sigmoid") built as `nn.Identity()`
    instead, where the script built it; else the training loss call with the `softmax`/`sigmoid`
    call in it unwrapped. None when neither was recorded or can be rewritten so."""
    layer = tl.sources.get("output_layer")
    if module and layer and layer.get("module") == module and layer.get("type") == kind:
        location = rewritten(tl, "output_layer", lambda source: replace_layer(source["text"], kind))
        if location is not None:
            return location
    if not module:
        return rewritten(tl, "loss", lambda source: unwrap_call(source["text"], kind.lower()))
    return None


BLOWN_UP = 10.0  # a step whose loss is this many times the run's first is no healthy step


def located_snippet(location: dict) -> str:
    """The snippet of a fix that carries its location: the user's line as rewritten, unindented."""
    return dedent(location["after"]).strip()


def healthy_steps(tl: Timeline, until_step: int | None) -> list[tuple[int, float]]:
    """(step, gradient norm) of the steps before `until_step` whose loss had not yet blown up
    (issue 17: 'healthy steps 0-3' when step 3's loss was already 785,074)."""
    first = tl.first_loss()
    losses = {r.step: r.loss for r in tl.steps}
    out = []
    for s, v in tl.grad_norm_series():
        if until_step is not None and s >= until_step:
            break
        loss = losses.get(s)
        if first is not None and first > 0 and loss is not None and not loss <= BLOWN_UP * first:
            break  # from here on the run was blowing up
        out.append((s, v))
    return out



def clip_gradients(tl: Timeline, until_step: int | None) -> Fix | None:
    """max_norm at twice the median norm of the healthy steps: typical steps pass untouched,
    spikes are cut. The median, unlike a high percentile, is not dragged up by early spikes."""
    healthy = healthy_steps(tl, until_step)
    norms = [v for _, v in healthy]
    if len(norms) < 3:
        return None
    max_norm = nice(2 * median(norms))
    if not max_norm or max_norm <= 0:
        return None
    last = healthy[-1][0]
    span = f"steps {healthy[0][0]}-{last}" if until_step or last != tl.steps[-1].step else "the run"
    return Fix(
        "clip_gradients",
        f"Clip the gradient norm at {fmt(max_norm)} (twice the median total norm of the healthy "
        f"{span}), between backward() and step().",
        {"max_norm": max_norm},
        f"loss.backward()\ntorch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={max_norm:g})\n"
        "optimizer.step()",
    )


def add_normalization(tl: Timeline) -> Fix | None:
    model = next((m for m in tl.models), None)
    if model is None or model.has_normalization:
        return None
    convs = [n for n, t in model.module_types.items() if t.startswith("Conv")]
    linears = [n for n, t in model.module_types.items() if t == "Linear"]
    if convs:
        where, layer = convs, "nn.BatchNorm2d(out_channels)"
    elif linears[:-1]:
        where, layer = linears[:-1], "nn.BatchNorm1d(out_features) or nn.LayerNorm(out_features)"
    else:
        return None
    shown = ", ".join(tl.label(n) for n in where[:4]) + (" ..." if len(where) > 4 else "")
    return Fix(
        "add_normalization",
        f"The model has no normalization layer: add {layer} after {shown}.",
        {"after": where},
        "nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())"
        if convs else "nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.ReLU())",
    )

def warms_up(tl: Timeline) -> bool:
    """Whether the learning rate rose over the first fifth of the run (a warm-up is already there)."""
    lrs = [r.lr for r in tl.steps if r.lr is not None]
    if len(lrs) < 2:
        return False
    early = lrs[: max(2, len(lrs) // 5)]
    return lrs[0] < 0.5 * max(early)


def add_warmup(tl: Timeline, steps: int) -> Fix | None:
    """Linear warm-up over 5% of the observed steps (at least min(100, a fifth of them)), unless the
    run already warms up."""
    if steps < 2 or warms_up(tl):
        return None
    total = max(1, int(nice(max(0.05 * steps, min(100, steps // 5)))))
    return Fix(
        "add_warmup",
        f"Warm the learning rate up from a tenth of its value over the first {total} steps, so the early "
        "large gradients do not throw the weights off.",
        {"total_iters": total, "start_factor": 0.1},
        f"warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters={total})\n"
        "# warmup.step() after each optimizer.step()",
    )


def raise_learning_rate(tl: Timeline, lr: float, ratio: float, target: float = 1e-3,
                        max_factor: float = 1000.0) -> Fix | None:
    """Scale the learning rate so the update-to-weight ratio reaches `target` (a step moves about a
    thousandth of a weight's size in a healthy SGD run), at most `max_factor` times."""
    if not lr or lr <= 0 or not ratio or ratio <= 0:
        return None
    wanted = target / ratio
    factor = min(wanted, max_factor)
    if factor <= 1:
        return None
    new = nice(lr * factor)
    opt = tl.optimizer_name()
    capped = (f" (capped at {max_factor:g}x of the {fmt(wanted)}x the ratio asks for: raise it further if the "
              "loss still does not move)") if wanted > max_factor else ""
    return Fix(
        "raise_learning_rate",
        f"Each step moves the weights by {fmt(ratio)} of their size, where about {fmt(target)} is typical: "
        f"raise the learning rate about {nice(factor):g}x, from {fmt(lr)} to {fmt(new)}{capped}.",
        {"lr": new, "current_lr": lr, "factor": nice(factor)},
        f"optimizer = torch.optim.{opt}(model.parameters(), lr={new:g})",
    )
