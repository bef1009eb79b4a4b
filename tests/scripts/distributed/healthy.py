"""DDP, 2 ranks, nothing wrong."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddp_common import train  # noqa: E402

train()
