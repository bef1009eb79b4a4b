"""What a run pays for at start-up and at the end: nothing heavy is imported unless the report that
needs it was asked for (matplotlib for the HTML plots, psutil only where /proc is missing)."""

from __future__ import annotations

import json

from tests.conftest import cli

# Registers, at the script's start, a check that runs at interpreter exit: after torchdoctor's
# report, so it sees everything the whole process imported.
SCRIPT = """
import atexit, json, sys, torch

def modules():
    with open(sys.argv[1], "w") as f:
        json.dump({name: name in sys.modules for name in ("matplotlib", "psutil", "rich")}, f)

atexit.register(modules)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
for _ in range(30):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
"""


def _imported(tmp_path, *options: str) -> dict[str, bool]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "modules.json"
    result = cli("run", *options, str(script), str(out))
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_the_terminal_report_needs_rich_only(tmp_path):
    assert _imported(tmp_path) == {"matplotlib": False, "psutil": False, "rich": True}


def test_a_json_report_alone_imports_no_renderer(tmp_path):
    imported = _imported(tmp_path, "--quiet", "--json", str(tmp_path / "report.json"))
    assert (tmp_path / "report.json").exists()
    assert imported == {"matplotlib": False, "psutil": False, "rich": False}
