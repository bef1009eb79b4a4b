"""The probes a run can do without (`Doctor(probes_off=...)`, `torchdoctor run --no-probe NAME`),
by name: what each one's findings need is in README's overhead section. Module forwards, optimizer
steps and backward() are always watched (session.py installs those itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .clipping import ClipProbe
from .data import DataProbe
from .ddp import DDPProbe
from .losses import LossProbe
from .schedulers import SchedulerProbe
from .sources import SourceProbe
from .workers import WorkerProbe

OPTIONAL_PROBES: dict[str, Callable[[Any], Any]] = {
    "data": DataProbe,  # DataLoader iteration: epochs, loader waits, batches a NaN is traced to
    "losses": LossProbe,  # the functional losses: chance level, loss inputs, evaluation losses
    "schedulers": SchedulerProbe,  # scheduler.step(): scheduler_misuse
    "sources": lambda rec: SourceProbe(rec.timeline, rec),  # where the script built things: fix locations
    "clipping": ClipProbe,  # clip_grad_norm_ under a GradScaler: amp_clip_before_unscale
    "ddp": DDPProbe,  # DistributedDataParallel: ddp_out_of_sync
    "workers": WorkerProbe,  # forked multiprocessing workers: Hogwild runs
}
