"""Golden text of the terminal report: hand-made reports rendered at width 100 without colour,
compared whole with what a person should see. Every number is fixed (the duration too), so the
text is the same on every machine; a change to the text is a change a reader sees, made on purpose."""

from __future__ import annotations

import io
import math

from rich.console import Console

from torchdoctor.findings import Finding, Fix, Severity
from torchdoctor.render import render, to_text
from torchdoctor.report import Report
from torchdoctor.rules.causes import link
from torchdoctor.timeline import (
    EvalPass,
    Event,
    LayerInfo,
    MemoryProfile,
    MemorySample,
    ModelInfo,
    ModuleMemory,
    RunInfo,
    StepRecord,
    Timeline,
)

# -- hand-made reports ------------------------------------------------------------------------------

MiB = 2**20
LOSSES = [2.3, 1.9, 1.6, 1.4, 1.25, 1.2]
NORMS = [4.0, 3.0, 2.5, 2.0, 1.5, 1.25]


def timeline(layer_norms: list[list[float]] | None = None) -> Timeline:
    """Six steps of a two-layer net over two epochs, validated after each; every number fixed,
    the duration too, so the text is the same on every machine."""
    tl = Timeline(run=RunInfo(argv=["/home/me/train.py", "--epochs", "2"], exit_status=0, duration_s=2.54,
                              torch_version="2.4.0", device="cpu", epochs=2))
    tl.models = [ModelInfo("Net", {"fc1": "Linear", "act": "ReLU", "fc2": "Linear"}, 1010, 1010)]
    tl.layers = [LayerInfo("fc1", "Linear", ["fc1.weight", "fc1.bias"], 808, "weight"),
                 LayerInfo("fc2", "Linear", ["fc2.weight", "fc2.bias"], 202, "weight")]
    tl.optimizers = ["SGD"]
    tl.train_loss_fn = "cross_entropy"  # a classifier's: the header names the task
    norms = layer_norms or [[n * 0.8, n * 0.2] for n in NORMS]
    for i, (loss, norm) in enumerate(zip(LOSSES, NORMS, strict=True)):
        tl.add_step(StepRecord(step=i, epoch=i // 3, loss=loss, lr=0.1, grad_norm=norm, layer_grad_norms=norms[i],
                               update_ratio=1e-3, layer_update_ratios=[1.2e-3, 8e-4]))
    tl.backward_calls = len(LOSSES)
    tl.evaluations = [EvalPass(step=3, epoch=0, loss=1.5, accuracy=0.625, samples=64, batches=2, loader="loader 2"),
                      EvalPass(step=6, epoch=1, loss=1.3, accuracy=0.703125, samples=64, batches=2, loader="loader 2")]
    return tl


def with_memory(tl: Timeline) -> Timeline:
    """A CPU run's memory: RSS samples, a budget, and one measured step with a nested module."""
    mem = tl.memory
    mem.capacity, mem.budget, mem.peak_rss = 16 * 2**30, 1024 * MiB, 900 * MiB
    mem.samples = [MemorySample(step=s, rss=(600 + 50 * s) * MiB, heap=(400 + 40 * s) * MiB) for s in range(6)]
    mem.profile = MemoryProfile(
        step=1, root="Net", batch_size=32, parameters=4 * MiB, gradients=4 * MiB, optimizer_state=8 * MiB,
        activations=48 * MiB, batch=2 * MiB, activation_dtypes={"float32": 48 * MiB},
        modules=[ModuleMemory("Net", "Net", 0, 0, 1 * MiB), ModuleMemory("body", "Sequential"),
                 ModuleMemory("body.fc1", "Linear", 3 * MiB, 3 * MiB, 32 * MiB),
                 ModuleMemory("body.act", "ReLU", 0, 0, 8 * MiB),
                 ModuleMemory("fc2", "Linear", 1 * MiB, 1 * MiB, 7 * MiB)])
    return tl


def lower_lr() -> Fix:
    return Fix("lower_learning_rate", "Lower the learning rate from 0.1 to 0.01.", {"lr": 0.01, "current_lr": 0.1},
               "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)")


def memory_warning() -> Finding:
    return Finding("memory_pressure", Severity.WARNING, "Peak memory 900 MiB is 88% of the 1 GiB budget",
                   evidence={"peak_bytes": 900 * MiB, "budget_bytes": 1024 * MiB, "share": 0.8789,
                             "layers": ["fc1", "fc2"]})


def problem_findings() -> list[Finding]:
    """Worst first, as the rules hand them over: a critical and an error that share a fix, a
    warning, and an info finding that only -v shows. The error (the gradients exploding at step
    3) explains the critical (the NaN at step 4): linked, as evaluation links them, it leads."""
    return [
        Finding("nonfinite_loss", Severity.CRITICAL, "The loss became NaN at step 4", step=4, epoch=1,
                evidence={"first_nonfinite_step": 4, "value": "nan", "loss_before": 1.4, "last_finite_loss": 1.4,
                          "input_had_nan": False, "series": [[2, 1.6], [3, 1.4], [4, "nan"]]},
                fixes=[lower_lr(), Fix("clip_gradients", "Clip the gradient norm at 5.", {"max_norm": 5.0},
                                       "loss.backward()\n"
                                       "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)")]),
        Finding("exploding_gradients", Severity.ERROR, "Gradient norm jumped 1.2e+04x above its median at fc1",
                step=3, epoch=1, where="fc1",
                evidence={"grad_norm": 24000.0, "median_grad_norm": 2.0, "ratio": 12000.0,
                          "largest_layers": [{"layer": "fc1", "norm": 24000.0}],
                          "note": "the norm was measured after the backward of step 3, before the optimizer step"},
                fixes=[lower_lr()]),
        memory_warning(),
        Finding("dataloader_bottleneck", Severity.INFO, "The GPU waited for data 12% of the time",
                evidence={"wait_share": 0.12, "workers": 0}, fixes=[Fix("more_workers", "Use num_workers=4.")]),
    ]


def long_timeline() -> Timeline:
    """The six steps and 18 more at the last loss and norm: 24 steps, enough to call a run healthy
    (report.MIN_JUDGED_STEPS); six are too few."""
    tl = timeline()
    for i in range(6, 24):
        tl.add_step(StepRecord(step=i, epoch=1, loss=1.2, lr=0.1, grad_norm=1.25, layer_grad_norms=[1.0, 0.25],
                               update_ratio=1e-3, layer_update_ratios=[1.2e-3, 8e-4]))
    tl.backward_calls = 24
    return tl


def healthy_report() -> Report:
    return Report(long_timeline(), not_evaluated={"memory_leak": "memory was not sampled often enough"})


def short_report() -> Report:
    return Report(timeline(), not_evaluated={"memory_leak": "6 steps; a trend needs 20"})


def interrupted_report() -> Report:
    tl = long_timeline()
    tl.run.exit_status, tl.run.interrupted = 130, "Ctrl-C"
    waited = Finding("dataloader_bottleneck", Severity.INFO, "The GPU waited for data 12% of the time",
                     evidence={"wait_share": 0.12}, fixes=[Fix("more_workers", "Use num_workers=4.")])
    return Report(tl, findings=[waited])


def empty_report() -> Report:
    tl = Timeline(run=RunInfo(argv=["train.py"], exit_status=1, duration_s=0.5))
    tl.backward_calls = 2
    return Report(tl)


def problem_report() -> Report:
    """fc1's gradient spikes at step 3 and is NaN at step 4; torch.compile hid a probe; one probe failed."""
    norms = [[n * 0.8, n * 0.2] for n in NORMS]
    norms[3], norms[4] = [24000.0, 30.0], [math.nan, 1.0]
    tl = timeline(norms)
    tl.events.append(Event("compiled", 0, 0, {"model": "Net", "not_observed": "per-layer gradients"}))
    return Report(tl, findings=link(problem_findings(), tl),
                  not_evaluated={"overfitting": "no validation was observed: evaluate a held-out set",
                                 "loss_plateau": "5 finite training losses; needs at least 20",
                                 "memory_leak": "6 steps; a trend needs 20"},
                  internal_errors=["probe 'activations' failed: RuntimeError: boom"])


def causes_report() -> Report:
    """No zero_grad(): the gradients add up, so the loss diverges (step 2) and the gradient norm
    explodes (step 3). One cause, two consequences, linked as evaluation links them; the memory
    warning stands on its own after them."""
    tl = timeline()
    found = [
        Finding("divergence", Severity.ERROR, "Loss diverging: it climbed 9x from its low of 1.2 to 11 at step 5",
                step=2, epoch=0, evidence={"criterion": "trend", "onset_step": 2, "ratio": 9.2},
                fixes=[lower_lr()]),
        Finding("exploding_gradients", Severity.ERROR, "Gradient norm exploded at step 3: 240, 96x its recent history",
                step=3, epoch=1, where="fc1", evidence={"norm": 240.0, "ratio": 96.0},
                fixes=[Fix("clip_gradients", "Clip the gradient norm at 5.", {"max_norm": 5.0}), lower_lr()]),
        memory_warning(),
        Finding("missing_zero_grad", Severity.ERROR,
                "No zero_grad() in 6 steps: each step's gradients were added to all the earlier ones",
                step=1, epoch=0, evidence={"zero_grad_calls": 0, "steps_checked": 5, "growth": 30.0},
                fixes=[Fix("call_zero_grad", "Reset the gradients once per optimizer step, before the backward.", {},
                           "optimizer.zero_grad()  # add this line\nloss.backward()")]),
    ]
    return Report(tl, findings=link(found, tl))


def memory_report() -> Report:
    return Report(with_memory(timeline()), findings=[memory_warning()])


RANK_ENDINGS = [
    {"rank": 0, "status": "reported", "exit_status": 0, "exception": None, "steps": 6, "findings": 1, "host": "node0"},
    {"rank": 1, "status": "reported", "exit_status": 1,
     "exception": "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                  "[10.0.0.2]:29500\nthe rest of the traceback", "steps": 6, "findings": 0},
    {"rank": 2, "status": "died", "exit_status": None, "exception": None},
    {"rank": 3, "status": "died", "exit_status": None, "exception": None},
    {"rank": 4, "status": "silent", "exit_status": None, "exception": None},
    {"rank": 6, "status": "not_gathered", "exit_status": None, "exception": None},
]


def ranks_report() -> Report:
    """Rank 0's report of six ranks: rank 1 lost its peer, ranks 2 and 3 died, 4 never reported."""
    died = Finding("script_error", Severity.CRITICAL, "Ranks 2-3 died without reporting", where=None,
                   evidence={"rank": 2, "ranks": [2, 3], "status": "died"},
                   fixes=[Fix("check_rank_logs", "Read ranks 2-3's output: torchrun's log names the signal.")])
    return Report(with_memory(timeline()), findings=[died, memory_warning()], ranks=RANK_ENDINGS)


def healthy_ranks_report() -> Report:
    ranks = [{"rank": r, "status": "reported", "exit_status": 0, "exception": None, "steps": 6, "findings": 0}
             for r in range(4)]
    return Report(long_timeline(), ranks=ranks)


def text_of(report: Report, **options: bool) -> str:
    """What the terminal shows, trailing blanks of each line dropped (rich pads table rows)."""
    buf = io.StringIO()
    render(report, Console(file=buf, width=100, color_system=None, force_terminal=False), **options)
    return plain(buf.getvalue())


def plain(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def styled_line(report: Report, starts: str) -> str:
    """The first line holding `starts`, as a colour terminal gets it (its colour codes kept)."""
    buf = io.StringIO()
    render(report, Console(file=buf, width=200, color_system="standard", force_terminal=True))
    return next(line for line in buf.getvalue().splitlines() if starts in line)


# -- the expected text ------------------------------------------------------------------------------

HEALTHY = """\
torchdoctor train.py · classification · 24 steps · 2 epochs · cpu · 2.5 s · exit 0
✔ healthy: 24 steps, loss 2.3 → 1.2, val loss 1.5 → 1.3 (acc 70.3%), grad norm median 1.25 (max 4)
not evaluated (-v says why): memory_leak
"""

SHORT = """\
torchdoctor train.py · classification · 6 steps · 2 epochs · cpu · 2.5 s · exit 0
• judged on 6 steps: too few to call it healthy · loss 2.3 → 1.2, val loss 1.5 → 1.3 (acc 70.3%),
grad norm median 2.25 (max 4)
not evaluated (-v says why): memory_leak
"""

INTERRUPTED = """\
torchdoctor train.py · classification · 24 steps · 2 epochs · cpu · 2.5 s · exit 130
• interrupted at step 24 (Ctrl-C): judged on 24 steps · loss 2.3 → 1.2, val loss 1.5 → 1.3 (acc
70.3%), grad norm median 1.25 (max 4)
1 info finding, not a problem (-v shows it)
"""

HEALTHY_VERBOSE = """\
torchdoctor train.py · classification · 24 steps · 2 epochs · cpu · 2.5 s · exit 0
✔ healthy: 24 steps, loss 2.3 → 1.2, val loss 1.5 → 1.3 (acc 70.3%), grad norm median 1.25 (max 4)
not evaluated: memory_leak (memory was not sampled often enough)
"""

NOTHING_TO_DIAGNOSE = """\
torchdoctor train.py · 0 steps · cpu · 0.5 s · exit 1
• nothing to diagnose: no optimizer.step() was observed (2 backward() calls)
"""

PROBLEMS = """\
torchdoctor train.py · classification · 6 steps · 2 epochs · cpu · 2.5 s · exit 0
3 problems found (worst: critical); 1 more info finding, not a problem (-v shows it)
 ERROR  exploding_gradients · step 3 · epoch 1 · at fc1 (Linear)
  Gradient norm jumped 1.2e+04x above its median at fc1
  evidence: grad norm: 2.4e+04; median grad norm: 2; ratio: 1.2e+04
  fix 1 lower_learning_rate: Lower the learning rate from 0.1 to 0.01.
      optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
↳ CRITICAL  nonfinite_loss · step 4 · epoch 1
  The loss became NaN at step 4
  caused by exploding_gradients (step 3): the exploding gradients overflowed to NaN/Inf
  evidence: first nonfinite step: 4; value: nan; loss before: 1.4; last finite loss: 1.4
  fix 1 lower_learning_rate: as above
  fix 2 clip_gradients: Clip the gradient norm at 5.
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)
 WARNING  memory_pressure
  Peak memory 900 MiB is 88% of the 1 GiB budget
  evidence: peak: 900 MiB; budget: 1 GiB; share: 0.8789; layers: fc1, fc2
torch.compile'd Net: not observed per-layer gradients
no validation was observed: overfitting not judged (-v says how to get it seen)
not evaluated (-v says why): loss_plateau, memory_leak
torchdoctor internal warning: probe 'activations' failed: RuntimeError: boom
"""

PROBLEMS_VERBOSE = """\
torchdoctor train.py · classification · 6 steps · 2 epochs · cpu · 2.5 s · exit 0
3 problems found (worst: critical), with 1 info finding
 ERROR  exploding_gradients · step 3 · epoch 1 · at fc1 (Linear)
  Gradient norm jumped 1.2e+04x above its median at fc1
  evidence: grad norm: 2.4e+04; median grad norm: 2; ratio: 1.2e+04; largest layers: [{'layer':
'fc1', 'norm': 24000.0}]; note: the norm was measured after the backward of step 3, before the
optimizer step
  fix 1 lower_learning_rate: Lower the learning rate from 0.1 to 0.01.
      optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
↳ CRITICAL  nonfinite_loss · step 4 · epoch 1
  The loss became NaN at step 4
  caused by exploding_gradients (step 3): the exploding gradients overflowed to NaN/Inf
  evidence: first nonfinite step: 4; value: nan; loss before: 1.4; last finite loss: 1.4; input had
nan: no; series: [[2, 1.6], [3, 1.4], [4, 'nan']]
  fix 1 lower_learning_rate: Lower the learning rate from 0.1 to 0.01.
      optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
  fix 2 clip_gradients: Clip the gradient norm at 5.
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)
 WARNING  memory_pressure
  Peak memory 900 MiB is 88% of the 1 GiB budget
  evidence: peak: 900 MiB; budget: 1 GiB; share: 0.8789; layers: fc1, fc2
 INFO  dataloader_bottleneck
  The GPU waited for data 12% of the time
  evidence: wait share: 0.12; workers: 0
  fix 1 more_workers: Use num_workers=4.
torch.compile'd Net: not observed per-layer gradients
not evaluated: overfitting (no validation was observed: evaluate a held-out set)
not evaluated: loss_plateau (5 finite training losses; needs at least 20)
not evaluated: memory_leak (6 steps; a trend needs 20)
torchdoctor internal warning: probe 'activations' failed: RuntimeError: boom
"""

CAUSES = """\
torchdoctor train.py · classification · 6 steps · 2 epochs · cpu · 2.5 s · exit 0
4 problems found (worst: error)
 ERROR  missing_zero_grad · step 1 · epoch 0
  No zero_grad() in 6 steps: each step's gradients were added to all the earlier ones
  evidence: zero grad calls: 0; steps checked: 5; growth: 30
  fix 1 call_zero_grad: Reset the gradients once per optimizer step, before the backward.
      optimizer.zero_grad()  # add this line
      loss.backward()
↳ ERROR  divergence · step 2 · epoch 0
  Loss diverging: it climbed 9x from its low of 1.2 to 11 at step 5
  caused by missing_zero_grad (step 1): unreset gradients add up, so every step is larger
  evidence: criterion: trend; onset step: 2; ratio: 9.2
  fix 1 lower_learning_rate: Lower the learning rate from 0.1 to 0.01.
      optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
↳ ERROR  exploding_gradients · step 3 · epoch 1 · at fc1 (Linear)
  Gradient norm exploded at step 3: 240, 96x its recent history
  caused by missing_zero_grad (step 1): unreset gradients add up, so every step is larger
  evidence: norm: 240; ratio: 96
  fix 1 clip_gradients: Clip the gradient norm at 5.
  fix 2 lower_learning_rate: as above
 WARNING  memory_pressure
  Peak memory 900 MiB is 88% of the 1 GiB budget
  evidence: peak: 900 MiB; budget: 1 GiB; share: 0.8789; layers: fc1, fc2
"""

GRADIENTS = """\
gradients · 2 layers, model order
layer         norm last    median       max  update/w  non-finite  trend (log)
fc1 (Linear)          1       2.4   2.4e+04    0.0012         17%  ▂▂▁█✗▁            ◀
fc2 (Linear)       0.25       0.7        30    0.0008              ▃▂▂█▃▁
  ◀ exploding_gradients: fc1
"""

MEMORY = """\
memory · cpu
  peak RSS 900 MiB · capacity 16 GiB · budget 1 GiB
  training step (measured at step 1, batch size 32): about 66 MiB = parameters 4 MiB + gradients 4
MiB + optimizer state 8 MiB + activations 50 MiB (1.56 MiB per sample)
module             type        parameters  gradients  activations  share of peak
Net (own ops)      Net                0 B        0 B        1 MiB           1.5%
body               Sequential       3 MiB      3 MiB       40 MiB          69.7%
fc2                Linear           1 MiB      1 MiB        7 MiB          13.6%
(input batch)                                               2 MiB           3.0%
(optimizer state)                                                          12.1%
  over the run (steps 0–5): RSS 600 MiB → 850 MiB
"""

MEMORY_VERBOSE = """\
memory · cpu
  peak RSS 900 MiB · capacity 16 GiB · budget 1 GiB
  training step (measured at step 1, batch size 32): about 66 MiB = parameters 4 MiB + gradients 4
MiB + optimizer state 8 MiB + activations 50 MiB (1.56 MiB per sample)
module             type    parameters  gradients  activations  share of peak
Net (own ops)      Net            0 B        0 B        1 MiB           1.5%
body.fc1           Linear       3 MiB      3 MiB       32 MiB          57.6%
body.act           ReLU           0 B        0 B        8 MiB          12.1%
fc2                Linear       1 MiB      1 MiB        7 MiB          13.6%
(input batch)                                           2 MiB           3.0%
(optimizer state)                                                      12.1%
  over the run (steps 0–5): RSS 600 MiB → 850 MiB
"""

RANKS = """\
torchdoctor train.py · classification · 6 steps · 2 epochs · cpu · 2.5 s · exit 0
2 problems found (worst: critical)
 CRITICAL  script_error
  Ranks 2-3 died without reporting
  evidence: rank: 2; ranks: 2, 3; status: died
  fix 1 check_rank_logs: Read ranks 2-3's output: torchrun's log names the signal.
 WARNING  memory_pressure
  Peak memory 900 MiB is 88% of the 1 GiB budget
  evidence: peak: 900 MiB; budget: 1 GiB; share: 0.8789; layers: fc1, fc2
6 ranks: rank 0 exit 0; rank 1 exit 1 (RuntimeError: Connection closed by peer [10.0.0.2]:29500);
ranks 2-3 died without reporting; rank 4 did not report; rank 6 on another node, not gathered
gradients · 2 layers, model order
layer         norm last    median       max  update/w  non-finite  trend (log)
fc1 (Linear)          1       1.8       3.2    0.0012              █▆▅▄▂▁
fc2 (Linear)       0.25      0.45       0.8    0.0008              █▆▅▄▂▁
memory · cpu
  peak RSS 900 MiB · capacity 16 GiB · budget 1 GiB
  training step (measured at step 1, batch size 32): about 66 MiB = parameters 4 MiB + gradients 4
MiB + optimizer state 8 MiB + activations 50 MiB (1.56 MiB per sample)
module             type        parameters  gradients  activations  share of peak
Net (own ops)      Net                0 B        0 B        1 MiB           1.5%
body               Sequential       3 MiB      3 MiB       40 MiB          69.7%
fc2                Linear           1 MiB      1 MiB        7 MiB          13.6%
(input batch)                                               2 MiB           3.0%
(optimizer state)                                                          12.1%
  over the run (steps 0–5): RSS 600 MiB → 850 MiB
"""

HEALTHY_RANKS = """\
torchdoctor train.py · classification · 24 steps · 2 epochs · cpu · 2.5 s · exit 0
✔ healthy: 24 steps, loss 2.3 → 1.2, val loss 1.5 → 1.3 (acc 70.3%), grad norm median 1.25 (max 4)
4 ranks: ranks 0-3 exit 0
"""


# -- the tests -------------------------------------------------------------------------------------


def test_a_healthy_run_is_one_line_with_its_numbers():
    """The header, the healthy line backed by its numbers, and one line naming what was not judged."""
    assert text_of(healthy_report()) == HEALTHY


def test_a_run_judged_on_too_few_steps_is_not_called_healthy():
    """Six steps: the trend rules could not judge, so no problem found is no clean bill of health."""
    report = short_report()
    assert report.healthy and report.caveat() == "judged on 6 steps: too few to call it healthy"
    assert text_of(report) == SHORT and "✔" not in text_of(report, verbose=True)


def test_an_interrupted_run_says_so_and_is_not_called_healthy():
    """Ctrl-C after 24 steps: the line says where it stopped and what was judged; the info finding
    hidden and counted, as the HTML counts it."""
    assert text_of(interrupted_report()) == INTERRUPTED
    verbose = text_of(interrupted_report(), verbose=True)
    assert "• interrupted at step 24 (Ctrl-C): judged on 24 steps\n" in verbose and "✔" not in verbose
    assert " INFO  dataloader_bottleneck" in verbose


def test_verbose_says_why_a_rule_was_not_evaluated():
    assert text_of(healthy_report(), verbose=True) == HEALTHY_VERBOSE


def test_a_run_without_a_step_has_nothing_to_diagnose():
    report = empty_report()
    assert report.healthy
    assert text_of(report) == text_of(report, verbose=True) == NOTHING_TO_DIAGNOSE


def test_findings_worst_first_with_evidence_and_a_shared_fix_said_once():
    """The error (exploding gradients, step 3) leads and the critical it explains (the NaN, step 4)
    follows it marked `↳` with its cause; the warning after them; the info finding hidden; the
    critical's fix, the same as the error's, is `as above`; series and long notes left out of the
    evidence line; no validation seen is said on a line of its own, the other rules not evaluated
    named on one line."""
    report = problem_report()
    assert not report.healthy
    assert text_of(report) == PROBLEMS
    assert plain(to_text(report)) == PROBLEMS  # to_text: the findings report as plain text, 100 wide


def test_a_cause_leads_and_its_consequences_follow_it_marked():
    """missing_zero_grad first (step 1), its two consequences right after it, each marked `↳` with
    its cause and why; the learning-rate fix the divergence gave is `as above` for the explosion."""
    report = causes_report()
    assert [(f.code, f.caused_by) for f in report.findings] == [
        ("missing_zero_grad", None), ("divergence", "missing_zero_grad"),
        ("exploding_gradients", "missing_zero_grad"), ("memory_pressure", None)]
    assert text_of(report) == CAUSES


def test_a_problem_is_shown_with_its_cause_even_when_the_cause_alone_is_not():
    """An info cause (raw inputs, judged harmless on their own) of a warning is shown without -v:
    the consequence is never shown without what explains it."""
    tl = timeline()
    raw = Finding("unnormalized_input", Severity.INFO, "Inputs range 0-255", step=0, evidence={"max": 255.0},
                  fixes=[Fix("normalize_input", "Divide the inputs by 255.")])
    saturated = Finding("saturated_activations", Severity.WARNING, "92% of act's outputs pinned", step=2,
                        where="act", evidence={"fraction": 0.92},
                        fixes=[Fix("normalize_input", "Divide the inputs by 255.")])
    text = text_of(Report(tl, findings=link([saturated, raw], tl)))
    assert text.index(" INFO  unnormalized_input · step 0") < text.index("↳ WARNING  saturated_activations")
    assert "  caused by unnormalized_input (step 0): raw inputs drive the first layer out of range\n" in text
    assert "  fix 1 normalize_input: as above\n" in text


def test_verbose_shows_info_findings_the_whole_evidence_and_every_fix_again():
    assert text_of(problem_report(), verbose=True) == PROBLEMS_VERBOSE


def test_the_gradient_table_marks_the_layer_a_finding_names():
    """Per layer in model order: the norms, the update ratio, the share of non-finite steps, a
    log-scaled trend with ✗ where the norm was NaN; fc1, which exploding_gradients names, marked ◀."""
    assert text_of(problem_report(), findings=False, gradients=True) == GRADIENTS


def test_the_memory_table_rolls_submodules_up_and_verbose_lists_each():
    assert text_of(memory_report(), findings=False, memory=True) == MEMORY
    assert text_of(memory_report(), findings=False, memory=True, verbose=True) == MEMORY_VERBOSE


def test_a_multi_rank_report_says_how_each_rank_ended_after_the_findings():
    """The ranks line comes after the findings and before the gradient and memory reports; ranks
    that ended alike are grouped, an exception is cut to its first line without gloo's C++ location."""
    assert text_of(ranks_report(), gradients=True, memory=True) == RANKS
    assert "6 ranks" not in text_of(ranks_report(), findings=False, gradients=True)  # it goes with the findings
    assert styled_line(ranks_report(), "6 ranks:").startswith("\x1b[31m")  # red: a rank failed


def test_a_healthy_multi_rank_report_dims_its_ranks_line():
    assert text_of(healthy_ranks_report()) == HEALTHY_RANKS
    assert styled_line(healthy_ranks_report(), "4 ranks:").startswith("\x1b[2m")
