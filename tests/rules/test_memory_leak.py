"""memory_leak on hand-made memory samples: graphs chained by `total_loss += loss`, losses appended,
retain_graph=True, forwards never backwarded, beside a flat loop whose memory jumps once."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.rules import NotEvaluated
from torchdoctor.timeline import MemoryProfile, MemorySample, Timeline

KiB, MiB, GiB = 2**10, 2**20, 2**30


def memory_due(step: int) -> bool:
    """The memory meter's schedule: every step of the first 20, then every 10th."""
    return step < 20 or step % 10 == 0


def memory_run(steps: int, heap: Callable[[int], float] | None = None,
               allocated: Callable[[int], float] | None = None, rss: Callable[[int], float] | None = None,
               graphs_kept: int = 0, losses_kept: int = 0, retain_graph_calls: int = 0,
               activations: int = 2 * MiB, ram: int | None = 16 * GiB, device_memory: int = 24 * GiB) -> Timeline:
    """`steps` training steps with the memory sampled after each due step: malloc's heap in use
    (CPU), the CUDA allocator's bytes (a GPU run), and the process RSS, which is noisy on its own;
    graphs of earlier steps found alive (and since step 0 when any were), one step's saved
    activations measured by the memory profile; the machine's RAM (and the GPU's memory), which
    the severity is judged against."""
    tl = make_timeline([1.0] * steps)
    tl.run.ram_bytes = ram
    mem = tl.memory
    mem.device = "cuda:0" if allocated else "cpu"
    mem.capacity = device_memory if allocated else ram
    rng = random.Random(0)
    for s in range(steps):
        if memory_due(s):
            noise = rng.randrange(-24, 24) * MiB  # RSS moves by tens of MiB by itself
            mem.samples.append(MemorySample(
                step=s, rss=int(rss(s) if rss else 900 * MiB + noise), heap=int(heap(s)) if heap else None,
                allocated=int(allocated(s)) if allocated else None,
                reserved=int(allocated(s)) + 64 * MiB if allocated else None))
    mem.graphs_kept, mem.losses_kept, mem.retain_graph_calls = graphs_kept, losses_kept, retain_graph_calls
    mem.kept_since = 0 if graphs_kept else None
    mem.profile = MemoryProfile(step=0, batch_size=64, parameters=MiB, gradients=MiB, activations=activations)
    return tl


def flat(base: float, wobble: int = 8 * KiB, seed: int = 1) -> Callable[[int], float]:
    """A counter that stays where it is up to a few KiB, the same at each step it is read."""
    rng = random.Random(seed)
    offsets: dict[int, int] = {}
    return lambda s: base + offsets.setdefault(s, rng.randrange(-wobble, wobble))


def test_graphs_chained_by_total_loss_are_found_with_detach():
    # after backward only the graph's nodes stay: a few KiB per step, and the graphs kept tell why
    tl = memory_run(60, heap=lambda s: 180 * MiB + 3 * KiB * s, graphs_kept=48)
    (finding,) = findings("memory_leak", tl)
    # 3 KiB a step is 1.8 MiB over ten such runs (negligible in 16 GiB) but 2.9 GiB over a million
    # steps: a warning, which the graphs kept would make it anyway, not the error it used to be
    assert finding.severity is Severity.WARNING and finding.step == 0 and finding.where is None
    ev = finding.evidence
    assert ev["memory_available_bytes"] == 16 * GiB and ev["memory_available_is"] == "RAM"
    assert ev["projected_growth_over_10x_this_run_bytes"] == 3 * KiB * 600
    assert ev["projected_growth_over_long_run_bytes"] == 3 * KiB * 1_000_000
    assert ev["growth_per_step_bytes"] == 3 * KiB and ev["measured_by"] == "malloc bytes in use"
    assert ev["graphs_of_earlier_steps_alive"] == 48 and ev["loss_tensors_of_earlier_steps_alive"] == 0
    assert ev["steps_measured"] == 50 - 6 and ev["rising_share"] == 1.0
    assert ev["projected_growth_per_10k_steps_bytes"] == 30_000 * KiB
    assert finding.title == ("Memory grows 3 KiB per step (2.86 GiB over 1M steps, 18% of 16 GiB RAM): the autograd "
                             "graphs of earlier steps are kept alive (e.g. total_loss += loss)")
    fix = finding.fixes[0]
    assert [f.action for f in finding.fixes] == ["detach_logged_tensors"] and "loss.item()" in fix.snippet


def test_losses_appended_to_a_list_are_found():
    tl = memory_run(60, heap=lambda s: 180 * MiB + 4 * KiB * s, graphs_kept=48, losses_kept=48)
    (finding,) = findings("memory_leak", tl)
    assert "loss tensors of earlier steps are kept" in finding.title
    assert finding.evidence["loss_tensors_of_earlier_steps_alive"] == 48
    assert finding.fixes[0].action == "detach_logged_tensors"


def test_retain_graph_on_a_gpu_keeps_a_forward_of_activations_per_step():
    tl = memory_run(60, allocated=lambda s: 2 * 2**30 + 8 * MiB * s, graphs_kept=48, retain_graph_calls=60,
                    activations=8 * MiB)
    (finding,) = findings("memory_leak", tl)
    ev = finding.evidence
    assert ev["measured_by"] == "CUDA allocated bytes" and ev["growth_per_step_bytes"] == 8 * MiB
    assert ev["retain_graph_calls"] == 60 and ev["activations_per_step_bytes"] == 8 * MiB
    # 8 MiB a step: a run 10x this long would take 4.69 GiB, 20% of the GPU's 24 GiB
    assert finding.severity is Severity.ERROR and ev["memory_available_is"] == "cuda:0 memory"
    assert finding.title.startswith("Memory grows 8 MiB per step (4.69 GiB over 10x this run, 20% of 24 GiB cuda:0 "
                                    "memory): backward(retain_graph=True)")
    retain, detach = finding.fixes
    assert retain.action == "drop_retain_graph" and retain.params == {"retain_graph_calls": 60}
    assert detach.action == "detach_logged_tensors"


def test_a_forward_never_backwarded_is_found_with_no_grad():
    # validation with gradients on, its loss summed: one forward's activations per step, no graph tagged
    tl = memory_run(200, heap=lambda s: 180 * MiB + 2 * MiB * s, activations=2 * MiB)
    (finding,) = findings("memory_leak", tl)
    assert finding.step is None
    assert finding.evidence["growth_per_step_bytes"] == 2 * MiB
    assert finding.evidence["graphs_of_earlier_steps_alive"] == 0
    assert [f.action for f in finding.fixes] == ["evaluate_without_grad"]


def test_a_flat_loop_whose_memory_jumps_once_is_clean():
    # .item() logging; a cache fills once at step 25 (heap +40 MiB) and RSS wanders by tens of MiB
    base = flat(180 * MiB)
    tl = memory_run(200, heap=lambda s: base(s) + (40 * MiB if s > 25 else 0))
    assert findings("memory_leak", tl) == []


def test_rss_alone_must_grow_sixteen_times_faster():
    # 512 KiB per step would be a leak in malloc's exact count; in RSS it is within its noise
    tl = memory_run(200, rss=lambda s: 900 * MiB + 512 * KiB * s)
    assert findings("memory_leak", tl) == []
    (finding,) = findings("memory_leak", tl, rss_factor=4)
    assert finding.evidence["measured_by"] == "RSS"


def test_the_growth_per_step_is_a_threshold():
    tl = memory_run(1000, heap=lambda s: 180 * MiB + 32 * KiB * s)  # 31 MiB over the run, but 32 KiB a step
    assert findings("memory_leak", tl) == []
    (finding,) = findings("memory_leak", tl, min_growth_per_step=16 * KiB)
    assert finding.evidence["growth_per_step_bytes"] == 32 * KiB


def test_the_total_growth_is_a_threshold():
    tl = memory_run(60, heap=lambda s: 180 * MiB + 128 * KiB * s)  # 5.5 MiB over the steps measured
    assert findings("memory_leak", tl) == []
    assert len(findings("memory_leak", tl, min_total_growth=4 * MiB)) == 1


def test_a_counter_that_rises_on_few_intervals_is_no_trend():
    # every other sample 3 MiB up, then back down: a median slope of 30 KiB a step, but it rose half the time
    tl = memory_run(1000, heap=lambda s: 180 * MiB + 30 * KiB * s + (3 * MiB if (s // 10) % 2 else 0))
    assert findings("memory_leak", tl, min_growth_per_step=16 * KiB) == []
    assert len(findings("memory_leak", tl, min_growth_per_step=16 * KiB, min_rising=0.4)) == 1


def test_the_graphs_kept_are_a_threshold():
    # one earlier graph alive at once: a loss kept one step longer for logging, then dropped
    tl = memory_run(60, heap=flat(180 * MiB), graphs_kept=2)
    assert findings("memory_leak", tl) == []
    (finding,) = findings("memory_leak", tl, min_graphs_kept=2)
    assert finding.step == 0 and finding.evidence["growth_per_step_bytes"] is None
    assert "a little with every step" in finding.title


def test_short_or_unsampled_runs_are_not_evaluated():
    with pytest.raises(NotEvaluated):
        findings("memory_leak", Timeline())
    with pytest.raises(NotEvaluated):
        findings("memory_leak", memory_run(19, heap=lambda s: 180 * MiB + MiB * s))
    unsampled = make_timeline([1.0] * 100)
    with pytest.raises(NotEvaluated):
        findings("memory_leak", unsampled)


@pytest.mark.parametrize(("per_step", "ram", "severity", "over"), [
    (2 * MiB, 16 * GiB, Severity.ERROR, "3.91 GiB over 10x this run, 24% of 16 GiB RAM"),
    (128 * KiB, 16 * GiB, Severity.WARNING, "122 GiB over 1M steps, 763% of 16 GiB RAM"),
    (128 * KiB, 4096 * GiB, Severity.INFO, "122 GiB over 1M steps, 3% of 4 TiB RAM"),
], ids=["error", "warning", "info"])
def test_the_severity_follows_the_projected_growth(per_step, ram, severity, over):
    """No graphs kept, only growth: error when ten runs like this one take a tenth of the memory,
    warning when only a million steps would, info when even they would not."""
    tl = memory_run(200, heap=lambda s: 180 * MiB + per_step * s, activations=64 * MiB, ram=ram)
    (finding,) = findings("memory_leak", tl)
    assert finding.severity is severity, finding.evidence["severity_because"]
    assert f"({over})" in finding.title
    assert finding.evidence["run_steps"] == 200 and finding.evidence["memory_available_bytes"] == ram


def test_without_the_machine_the_growth_per_10k_steps_decides():
    """A hand-made timeline with no machine recorded: an error from 1 GiB per 10k steps on."""
    tl = memory_run(400, heap=lambda s: 180 * MiB + 64 * KiB * s, ram=None)
    (finding,) = findings("memory_leak", tl)
    assert finding.severity is Severity.WARNING and finding.evidence["memory_available_bytes"] is None
    assert "(625 MiB per 10k steps)" in finding.title
    tl = memory_run(400, heap=lambda s: 180 * MiB + 128 * KiB * s, ram=None)
    assert findings("memory_leak", tl)[0].severity is Severity.ERROR
