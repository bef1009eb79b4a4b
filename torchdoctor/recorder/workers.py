"""The timelines of `multiprocessing` workers (Hogwild), merged into the parent's.

In a Hogwild run the parent builds a shared model and trains nothing; N forked workers each
train it (probes/workers.py hands each worker's timeline back). The parent's report then judges
the training the workers did: the first worker's timeline (its models, layers, loss function,
habits) is the base, and every worker's steps are interleaved round-robin (step i of worker 0,
of worker 1, ..., then step i+1), renumbered in that order, which approximates the order they
updated the shared model in. So the findings come once, for the shared model, and the steps of
every worker are counted. A parent that trained steps of its own keeps its timeline and notes
the workers' steps in a `workers` event.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..timeline import Event, Timeline

KEEP = ("run", "internal_errors")  # the parent's own: how the run ended, torchdoctor's errors


def merge_workers(timeline: Timeline, handed: list[dict[str, Any]]) -> None:
    """Merge the workers' timelines (`{"pid", "name", "timeline"}` each) into `timeline`, in place."""
    workers = [h for h in handed if isinstance(h.get("timeline"), Timeline) and h["timeline"].steps]
    if not workers:
        return
    summary = {"count": len(workers), "steps": [len(w["timeline"].steps) for w in workers],
               "names": [w.get("name") for w in workers]}
    if timeline.steps:
        timeline.events.append(Event("workers", None, None, summary | {"merged": False}))
        return
    base: Timeline = workers[0]["timeline"]
    remap: dict[int, int] = {}
    merged = []
    series = [w["timeline"].steps for w in workers]
    for i in range(max(len(s) for s in series)):
        for k, steps in enumerate(series):
            if i < len(steps):
                record = dataclasses.replace(steps[i], step=len(merged))
                if k == 0:
                    remap[steps[i].step] = record.step
                merged.append(record)
    for f in dataclasses.fields(Timeline):
        if f.name not in KEEP:
            setattr(timeline, f.name, getattr(base, f.name))
    timeline.steps = merged
    for event in timeline.events:
        if event.step is not None:
            event.step = _mapped(remap, event.step)
    for ev in timeline.evaluations:
        ev.step = _mapped(remap, ev.step)
    for phase in timeline.phase_starts:
        phase.step = _mapped(remap, phase.step)
    timeline.internal_errors.extend(e for w in workers for e in w["timeline"].internal_errors
                                    if e not in timeline.internal_errors)
    timeline.events.append(Event("workers", None, None, summary | {"merged": True}))


def _mapped(remap: dict[int, int], step: int) -> int:
    """A step of worker 0 in the merged numbering (a step past its last: after the merged steps)."""
    if step in remap:
        return remap[step]
    earlier = [s for s in remap if s < step]
    return remap[max(earlier)] + (step - max(earlier)) if earlier else step
