"""script_error and out_of_memory on hand-made timelines: the probes record what was raised and
where (event `script_failed`); the rules name the mistake. Both rules read the same event and must
agree on which one it is."""

from __future__ import annotations

from torchdoctor import Severity
from torchdoctor.timeline import Event, ModelInfo, Timeline

from .timelines import findings

RUNTIME = ["RuntimeError", "Exception", "BaseException", "object"]


def failed(message: str, types: list[str] = RUNTIME, **where) -> Timeline:
    tl = Timeline()
    tl.models = [ModelInfo("Net", {"Net": "Net", "0": "Conv2d", "1": "ReLU", "2": "Linear"}, 1000, 1000)]
    tl.events.append(Event("script_failed", 0, 0, {"exception": types[0], "exception_types": types,
                                                    "message": message, **where}))
    return tl


def linear_crash() -> Timeline:
    return failed("mat1 and mat2 shapes cannot be multiplied (128x8192 and 512x10)", phase="forward",
                  module="2", module_type="Linear", in_features=512, out_features=10,
                  inputs=[{"shape": [4, 32, 16, 16], "dtype": "float32", "device": "cpu"}])


def test_an_unflattened_conv_output_into_a_linear_gets_flatten_with_its_in_features():
    (finding,) = findings("script_error", linear_crash())
    assert finding.severity is Severity.CRITICAL and finding.step == 0 and finding.where == "2"
    assert finding.evidence["kind"] == "linear_in_features" and finding.evidence["features"] == 8192
    assert finding.evidence["exception"] == "RuntimeError" and "exception_types" not in finding.evidence
    assert finding.fixes[0].action == "add_flatten" and finding.fixes[0].params["in_features"] == 8192
    assert findings("out_of_memory", linear_crash()) == []


def test_a_target_out_of_range_in_the_loss_names_the_class_count():
    tl = failed("Target 10 is out of bounds.", phase="loss", module=None, loss="cross_entropy",
                inputs=[{"shape": [8, 10], "dtype": "float32", "device": "cpu"},
                        {"shape": [8], "dtype": "int64", "device": "cpu"}], target_range=[1, 10])
    (finding,) = findings("script_error", tl)
    assert finding.evidence["kind"] == "target_out_of_range"
    assert finding.evidence["classes"] == 10 and finding.evidence["bad_target"] == 10


def test_an_out_of_memory_error_is_out_of_memory_not_script_error():
    """The healthy twin of script_error: the run died, but of memory, which has its own finding."""
    for types, message in [(["OutOfMemoryError", *RUNTIME], "CUDA out of memory. Tried to allocate 20.00 MiB."),
                           (RUNTIME, "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                     "memory: you tried to allocate 4000000000 bytes."),
                           (["MemoryError", "Exception", "BaseException", "object"], "")]:
        tl = failed(message, types, phase="forward", module="0")
        assert findings("script_error", tl) == [], message
        (oom,) = findings("out_of_memory", tl)
        assert oom.where == "0" and oom.evidence["phase"] == "forward"
    cpu = failed("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000 bytes.", RUNTIME,
                 phase="forward", module="0")
    assert findings("out_of_memory", cpu)[0].evidence["requested_bytes"] == 4000000000


def test_a_run_that_did_not_die_has_neither():
    tl = Timeline()
    assert findings("script_error", tl) == [] and findings("out_of_memory", tl) == []
