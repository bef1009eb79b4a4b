"""Multi-process runs (DDP under torchrun): every rank watches its own process, rank 0 reports for all.

`torchrun --nproc_per_node N --no-python torchdoctor run train.py` starts N copies of torchdoctor,
each with RANK, WORLD_SIZE, LOCAL_RANK... in its environment. Each rank observes its own process as
in a single-process run; at the end the ranks other than 0 write their report (with their exit
status and exception) to a folder they share with rank 0, and print nothing. Rank 0 waits for
them, merges the findings of every rank (each finding's `evidence.rank` says which rank saw it),
and prints and writes the one report.

- launch.py: which rank this is (`detect`), and what a rank does before and after the script.
- exchange.py: the files between ranks, and rank 0's wait for them.
- merge.py: rank 0's merged report. What a rank's failure means is decided in rules/ranks.py.
"""

from __future__ import annotations

from .launch import RankContext, detect

__all__ = ["RankContext", "detect"]
