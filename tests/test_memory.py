"""The memory doctor end to end: real runs on CPU, asked whether they fit a budget, dying of a
real allocator out-of-memory error, and their healthy twins."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES, SCRIPTS, cli, run_script
from torchdoctor import Severity
from torchdoctor.config import Config

BUDGET = 96 * 2**20
MEMORY_BUDGET = EXAMPLES / "memory_budget.py"


def budget(size: int = BUDGET) -> Config:
    return Config(memory_budget=size)


@pytest.fixture(scope="module")
def over_budget():
    return run_script(MEMORY_BUDGET, "--batch-size", "64", "--steps", "2", config=budget())


def test_a_step_over_the_budget_is_an_error_with_its_breakdown(over_budget):
    finding = over_budget.report.by_code("memory_pressure")
    assert finding is not None and finding.severity is Severity.ERROR
    profile = over_budget.report.timeline.memory.profile
    assert finding.evidence["peak_bytes"] == profile.step_total > BUDGET
    parts = finding.evidence["breakdown"]
    assert parts["batch_size"] == 64
    # what the model holds, counted from the model itself: AdamW keeps two moments per weight
    assert parts["parameters"] == sum(p.numel() * 4 for p in _model().parameters())
    assert parts["gradients"] == parts["parameters"]
    assert parts["optimizer_state"] == 2 * parts["parameters"]
    assert parts["activations"] > 50 * parts["parameters"]  # a CNN on 64x64 images: activations dominate
    assert finding.where == "block1"  # the block that holds the most activation memory


def test_the_suggested_batch_size_fits_when_the_run_is_repeated_with_it(over_budget):
    finding = over_budget.report.by_code("memory_pressure")
    fix = next(f for f in finding.fixes if f.action == "reduce_batch_size")
    assert finding.fixes[0] is fix
    size = fix.params["batch_size"]
    assert 1 <= size < 64 and fix.params["accumulation_steps"] * fix.params["micro_batch_size"] >= 64
    rerun = run_script(MEMORY_BUDGET, "--batch-size", str(size), "--steps", "2", config=budget())
    assert "memory_pressure" not in rerun.codes
    measured = rerun.report.timeline.memory.profile.step_total
    assert measured <= 0.9 * BUDGET
    assert measured == pytest.approx(fix.params["estimated_peak_bytes"], rel=0.02)
    # and one more sample would not have fitted with the margin
    bigger = run_script(MEMORY_BUDGET, "--batch-size", str(size + 1), "--steps", "1", config=budget())
    assert bigger.report.timeline.memory.profile.step_total > 0.9 * BUDGET


def test_checkpointing_the_suggested_blocks_lowers_the_profiled_peak_as_predicted(over_budget):
    """The advice checked against torch.profiler's peak over a real step with those blocks
    checkpointed (benchmarks/memory_estimate.py prints the same comparison)."""
    from benchmarks.memory_estimate import checkpointed_step_peak

    finding = over_budget.report.by_code("memory_pressure")
    fix = next(f for f in finding.fixes if f.action == "gradient_checkpointing")
    assert "checkpoint(" in fix.snippet and "use_reentrant=False" in fix.snippet
    plain = checkpointed_step_peak([])
    after = checkpointed_step_peak(fix.params["modules"])
    assert plain == pytest.approx(over_budget.report.timeline.memory.profile.step_total, rel=0.05)
    assert after == pytest.approx(fix.params["estimated_peak_bytes"], rel=0.1)
    assert plain - after >= 0.8 * fix.params["saved_bytes"] > 0


def test_saved_activations_match_what_the_profiler_sees_allocated():
    from benchmarks.memory_estimate import estimated_and_profiled, models

    for name, model, x in models():
        estimate, measured = estimated_and_profiled(model, x)
        assert estimate == pytest.approx(measured, rel=0.01), name


def test_bfloat16_autocast_saving_is_half_the_float32_activations(over_budget):
    finding = over_budget.report.by_code("memory_pressure")
    fix = next(f for f in finding.fixes if f.action == "mixed_precision")
    profile = over_budget.report.timeline.memory.profile
    assert fix.params["saved_bytes"] == profile.activation_dtypes["float32"] // 2


def test_a_run_that_fits_its_budget_is_clean():
    result = run_script(MEMORY_BUDGET, "--batch-size", "8", "--steps", "2", config=budget())
    assert result.report.healthy, result.codes
    assert result.report.timeline.memory.profile.batch_size == 8


def test_activations_grow_linearly_with_the_batch(over_budget):
    small = run_script(MEMORY_BUDGET, "--batch-size", "16", "--steps", "1").report.timeline.memory.profile
    large = over_budget.report.timeline.memory.profile
    assert large.per_sample == pytest.approx(small.per_sample, rel=0.01)


def _model():
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_budget_example", MEMORY_BUDGET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Net()


# -- out of memory ----------------------------------------------------------------------------

def test_a_real_cpu_allocator_out_of_memory_is_explained_and_the_status_passes_through():
    result = run_script(SCRIPTS / "memory" / "oom_in_module.py")
    assert result.status == 1
    finding = result.report.by_code("out_of_memory")
    assert finding is not None and finding.severity is Severity.CRITICAL
    assert finding.step == 3 and finding.where == "2"
    assert finding.evidence["phase"] == "forward" and finding.evidence["device"] == "cpu"
    assert finding.evidence["requested_bytes"] == 2**45 * 4
    assert finding.evidence["breakdown"]["parameters"] == (8 * 16 + 16 + 16 * 2 + 2) * 4
    assert finding.fixes[0].action == "fix_allocation_size"


def test_a_loss_that_broadcasts_output_and_target_is_named_with_its_shapes():
    result = run_script(EXAMPLES / "out_of_memory.py")
    assert result.status == 1
    finding = result.report.by_code("out_of_memory")
    assert finding.evidence["phase"] == "loss"
    fix = finding.fixes[0]
    assert fix.action == "fix_loss_input"
    assert fix.params["input_shape"] == [1_000_000, 1] and fix.params["target_shape"] == [1_000_000]
    assert fix.params["broadcast_shape"] == [1_000_000, 1_000_000]
    assert "squeeze(-1)" in fix.snippet


def test_the_fixed_regression_is_clean():
    result = run_script(EXAMPLES / "out_of_memory.py", "--fixed", "--samples", "20000")
    assert result.status == 0
    assert result.report.healthy, result.codes
    assert "out_of_memory" not in result.codes


def test_the_cli_writes_the_report_of_a_run_that_died_of_out_of_memory(tmp_path):
    out = tmp_path / "report.json"
    proc = cli("run", "--json", str(out), str(SCRIPTS / "memory" / "oom_in_module.py"))
    assert proc.returncode == 1
    assert "can't allocate memory" in proc.stderr  # the user's traceback, as python prints it
    data = json.loads(out.read_text())
    assert data["run"]["exit_status"] == 1
    oom = next(f for f in data["findings"] if f["code"] == "out_of_memory")
    assert oom["step"] == 3 and oom["evidence"]["requested_bytes"] == 2**45 * 4
    assert data["memory"]["step"]["parameters"] > 0


# -- the memory report --------------------------------------------------------------------------

def test_memory_report_table_and_json_section(tmp_path):
    out = tmp_path / "report.json"
    proc = cli("run", "-q", "--memory-report", "--memory-budget", "96MiB", "--json", str(out),
               str(MEMORY_BUDGET), "--steps", "1", "--batch-size", "32")
    assert proc.returncode == 0, proc.stderr
    text = proc.stderr
    assert "memory_pressure" not in text  # -q: the findings are not printed, the memory report is
    for needle in ("share of peak", "block1", "Sequential", "(optimizer state)", "per sample", "budget 96 MiB"):
        assert needle in text, needle
    data = json.loads(out.read_text())["memory"]
    assert data["budget_bytes"] == BUDGET
    assert data["step"]["batch_size"] == 32
    assert data["step"]["estimated_peak"] == sum(
        data["step"][k] for k in ("parameters", "gradients", "optimizer_state", "activations", "batch"))
    names = [m["name"] for m in data["modules"]]
    assert names.index("stem.0") < names.index("block1.0.0") < names.index("head")  # forward order
    assert sum(m["activations"] for m in data["modules"]) == data["step"]["activations"]
    assert data["timeline"] and data["timeline"][0][1] > 0  # RSS sampled per step


@pytest.mark.parametrize("bad", ["lots", "-3GiB", "0"])
def test_a_bad_memory_budget_is_one_line(bad):
    proc = cli("run", "--memory-budget", bad, str(MEMORY_BUDGET))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--memory-budget" in proc.stderr


# -- leaks ----------------------------------------------------------------------------------------

LEAKS = [
    ("total", "detach_logged_tensors", "graphs of earlier steps"),
    ("append", "detach_logged_tensors", "loss tensors of earlier steps"),
    ("retain", "drop_retain_graph", "retain_graph=True"),
    ("eval", "evaluate_without_grad", "never backwarded"),
]


@pytest.mark.parametrize(("leak", "action", "cause"), LEAKS, ids=[leak for leak, _, _ in LEAKS])
def test_a_leaking_loop_is_found_with_its_cause(leak, action, cause):
    result = run_script(EXAMPLES / "memory_leak.py", "--leak", leak, "--steps", "60")
    finding = result.report.by_code("memory_leak")
    assert finding is not None, result.codes
    # Severity from the projection on this machine: kilobytes a step (graphs, loss tensors) are a
    # warning; a forward's activations a step are an error once 10x this run takes a tenth of memory.
    evidence = finding.evidence
    serious = evidence["projected_growth_over_10x_this_run_bytes"] >= 0.1 * evidence["memory_available_bytes"]
    expected = Severity.ERROR if leak in ("retain", "eval") and serious else Severity.WARNING
    assert finding.severity is expected, (finding.severity, finding.title)
    assert cause in finding.title
    assert finding.fixes[0].action == action
    evidence = finding.evidence
    if leak in ("retain", "eval"):  # the saved activations stay: one forward's worth per step
        activations = evidence["activations_per_step_bytes"]
        assert 0.8 * activations < evidence["growth_per_step_bytes"] < 1.3 * activations
    else:  # after backward() only the graph's nodes stay: kilobytes, found by the graphs kept
        assert evidence["graphs_of_earlier_steps_alive"] >= 30
    assert result.codes == ["memory_leak"]


def test_the_loop_that_logs_numbers_is_clean():
    result = run_script(EXAMPLES / "memory_leak.py", "--leak", "none", "--steps", "60")
    assert result.report.healthy, result.codes
    assert "memory_leak" not in result.report.not_evaluated
    assert result.report.timeline.memory.graphs_kept == 0


def test_keeping_the_last_loss_for_logging_is_not_a_leak(write_script):
    """One tensor kept one step longer (printed at the end of the epoch) holds one graph, not a
    growing chain."""
    script = write_script(
        "import torch, torch.nn as nn, torch.nn.functional as F\n"
        "torch.manual_seed(0)\n"
        "model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "x = torch.randn(256, 16); y = (x[:, :4].argmax(1))\n"
        "last = None\n"
        "for step in range(60):\n"
        "    xb, yb = x[step % 8 * 32:(step % 8 + 1) * 32], y[step % 8 * 32:(step % 8 + 1) * 32]\n"
        "    loss = F.cross_entropy(model(xb), yb)\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "    previous, last = last, loss\n"
        "print(last.item())\n"
    )
    result = run_script(script)
    assert "memory_leak" not in result.codes



def test_the_batch_size_fix_names_the_scripts_loader_line():
    """On the loader line the script wrote (recorded by the source probe), the batch that fits; a
    batch size taken from args.batch_size is named as the flag to pass."""
    from torchdoctor.rules._memory import _batch_fix
    from torchdoctor.timeline import MemoryProfile, Timeline

    tl = Timeline()
    tl.run.argv = ["train.py"]
    profile = MemoryProfile(step=3, batch_size=64, parameters=10_000, gradients=10_000, optimizer_state=20_000,
                            activations=64 * 100_000)
    for written, flag in (("loader = DataLoader(data, batch_size=64, shuffle=True)", False),
                          ("    loader = DataLoader(data, args.batch_size, shuffle=True)", True)):
        tl.sources["train_loader"] = {"file": "/x/train.py", "line": 9, "text": written}
        fix = _batch_fix(tl, profile, 16, 4_000_000, 0.1, 0)
        assert fix.location is not None and fix.location["line"] == 9
        assert "DataLoader(data, batch_size=16, shuffle=True)" in fix.location["after"] if not flag else \
            "DataLoader(data, 16, shuffle=True)" in fix.location["after"]
        assert ("--batch-size 16" in fix.text) is flag
    del tl.sources["train_loader"]
    assert _batch_fix(tl, profile, 16, 4_000_000, 0.1, 0).location is None
