"""`torchdoctor fix`: apply a finding's fix from outside the user's code, re-run, compare.

`apply.py` holds the interventions (each a context manager that installs a change to PyTorch for
one re-run and removes it after: the user's file is never edited); `loop.py` runs the script,
picks the worst finding with a fix that can be applied so, re-runs with it, and keeps the record.
A way in, like `session.py`: it may import everything below it, and only `cli.py` imports it.
"""

from __future__ import annotations

from .apply import SUPPORTED, intervention
from .loop import FixResult, fix_script

__all__ = ["SUPPORTED", "FixResult", "fix_script", "intervention"]
