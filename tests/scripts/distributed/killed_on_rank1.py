"""DDP: rank 1 is killed hard (SIGKILL) mid-training: it never gets to report."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddp_common import train  # noqa: E402


def kill(rank, step, x):
    if rank == 1 and step == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


train(kill)
