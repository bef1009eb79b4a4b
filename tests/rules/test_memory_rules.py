"""The memory rules on hand-made timelines: the CUDA numbers included, which CPU runs cannot make."""

from __future__ import annotations

from tests.rules.timelines import findings, make_timeline
from torchdoctor import Severity
from torchdoctor.rules._memory import checkpoint_plan, largest_batch
from torchdoctor.timeline import Event, MemoryProfile, ModuleMemory

GiB = 2**30
MiB = 2**20


def profile(batch_size: int = 64, activations: int = 40 * GiB, optimizer_state: int = 2 * GiB,
            modules: list[ModuleMemory] | None = None, dtypes: dict[str, int] | None = None) -> MemoryProfile:
    return MemoryProfile(step=1, batch_size=batch_size, parameters=GiB, gradients=GiB,
                         optimizer_state=optimizer_state, activations=activations,
                         activation_dtypes=dtypes if dtypes is not None else {"float32": activations},
                         modules=modules or [])


def cuda_timeline(peak_reserved: int, capacity: int = 80 * GiB, prof: MemoryProfile | None = None):
    tl = make_timeline([1.0] * 5)
    tl.optimizers = ["AdamW"]
    tl.memory.device = "cuda:0"
    tl.memory.capacity = capacity
    tl.memory.peak_reserved = peak_reserved
    tl.memory.peak_allocated = peak_reserved - GiB
    tl.memory.profile = prof if prof is not None else profile()
    return tl


def test_a_cuda_peak_over_90_percent_of_the_card_is_a_warning_with_the_batch_that_fits():
    tl = cuda_timeline(peak_reserved=76 * GiB)
    (finding,) = findings("memory_pressure", tl)
    assert finding.severity is Severity.WARNING
    assert finding.evidence["limit_source"] == "device memory" and finding.evidence["share"] == 76 / 80
    assert finding.evidence["unaccounted_bytes"] == 76 * GiB - 44 * GiB  # context, workspaces, cache
    fix = finding.fixes[0]
    assert fix.action == "reduce_batch_size"
    # 72 GiB usable - (1 + 1 + 2 + 32 unaccounted) GiB fixed = 36 GiB; 40 GiB / 64 samples each
    assert fix.params["batch_size"] == 57


def test_a_peak_below_90_percent_is_clean():
    assert findings("memory_pressure", cuda_timeline(peak_reserved=70 * GiB)) == []


def test_a_budget_smaller_than_the_peak_is_an_error():
    tl = cuda_timeline(peak_reserved=30 * GiB)
    tl.memory.budget = 16 * GiB
    (finding,) = findings("memory_pressure", tl)
    assert finding.severity is Severity.ERROR and finding.evidence["limit_source"] == "--memory-budget"


def test_without_a_measured_step_on_cpu_the_budget_is_not_evaluated():
    tl = make_timeline([1.0] * 3)
    tl.memory.budget = GiB
    tl.memory.capacity = 16 * GiB
    from torchdoctor.config import Config
    from torchdoctor.rules import evaluate

    result = evaluate(tl, Config())
    assert "memory_pressure" in result.not_evaluated


def test_the_largest_batch_keeps_the_margin():
    p = profile(batch_size=64, activations=64 * MiB, optimizer_state=0)
    p.parameters = p.gradients = 0
    assert largest_batch(p, limit=100 * MiB, margin=0.1) == 90
    assert largest_batch(p, limit=100 * MiB, margin=0.0) == 100


def blocks_profile(shared_output: bool = False) -> MemoryProfile:
    """A stem saving 5 GiB, then four blocks saving 10 GiB each and keeping a 2 GiB input."""
    modules = [ModuleMemory("Net", "Net"), ModuleMemory("stem", "Conv2d", activations=5 * GiB)]
    saves = [("stem", 5 * GiB, [])]
    for i in range(1, 5):
        modules.append(ModuleMemory(f"layer{i}", "Sequential", input_bytes=2 * GiB))
        modules.append(ModuleMemory(f"layer{i}.conv", "Conv2d", activations=10 * GiB, input_bytes=2 * GiB))
        saves.append((f"layer{i}.conv", 8 * GiB, []))
        saves.append((f"layer{i}.conv", 2 * GiB, ["Net"] if shared_output else []))
    p = profile(modules=modules, activations=45 * GiB)
    p.root, p.saves = "Net", saves
    return p


def test_checkpointing_recomputes_one_block_at_a_time_in_reverse():
    plan = checkpoint_plan(blocks_profile())
    assert plan is not None and plan.modules == ["stem", "layer1", "layer2", "layer3", "layer4"]
    # the stem keeps nothing (its input is the batch); while layer4 is recomputed in
    # backward, the inputs the first three blocks kept are still there: 3 * 2 + 2 + 10 GiB
    assert plan.saved == 45 * GiB - 18 * GiB


def test_a_block_output_the_next_op_saves_stays_when_the_block_is_checkpointed():
    kept = checkpoint_plan(blocks_profile(shared_output=True))
    assert kept is not None and kept.saved < checkpoint_plan(blocks_profile()).saved


def test_a_single_block_is_not_worth_checkpointing():
    p = profile(modules=[ModuleMemory("Net", "Net"), ModuleMemory("body", "Sequential", input_bytes=GiB),
                         ModuleMemory("body.conv", "Conv2d", activations=30 * GiB)], activations=30 * GiB)
    p.root, p.saves = "Net", [("body.conv", 30 * GiB, [])]
    assert checkpoint_plan(p) is None


def test_adam_state_as_the_largest_part_suggests_a_lighter_optimizer():
    tl = cuda_timeline(peak_reserved=78 * GiB, prof=profile(activations=GiB, optimizer_state=60 * GiB))
    actions = [f.action for f in findings("memory_pressure", tl)[0].fixes]
    assert "lighter_optimizer" in actions


def test_half_precision_activations_get_no_autocast_advice():
    tl = cuda_timeline(peak_reserved=78 * GiB, prof=profile(dtypes={"bfloat16": 40 * GiB}))
    actions = [f.action for f in findings("memory_pressure", tl)[0].fixes]
    assert "mixed_precision" not in actions


def test_cuda_out_of_memory_with_fragmentation_says_expandable_segments():
    tl = cuda_timeline(peak_reserved=79 * GiB)
    tl.events.append(Event("script_failed", 12, 0, {
        "exception": "OutOfMemoryError", "exception_types": ["OutOfMemoryError", "RuntimeError", "Exception"],
        "message": "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of "
                   "which 1.20 GiB is free. Of the allocated memory 74.00 GiB is allocated by PyTorch, and "
                   "3.00 GiB is reserved by PyTorch but unallocated.",
        "phase": "backward", "module": None}))
    (finding,) = findings("out_of_memory", tl)
    assert finding.severity is Severity.CRITICAL and finding.step == 12
    assert "backward" in finding.title and "2 GiB" in finding.title
    assert [f.action for f in finding.fixes][:2] == ["reduce_fragmentation", "reduce_batch_size"]


def test_no_out_of_memory_event_no_finding():
    assert findings("out_of_memory", cuda_timeline(peak_reserved=10 * GiB)) == []


def test_the_memory_report_of_a_cuda_run_shows_the_allocator_numbers():
    import io

    from rich.console import Console

    from torchdoctor.jsonreport import to_dict
    from torchdoctor.render import render
    from torchdoctor.report import Report
    from torchdoctor.timeline import MemorySample

    tl = cuda_timeline(peak_reserved=76 * GiB)
    tl.memory.samples = [MemorySample(step=s, rss=GiB, allocated=40 * GiB, reserved=44 * GiB) for s in range(3)]
    report = Report(tl, findings=findings("memory_pressure", tl))
    buf = io.StringIO()
    render(report, Console(file=buf, width=140, color_system=None), memory=True)
    text = buf.getvalue()
    assert "CUDA peak allocated 75 GiB, reserved 76 GiB, fragmentation 4 GiB" in text
    assert "capacity 80 GiB" in text and "CUDA allocated 40 GiB → 40 GiB" in text
    assert to_dict(report)["memory"]["fragmentation_bytes"] == 4 * GiB
