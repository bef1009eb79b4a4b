"""Fixes in the user's code: the learning-rate fix names the optimizer's line and rewrites it keeping
every argument, and `torchdoctor run --patch FILE` writes that edit as a diff git and patch accept."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from tests.conftest import cli, run_script
from torchdoctor import jsonreport
from torchdoctor.findings import Finding, Fix, Severity
from torchdoctor.render.patch import unified_diff
from torchdoctor.report import Report
from torchdoctor.rules._edits import set_keyword
from torchdoctor.timeline import Timeline

DIVERGING = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import optim

torch.manual_seed(0)
x = torch.randn(256, 16)
y = (x[:, :4].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = optim.SGD(model.parameters(), lr=5.0, momentum=0.9)
for epoch in range(3):
    for i in range(0, 256, 32):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        optimizer.step()
"""

# The optimizer built inside a function, over three lines, with the learning rate positional.
DIVERGING_IN_MAIN = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = (x[:, :4].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.SGD(
        model.parameters(), 5.0,
        momentum=0.9, nesterov=True)
    for epoch in range(3):
        for i in range(0, 256, 32):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
            loss.backward()
            opt.step()


main()
"""

HEALTHY = DIVERGING.replace("lr=5.0", "lr=0.05")


def lr_fix(report: Report) -> tuple[Finding, Fix]:
    for finding in report.findings:
        if finding.code in ("divergence", "nonfinite_loss", "exploding_gradients"):
            for fix in finding.fixes:
                if fix.action == "lower_learning_rate":
                    return finding, fix
    raise AssertionError(f"no lower_learning_rate fix in {report.codes()}")


# -- set_keyword ----------------------------------------------------------------------------------
def test_set_keyword_replaces_only_the_value():
    text = "optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)"
    assert set_keyword(text, "lr", "0.01") == "optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)"
    spaced = "opt = SGD( params ,  lr = 1e-1 ,momentum = .9 )  # 'fast'"
    assert set_keyword(spaced, "lr", "0.01") == "opt = SGD( params ,  lr = 0.01 ,momentum = .9 )  # 'fast'"


def test_set_keyword_positional_and_absent():
    assert set_keyword("opt = SGD(model.parameters(), 0.1, 0.9)", "lr", "0.01", position=1) == \
        "opt = SGD(model.parameters(), 0.01, 0.9)"
    assert set_keyword("opt = SGD(model.parameters(), momentum=0.9)", "lr", "0.01", position=1) == \
        "opt = SGD(model.parameters(), momentum=0.9, lr=0.01)"
    assert set_keyword("opt = SGD()", "lr", "0.01") == "opt = SGD(lr=0.01)"


def test_set_keyword_multi_line_keeps_the_layout():
    text = ("    opt = optim.AdamW(\n        model.parameters(),\n        lr=3e-3,  # tuned\n"
            "        betas=(0.9, 0.99),\n    )")
    assert set_keyword(text, "lr", "0.0003") == text.replace("3e-3", "0.0003")
    absent = "    opt = optim.AdamW(\n        model.parameters(),\n        weight_decay=0.1,\n    )"
    assert set_keyword(absent, "lr", "0.0003") == \
        "    opt = optim.AdamW(\n        model.parameters(),\n        weight_decay=0.1,\n        lr=0.0003,\n    )"


def test_set_keyword_nested_parentheses_and_lambda():
    nested = "opt = SGD([{'params': m.a.parameters()}, dict(params=m.b.parameters(), lr=(0.5))], lr=f(1, (2)))"
    assert set_keyword(nested, "lr", "0.01") == \
        "opt = SGD([{'params': m.a.parameters()}, dict(params=m.b.parameters(), lr=(0.5))], lr=0.01)"
    lam = "opt = SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=1.0, momentum=0.9)  # é"
    assert set_keyword(lam, "lr", "0.1") == \
        "opt = SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=0.1, momentum=0.9)  # é"
    assert set_keyword('opt = SGD(p, lr="ä", x=1)', "lr", "1") == "opt = SGD(p, lr=1, x=1)"


def test_set_keyword_refuses_what_it_cannot_rewrite():
    assert set_keyword("x = 1", "lr", "0.01") is None
    assert set_keyword("for opt in [SGD(p, lr=1)]:", "lr", "0.01") is None
    assert set_keyword("opt = SGD(p, **kw)", "lr", "0.01") is None  # lr may be in kw
    assert set_keyword("opt = SGD(*args)", "lr", "0.01", position=1) is None
    assert set_keyword("opt = SGD(p, lr=", "lr", "0.01") is None


# -- real runs -------------------------------------------------------------------------------------
def test_diverging_run_names_the_optimizer_line_and_keeps_momentum(write_script):
    init = torch.optim.Optimizer.__init__
    script = write_script(DIVERGING)
    run = run_script(script)
    assert torch.optim.Optimizer.__init__ is init  # the probe restored it
    source = run.report.timeline.sources["optimizer"]
    assert source["file"] == str(script) and source["line"] == 10 and source["end_line"] == 10
    finding, fix = lr_fix(run.report)
    loc = fix.location
    assert loc is not None and loc["file"] == str(script) and loc["line"] == 10
    assert loc["before"] == "optimizer = optim.SGD(model.parameters(), lr=5.0, momentum=0.9)"
    assert loc["after"] == f"optimizer = optim.SGD(model.parameters(), lr={fix.params['lr']:g}, momentum=0.9)"
    assert fix.snippet == loc["after"]  # the snippet is the user's own line, rewritten
    # The JSON keeps the location and reads it back.
    data = jsonreport.to_dict(run.report)
    saved = next(f for f in data["findings"] if f["code"] == finding.code)
    assert any(x.get("location") == loc for x in saved["fixes"])
    back = jsonreport.from_dict(data)
    assert any(x.location == loc for f in back.findings for x in f.fixes)


def test_multi_line_optimizer_in_a_function(write_script):
    script = write_script(DIVERGING_IN_MAIN)
    run = run_script(script)
    _, fix = lr_fix(run.report)
    loc = fix.location
    assert loc is not None and loc["line"] == 11
    assert loc["before"] == ("    opt = torch.optim.SGD(\n        model.parameters(), 5.0,\n"
                             "        momentum=0.9, nesterov=True)")
    assert loc["after"] == loc["before"].replace("5.0", f"{fix.params['lr']:g}")
    diff = unified_diff(run.report, script.parent)
    new = f"{fix.params['lr']:g}"
    assert "-        model.parameters(), 5.0,\n" in diff and f"+        model.parameters(), {new},\n" in diff
    assert "\n     opt = torch.optim.SGD(\n" in diff  # the lines that did not change are context


# Built in a decorated function, after a string whose lines start at column 0 and a call whose
# closing parenthesis does: the block around the optimizer's line does not parse on its own.
DIVERGING_AFTER_A_COLUMN_0_STRING = """\
import functools
import torch
import torch.nn as nn
import torch.nn.functional as F


@functools.lru_cache(maxsize=None)
def main():
    notes = \"\"\"
lr: 5.0
\"\"\"
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = (x[:, :4].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2)
)
    opt = torch.optim.SGD(model.parameters(),
                          lr=5.0, momentum=0.9)
    for i in range(0, 256 * 3, 32):
        opt.zero_grad()
        F.cross_entropy(model(x[i % 256:i % 256 + 32]), y[i % 256:i % 256 + 32]).backward()
        opt.step()
    return notes


main()
"""


def test_optimizer_site_after_a_string_at_column_0(write_script):
    script = write_script(DIVERGING_AFTER_A_COLUMN_0_STRING)
    source = run_script(script).report.timeline.sources["optimizer"]
    assert (source["line"], source["end_line"]) == (17, 18)
    assert source["text"].startswith("    opt = torch.optim.SGD(") and source["text"].endswith("momentum=0.9)")


def test_statement_spans_match_the_whole_file_parse():
    """Only the top-level block around a line is parsed: every executed line of the bundled
    examples must get the statement a parse of the whole file gives."""
    import ast
    import io
    import linecache
    import tokenize
    from pathlib import Path

    from torchdoctor.probes.sources import SourceProbe

    checked = 0
    for path in sorted((Path(__file__).parent.parent / "examples").glob("*.py")):
        lines = linecache.getlines(str(path))
        tree = ast.parse("".join(lines))
        spans = [(n.lineno, n.end_lineno) for n in ast.walk(tree) if isinstance(n, ast.stmt) and not hasattr(n, "body")]
        in_strings = {k for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
                      if tok.type == tokenize.STRING for k in range(tok.start[0] + 1, tok.end[0] + 1)}
        probe = SourceProbe(Timeline())
        for line in sorted({k for a, b in spans for k in range(a, b + 1)} - in_strings):
            inner = min((s for s in spans if s[0] <= line <= s[1]), key=lambda s: s[1] - s[0])
            found = probe.statement(str(path), str(path), line)
            assert found is not None and (found["line"], found["end_line"]) == inner, (path.name, line)
            checked += 1
    assert checked > 500


def test_healthy_run_has_no_location(write_script):
    run = run_script(write_script(HEALTHY))
    assert run.report.timeline.sources["optimizer"]["line"] == 10
    assert not [x for f in run.report.findings for x in f.fixes if x.location]
    assert unified_diff(run.report) == ""


# -- --patch ---------------------------------------------------------------------------------------
@pytest.mark.skipif(not shutil.which("git") or not shutil.which("patch"), reason="needs git and patch")
def test_patch_option_writes_a_diff_git_and_patch_accept(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    (work / "train.py").write_text(DIVERGING)
    result = cli("run", "-q", "--no-live", "--patch", "out.diff", "train.py", cwd=work)
    assert result.returncode == 0, result.stderr
    diff = (work / "out.diff").read_text()
    assert diff.startswith("--- a/train.py\n+++ b/train.py\n")
    assert "-optimizer = optim.SGD(model.parameters(), lr=5.0, momentum=0.9)\n" in diff
    assert "+optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)\n" in diff
    for check in (["git", "apply", "--check", "out.diff"], ["patch", "-p1", "--dry-run", "-i", "out.diff"]):
        done = subprocess.run(check, cwd=work, capture_output=True, text=True)
        assert done.returncode == 0, (check, done.stdout, done.stderr)
    subprocess.run(["patch", "-p1", "-i", "out.diff"], cwd=work, check=True, capture_output=True)
    assert (work / "train.py").read_text() == DIVERGING.replace("lr=5.0", "lr=0.1")


def test_patch_option_on_a_healthy_run_writes_nothing(tmp_path):
    (tmp_path / "train.py").write_text(HEALTHY)
    result = cli("run", "-q", "--no-live", "--patch", "out.diff", "train.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out.diff").exists()
    assert "no fix changes a line of the script" in result.stderr


# -- unified_diff from hand-made findings ---------------------------------------------------------
def test_one_edit_per_line_the_first_kept_and_stale_edits_dropped(tmp_path):
    script = tmp_path / "t.py"
    script.write_text("a = f(x, lr=1)\nb = 2\nc = g(y, lr=3)\n")

    def finding(code: str, line: int, before: str, after: str) -> Finding:
        loc = {"file": str(script), "line": line, "before": before, "after": after}
        return Finding(code, Severity.ERROR, code, fixes=[Fix("lower_learning_rate", "", {}, None, loc)])

    report = Report(Timeline(), [finding("divergence", 1, "a = f(x, lr=1)", "a = f(x, lr=0.1)"),
                                 finding("exploding_gradients", 1, "a = f(x, lr=1)", "a = f(x, lr=0.5)"),
                                 finding("nonfinite_loss", 3, "c = g(y, lr=3)", "c = g(y, lr=0.3)"),
                                 finding("loss_plateau", 2, "b = 3", "b = 4")])  # stale: line 2 is b = 2
    diff = unified_diff(report, tmp_path)
    assert diff.count("--- a/t.py") == 1
    assert "+a = f(x, lr=0.1)\n" in diff and "lr=0.5" not in diff and "+c = g(y, lr=0.3)\n" in diff
    assert "b = 4" not in diff


def test_an_optimizer_given_part_of_the_model_is_fixed_in_its_own_line():
    """frozen_parameters rewrites the user's optimizer line with the whole model, in the script's
    own names (`net`, not `model`), every other argument kept; no snippet names what the script
    does not define."""
    from tests.conftest import SCRIPTS

    result = run_script(SCRIPTS / "head_only_optimizer.py")
    frozen = result.report.by_code("frozen_parameters")
    assert frozen is not None and frozen.where == "backbone.0"
    fix = frozen.fixes[0]
    assert fix.location is not None and fix.location["line"] == 21
    assert fix.location["before"] == "optimizer = optim.SGD(net.head.parameters(), lr=0.1, momentum=0.9)"
    assert fix.location["after"] == "optimizer = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)"
    assert frozen.fixes[1].snippet == "for p in net.backbone[0].parameters():\n    p.requires_grad_(False)"


def test_a_linear_sized_for_other_images_is_fixed_where_the_class_builds_it():
    """Issue 17: the beginner CNN (a class with its own forward) was told an nn.Sequential snippet;
    the fix is now its own `self.fc1 = nn.Linear(...)` line with the in_features its input has."""
    from tests.conftest import SCRIPTS

    result = run_script(SCRIPTS / "beginner_cnn.py")
    error = result.report.by_code("script_error")
    assert result.status == 1 and error is not None and error.where == "fc1"
    fix = error.fixes[0]
    assert fix.action == "fix_in_features" and fix.params == {"in_features": 13456}
    assert fix.location is not None and fix.location["line"] == 15
    assert fix.location["before"].strip() == "self.fc1 = nn.Linear(16 * 5 * 5, 120)"
    assert fix.location["after"].strip() == "self.fc1 = nn.Linear(13456, 120)"
    diff = unified_diff(result.report, base=str(SCRIPTS))
    assert "-        self.fc1 = nn.Linear(16 * 5 * 5, 120)\n+        self.fc1 = nn.Linear(13456, 120)" in diff
    assert torch.nn.Linear.__init__.__name__ == "__init__" and not hasattr(torch.nn.Linear.__init__, "__wrapped__")


def test_the_loader_fix_is_the_scripts_own_dataloader_line():
    """more_dataloader_workers rewrites the training loader's construction (issue 17), adding
    num_workers (and persistent_workers for a run of several epochs), every argument kept. The
    wait share depends on the machine's load, so the rule is asked with a low threshold."""
    from tests.conftest import EXAMPLES
    from tests.rules.timelines import findings

    result = run_script(EXAMPLES / "slow_loader.py")
    site = result.report.timeline.sources["train_loader"]
    assert site["line"] == 48 and site["text"].strip() == "loader = DataLoader(dataset, batch_size=16, shuffle=True)"
    (found,) = findings("dataloader_bottleneck", result.report.timeline, max_wait_share=0.05)
    fix = found.fixes[0]
    workers = fix.params["num_workers"]
    assert fix.location["after"].strip() == (f"loader = DataLoader(dataset, batch_size=16, shuffle=True, "
                                             f"num_workers={workers}, persistent_workers=True)")


VALIDATES_IN_TRAIN_MODE = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x, y = torch.randn(256, 16), torch.randint(0, 3, (256,))
net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
for epoch in range(4):
    for i in range(0, 192, 32):
        opt.zero_grad()
        F.cross_entropy(net(x[i:i + 32]), y[i:i + 32]).backward()
        opt.step()
    total = 0.0
    with torch.no_grad():
        for i in range(192, 256, 32):
            total += F.cross_entropy(net(x[i:i + 32]), y[i:i + 32]).item()
"""


def test_eval_mode_fix_wraps_the_scripts_own_validation_block(write_script):
    path = write_script(VALIDATES_IN_TRAIN_MODE)
    report = run_script(path).report
    fix = report.by_code("eval_mode_missing").fixes[0]
    assert fix.location is not None and fix.location["line"] == 15
    assert fix.location["before"].startswith("    with torch.no_grad():")
    after = fix.location["after"].splitlines()
    assert after[0] == "    net.eval()" and after[-1] == "    net.train()"  # the script's own name, its indent
    diff = unified_diff(report, path.parent)
    assert "+    net.eval()\n     with torch.no_grad():" in diff and "+    net.train()" in diff


def test_replace_layer_keeps_the_place_and_prefix():
    from torchdoctor.rules._edits import replace_layer

    statement = ("model = nn.Sequential(\n    nn.Linear(4, 8), nn.Sigmoid(),\n"
                 "    nn.Linear(8, 3), nn.Softmax(dim=1),  # p\n)")
    assert replace_layer(statement, "Softmax") == statement.replace("nn.Softmax(dim=1)", "nn.Identity()")
    # the last Sigmoid is the output layer: a hidden one stays
    assert replace_layer("net = nn.Sequential(nn.Sigmoid(), nn.Linear(2, 1), nn.Sigmoid())", "Sigmoid") == \
        "net = nn.Sequential(nn.Sigmoid(), nn.Linear(2, 1), nn.Identity())"
    assert replace_layer("        self.out = torch.nn.Sigmoid()", "Sigmoid") == "        self.out = torch.nn.Identity()"
    assert replace_layer("model = make_model()", "Softmax") is None


def test_unwrap_call_gives_the_loss_the_tensor_inside():
    from torchdoctor.rules._edits import unwrap_call

    assert unwrap_call("    loss = criterion(F.softmax(model(x), dim=1), y)", "softmax") == \
        "    loss = criterion(model(x), y)"
    assert unwrap_call("loss = F.cross_entropy(logits.softmax(dim=1), y)", "softmax") == \
        "loss = F.cross_entropy(logits, y)"
    assert unwrap_call("loss = bce(torch.sigmoid(out).squeeze(1), y)", "sigmoid") == "loss = bce(out.squeeze(1), y)"
    assert unwrap_call("loss = criterion(model(x), y)", "softmax") is None


SOFTMAX_IN_THE_LOSS = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x, y = torch.randn(256, 16), torch.randint(0, 4, (256,))
net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for epoch in range(3):
    for i in range(0, 256, 32):
        opt.zero_grad()
        loss = F.cross_entropy(F.softmax(net(x[i:i + 32]), dim=1), y[i:i + 32])
        loss.backward()
        opt.step()
"""

SOFTMAX_LAYER = SOFTMAX_IN_THE_LOSS.replace(
    "nn.Linear(32, 4))", "nn.Linear(32, 4), nn.Softmax(dim=1))").replace(
    "F.softmax(net(x[i:i + 32]), dim=1)", "net(x[i:i + 32])")


def test_double_softmax_fix_rewrites_the_loss_call_or_the_output_layer(write_script):
    fix = run_script(write_script(SOFTMAX_IN_THE_LOSS)).report.by_code("double_softmax").fixes[0]
    assert fix.location["line"] == 12
    assert fix.location["after"] == "        loss = F.cross_entropy(net(x[i:i + 32]), y[i:i + 32])"
    fix = run_script(write_script(SOFTMAX_LAYER, "layer.py")).report.by_code("double_softmax").fixes[0]
    assert fix.location["line"] == 7 and fix.location["after"].endswith("nn.Linear(32, 4), nn.Identity())")
    assert fix.snippet == fix.location["after"]
