"""dataloader_bottleneck: most of the training time is spent waiting for the next batch."""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._edits import set_keyword
from ._fixes import at_source, located_snippet
from .base import Param, finding_for, rule


def located(fix: Fix, location: dict | None, extra: dict[str, str]) -> Fix:
    """The fix in the script's own DataLoader line, when it was recorded (issue 17), with the
    other settings it suggests (pin_memory, persistent_workers) set there too."""
    if location is not None:
        after = location["after"]
        for name, value in extra.items():
            after = set_keyword(after, name, value) or after
        fix.location = {**location, "after": after}
        fix.snippet = located_snippet(fix.location)
    return fix


@rule("dataloader_bottleneck", Severity.WARNING, "Most of a step's time is spent waiting for data",
      {"max_wait_share": Param(0.5, "share of the training time spent in the loader that is too much"),
       "min_wait_ms": Param(5.0, "mean wait per batch below which the loader is never the problem"),
       "min_batches": Param(10, "training batches needed before a verdict"),
       "io_cpu_share": Param(0.5, "CPU time / wait below which loading waited on I/O, not on the CPU"),
       "max_io_workers": Param(16, "most workers suggested for a loader that waits on I/O")})
def dataloader_bottleneck(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the time the script waited for batches of its training DataLoader (inside
    `next(iterator)`: loading, decoding and transforming items, then collating them) is more
    than half of the training time, and more than a few milliseconds per batch.

    Why it matters: the model waits idle; on a GPU it sits at a fraction of its use. The fix is
    in the loader, not the model: worker processes load the next batches while this one trains.

    The first batch of a pass with workers is left out: it waits for the workers to start.

    Not flagged: fast in-memory loaders (a TensorDataset), however small the model: a wait of a
    millisecond or two per batch is collation, not a bottleneck.

    The fix gives `num_workers` from the measured wait and compute time per batch (enough
    workers that loading keeps up, at most the machine's CPU count, or up to `max_io_workers` when
    the waits used little CPU: loading that waits on files or the network overlaps in workers
    beyond the CPU count), `pin_memory` on a GPU and `persistent_workers` across epochs.
    """
    habits = tl.habits
    name = habits.train_loader
    loader = habits.loaders.get(name) if name else None
    total = habits.train_time_s
    if loader is None or not total or loader["batches"] < p["min_batches"]:
        return
    # The first batch of a pass with workers waits for them to start: paid once per pass, not per batch.
    startup = loader.get("first_batch_wait_s") or 0.0
    wait, total = loader["wait_s"] - startup, total - startup
    per_batch = wait / loader["batches"]
    share = wait / total if total > 0 else 0.0
    if share < p["max_wait_share"] or per_batch * 1e3 < p["min_wait_ms"]:
        return
    compute = max(total - wait, 1e-9) / loader["batches"]
    cpus = tl.run.cpu_count or 2
    current = loader.get("num_workers") or 0
    # Loading in the main process that used little CPU waited on files, the network or a sleep:
    # workers overlap such waits beyond the CPU count.
    waiting = current == 0 and loader.get("wait_cpu_s") is not None and loader["wait_cpu_s"] < p["io_cpu_share"] * wait
    cap = int(p["max_io_workers"]) if waiting else cpus
    workers = max(2, min(cap, math.ceil(per_batch / compute) + 1))
    if current >= workers:
        workers = min(cap, current * 2)
    persistent = (tl.run.epochs or 0) > 1
    cuda = (tl.run.device or "").startswith("cuda")
    settings = [f"num_workers={workers}"] + (["pin_memory=True"] if cuda else []) + (
        ["persistent_workers=True"] if persistent else [])
    title = (f"The training loop waited for data {share:.0%} of the time: {per_batch * 1e3:.1f} ms per batch "
             f"against {compute * 1e3:.1f} ms of training, with num_workers={current}")
    yield finding_for(
        "dataloader_bottleneck", title, where=name,
        evidence={"loader": name, "wait_share": share, "wait_ms_per_batch": per_batch * 1e3,
                  "compute_ms_per_batch": compute * 1e3, "batches": loader["batches"],
                  "num_workers": current, "pin_memory": loader.get("pin_memory"), "waits_on_io": waiting,
                  "batch_size": loader.get("batch_size"), "dataset": loader.get("dataset")},
        fixes=[located(Fix("more_dataloader_workers",
                   f"Load batches in {workers} worker processes while the model trains"
                   + (f" (more than the {cpus} CPUs: loading used little CPU, it waits on I/O)"
                      if workers > cpus else "")
                   + (" and pin host memory for faster copies to the GPU" if cuda else "")
                   + f" (a {loader.get('dataset') or 'Dataset'} item takes long to produce: "
                     "cache decoded items or move heavy transforms to the GPU if it stays slow).",
                   {"num_workers": workers, "pin_memory": cuda, **({"persistent_workers": True} if persistent else {})},
                   f"loader = DataLoader(dataset, batch_size={loader.get('batch_size') or 32}, shuffle=True, "
                   + ", ".join(settings) + ")"), at_source(tl, "train_loader", "num_workers", str(workers)),
                       {k: v for k, v in (s.split("=") for s in settings[1:])})],
    )
