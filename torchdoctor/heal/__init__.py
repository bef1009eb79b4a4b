"""`torchdoctor run --heal`: act inside the run when a cheap check trips, and say so.

`Healer` skips a step whose gradients are not finite and rolls the model and optimizer back to the
last good copy (lowering the learning rate) when the loss stays non-finite. Off by default; every
intervention is a `healed` event in the timeline, which rules/healed.py turns into an info finding.
"""

from __future__ import annotations

from .guard import Healer
from .snapshot import Snapshot

__all__ = ["Healer", "Snapshot"]
