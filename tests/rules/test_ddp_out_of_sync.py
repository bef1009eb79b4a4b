"""ddp_out_of_sync on hand-made timelines: forwards that bypassed the DDP wrapper, and its twins."""

from __future__ import annotations

from tests.rules.timelines import findings, make_timeline
from torchdoctor.rules.ddp_out_of_sync import fingerprints
from torchdoctor.timeline import Event

CODE = "ddp_out_of_sync"
SITE = {"file": "train.py", "line": 12, "text": "out = model.module(x)"}


def raw_module_timeline(world_size: int = 2, unsynced: int = 5, wrapped: int = 0):
    tl = make_timeline([1.0] * 5)
    tl.run.world_size = world_size
    tl.events.append(Event("ddp_raw_module", 0, None, {
        "model": "Sequential", "raw_steps": unsynced, "unsynced_steps": unsynced,
        "first_unsynced": 0 if unsynced else None, "wrapped_steps": wrapped,
        "parameters": ["0.weight", "0.bias"], "parameter_count": 2, "site": SITE}))
    return tl


def test_training_through_the_inner_module_is_flagged_with_the_rewritten_line():
    [f] = findings(CODE, raw_module_timeline())
    assert f.severity.label == "error" and f.step == 0 and f.where == "Sequential"
    assert f.evidence["parameters"] == ["0.weight", "0.bias"] and f.evidence["world_size"] == 2
    assert f.fixes[0].location == {"file": "train.py", "line": 12, "before": SITE["text"],
                                   "after": "out = model(x)"}


def test_single_process_and_steps_through_the_wrapper_are_not_flagged():
    assert findings(CODE, raw_module_timeline(world_size=1)) == []
    assert findings(CODE, raw_module_timeline(unsynced=0, wrapped=5)) == []  # model.module(x) on wrapped steps only
    assert findings(CODE, make_timeline([1.0] * 5)) == []


def test_fingerprints_are_read_from_the_timeline():
    tl = make_timeline([1.0] * 2)
    tl.events.append(Event("param_fingerprint", 1, None, {"names": ["w"], "values": [0.5]}))
    assert fingerprints(tl) == [{"step": 1, "names": ["w"], "values": [0.5]}]
