"""ddp_out_of_sync: the ranks of a DDP run train different models."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from .base import Param, finding_for, rule

CODE = "ddp_out_of_sync"
RTOL = 1e-4  # relative difference of two ranks' fingerprints beyond float noise
ATOL = 1e-6
MAX_NAMES = 8
DOT_MODULE = re.compile(r"\.module\s*\(")


@rule(CODE, Severity.ERROR, "DDP ranks out of sync: gradients not all-reduced, or parameters that differ across ranks",
      {"min_steps": Param(1, "training steps whose forward bypassed the DDP wrapper before a verdict")})
def ddp_out_of_sync(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: under a distributed launch (torchrun), training steps whose forward called
    the model inside `DistributedDataParallel` (`model.module(x)`, or the raw model object kept
    from before the wrap) instead of the DDP wrapper, so `backward()` all-reduced no gradient; and,
    compared by rank 0 across ranks, parameters that differ between ranks at the same step (a
    fingerprint of the parameters, a strided sample summed per parameter, taken after the update
    of steps 0, 1, 3, 7, 15...).

    Why it matters: DDP keeps the ranks' models equal only through the wrapper: its forward
    prepares the reducer that averages the gradients during `backward()`. Bypassed, every rank
    trains its own model on its own shard of the data; nothing crashes, the loss goes down on
    each rank, and the checkpoint rank 0 saves has seen 1/N of the data.

    Not flagged: a single-process run (world size 1), a forward on `model.module` in eval mode
    or under `torch.no_grad()` (validation, logging), steps that also went through the wrapper,
    and differences within float tolerance (relative 1e-4).
    """
    if tl.run.world_size <= 1:
        return
    for event in tl.events_of("ddp_raw_module"):
        data = event.data
        unsynced = int(data.get("unsynced_steps") or 0)
        if unsynced < p["min_steps"]:
            continue
        step = data.get("first_unsynced", event.step)
        model = data.get("model") or "the model"
        site = data.get("site") or {}
        yield finding_for(
            CODE,
            f"{unsynced} training steps called the {model} inside DistributedDataParallel directly, not the DDP "
            f"wrapper: their gradients were never all-reduced across the {tl.run.world_size} ranks",
            step=step,
            where=data.get("model"),
            evidence={"step": step, "world_size": tl.run.world_size, "kind": "raw_module",
                      "parameters": list(data.get("parameters") or []),
                      "parameter_count": data.get("parameter_count"), "unsynced_steps": unsynced,
                      "wrapped_steps": data.get("wrapped_steps", 0)},
            fixes=[_call_wrapper(site)],
        )


def _call_wrapper(site: Mapping[str, Any]) -> Fix:
    location = None
    text = site.get("text") or ""
    if site.get("file") and DOT_MODULE.search(text):
        location = {"file": site["file"], "line": site["line"], "before": text,
                    "after": DOT_MODULE.sub("(", text, count=1)}
    return Fix("call_ddp_wrapper",
               "Train through the DistributedDataParallel object: `output = model(x)` where `model = DDP(net)`, "
               "not `model.module(x)` or `net(x)`; keep `model.module` for saving and for evaluation.",
               {}, "model = DistributedDataParallel(net)\noutput = model(x)  # not model.module(x)\n"
                   "loss = criterion(output, y)\nloss.backward()  # all-reduces the gradients",
               location=location)


# -- across ranks: rank 0 compares what each rank fingerprinted (distributed/merge.py) ---------------------
def fingerprints(tl: Timeline) -> list[dict[str, Any]]:
    """The parameter fingerprints this rank took, as plain data for rank 0."""
    return [{"step": e.step, "names": list(e.data.get("names") or []), "values": list(e.data.get("values") or [])}
            for e in tl.events_of("param_fingerprint")]


def compare(by_rank: Mapping[int, Sequence[Mapping[str, Any]]], world_size: int) -> Finding | None:
    """A finding when, at a step every compared rank fingerprinted, some parameter differs between
    rank 0 (the lowest rank) and another rank beyond float tolerance; the first such step."""
    if len(by_rank) < 2:
        return None
    base_rank = min(by_rank)
    base = {int(fp["step"]): fp for fp in by_rank[base_rank] if fp.get("step") is not None}
    for step in sorted(base):
        ref = base[step]
        ranks: list[int] = []
        names: list[str] = []
        worst = 0.0
        for rank in sorted(by_rank):
            if rank == base_rank:
                continue
            other = next((fp for fp in by_rank[rank] if fp.get("step") == step), None)
            if other is None or list(other.get("names") or []) != list(ref.get("names") or []):
                continue
            differ = False
            for name, a, b in zip(ref["names"], ref["values"], other["values"], strict=False):
                diff = _relative(a, b)
                if diff > RTOL:
                    differ = True
                    worst = max(worst, diff)
                    if name not in names:
                        names.append(name)
            if differ:
                ranks.append(rank)
        if ranks:
            count = len(names)
            return Finding(
                CODE, Severity.ERROR,
                f"Parameters differ across ranks at step {step}: rank {base_rank} and rank"
                f"{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} hold different values of "
                f"{count} parameter{'s' if count != 1 else ''} (by up to {fmt(100 * worst)}%), so the ranks "
                "train different models",
                step=step,
                evidence={"rank": ranks[0], "ranks": [base_rank, *ranks], "step": step, "world_size": world_size,
                          "kind": "parameters_differ", "parameters": names[:MAX_NAMES], "parameter_count": count,
                          "max_relative_difference": worst},
                fixes=[Fix("sync_ranks",
                           "Keep every rank's model equal: build the model with the same seed on every rank (or load "
                           "the checkpoint before wrapping it in DDP, which broadcasts rank 0's weights), train "
                           "through the DDP wrapper, and change parameters outside the optimizer (an EMA, a "
                           "re-initialization) identically on every rank.",
                           {"ranks": [base_rank, *ranks]},
                           "torch.manual_seed(0)  # the same on every rank\nmodel = DistributedDataParallel(net)\n"
                           "output = model(x)  # through the wrapper")],
            )
    return None


def _relative(a: Any, b: Any) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if (a == b or (math.isnan(a) and math.isnan(b))) else math.inf
    gap = abs(a - b)
    if gap <= ATOL:
        return 0.0
    return gap / max(abs(a), abs(b), ATOL)
