"""DDP: rank 1's input batch holds a NaN at step 3 (rank 0's data is clean)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddp_common import train  # noqa: E402


def poison(rank, step, x):
    if rank == 1 and step == 3:
        x = x.clone()
        x[0, 0] = float("nan")
    return x


train(poison)
