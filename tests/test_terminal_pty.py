"""What the user sees in a real terminal: `torchdoctor run` in a pseudo-terminal (120x40), its bytes
played on a pyte screen. The script's own progress bars must look as they do without torchdoctor, and
torchdoctor's live line must show for a script that draws none."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

pyte = pytest.importorskip("pyte")
pytest.importorskip("tqdm")

ROOT = Path(__file__).resolve().parent.parent
COLUMNS, LINES = 120, 40

TRAIN = """
import time
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Linear(8, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)


def step():
    loss = F.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 2, (16,)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

TQDM_SCRIPT = TRAIN + """
from tqdm import tqdm

for epoch in range(2):
    for i in tqdm(range(40), desc=f"epoch {epoch}", bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}",
                  mininterval=0):
        step()
        time.sleep(0.004)
print("done")
"""

CR_SCRIPT = TRAIN + """
for i in range(30):  # long enough for torchdoctor's live line to be drawn first
    step()
    time.sleep(0.02)
print("warmed up")
for i in range(60):
    step()
    print(f"\\rstep {i}", end="")
    time.sleep(0.004)
print()
print("done")
"""

PLAIN_SCRIPT = TRAIN + """
for epoch in range(3):
    for i in range(20):
        step()
        time.sleep(0.02)
    print(f"epoch {epoch} finished")
"""


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 120.0) -> bytes:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; every byte it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "OMP_NUM_THREADS": "1"}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "PYTHONUNBUFFERED"):
        env.pop(name, None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True,
                            start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child side is closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"{args} ran past {timeout} s")
        proc.wait(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks)


def screen_of(data: bytes) -> list[str]:
    screen = pyte.Screen(COLUMNS, LINES)
    pyte.ByteStream(screen).feed(data)
    return [line.rstrip() for line in screen.display]


def without_escapes(data: bytes) -> str:
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", data).decode(errors="replace")


def plain_and_doctored(tmp_path: Path, source: str) -> tuple[bytes, bytes]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    plain = run_in_terminal([sys.executable, str(script)], tmp_path)
    doctored = run_in_terminal([sys.executable, "-m", "torchdoctor", "run", "--live", str(script)], tmp_path)
    return plain, doctored


def test_the_scripts_tqdm_bars_look_as_they_do_without_torchdoctor(tmp_path):
    plain, doctored = plain_and_doctored(tmp_path, TQDM_SCRIPT)
    bars = [line for line in screen_of(plain) if line.startswith("epoch ")]
    assert len(bars) == 2 and all("100%|" in bar and "40/40" in bar and "█" in bar for bar in bars), bars
    assert doctored.rfind("torchdoctor ▸".encode()) < doctored.find(b"epoch 0:")  # out of the bar's way
    seen = screen_of(doctored)
    assert [line for line in seen if line.startswith("epoch ")] == bars  # one line each, no '#', no repeats
    assert seen[seen.index(bars[1]) + 1] == "done"
    assert not any("#" in line for line in seen if "epoch" in line)
    assert not any("torchdoctor ▸" in line for line in seen)
    assert any(line.startswith("torchdoctor train.py") for line in seen)  # and the report after


def test_a_hand_written_carriage_return_line_looks_as_it_does_without_torchdoctor(tmp_path):
    plain, doctored = plain_and_doctored(tmp_path, CR_SCRIPT)
    lines = [line for line in screen_of(plain) if line]
    assert lines == ["warmed up", "step 59", "done"], lines
    assert "torchdoctor ▸" in without_escapes(doctored)  # the live line was there, then stepped aside
    assert doctored.rfind("torchdoctor ▸".encode()) < doctored.find(b"\rstep 0")  # and never came back
    seen = screen_of(doctored)
    assert seen[:3] == lines
    assert not any("torchdoctor ▸" in line for line in seen)
    assert any(line.startswith("torchdoctor train.py") for line in seen)


def test_the_live_line_shows_for_a_script_without_a_progress_bar_and_goes_away(tmp_path):
    plain, doctored = plain_and_doctored(tmp_path, PLAIN_SCRIPT)
    drawn = without_escapes(doctored)
    steps = [int(n) for n in re.findall(r"torchdoctor ▸ step (\d+)", drawn)]
    assert steps and max(steps) >= 20 and "loss " in drawn, steps  # drawn while it ran, not only at the start
    expected = [line for line in screen_of(plain) if line]
    assert expected == [f"epoch {n} finished" for n in range(3)]
    seen = screen_of(doctored)
    assert seen[:3] == expected  # the script's lines where they would be, whole
    assert not any("torchdoctor ▸" in line for line in seen)  # erased at the end
    assert any(line.startswith("torchdoctor train.py") for line in seen)  # and the report
