"""DDP: rank 1 raises mid-training (step 4); rank 0 is left in a collective with a dead peer."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddp_common import train  # noqa: E402


def fail(rank, step, x):
    if rank == 1 and step == 4:
        raise RuntimeError("injected failure on rank 1")
    return x


train(fail)
