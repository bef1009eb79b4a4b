"""What `torchdoctor run` costs over a whole process: start-up, import, the run, the report.

    python benchmarks/whole_run.py [--pairs 5] [--baseline DIR] [-- SCRIPT [ARGS ...]]

Runs `python SCRIPT` and `python -m torchdoctor run SCRIPT` in turn (and, with `--baseline DIR`,
the same under the torchdoctor package in DIR: `git archive HEAD~1 torchdoctor | tar -x -C DIR`),
one warm-up of each first, then `--pairs` rounds with the order rotated each round; each ratio is a
round's wall time over plain's in the same round, quoted as the median with the rounds' range.
The script defaults to benchmarks/ten_second_run.py (about ten seconds on two cores). Byte-compiled
files are allowed (pip's install writes them; PYTHONDONTWRITEBYTECODE would make every start
compile torchdoctor's sources again, +0.2 s).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def with_path(env: dict[str, str], package: Path) -> dict[str, str]:
    """`env` with `package` first on PYTHONPATH: that directory's torchdoctor is the one imported."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(package.resolve()), env.get("PYTHONPATH")]))}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the process and its children, exit status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also `torchdoctor run` with the torchdoctor package in DIR (an older commit's)")
    parser.add_argument("script", nargs=argparse.REMAINDER, help="the script and its arguments")
    args = parser.parse_args()
    script = [a for a in args.script if a != "--"] or [str(HERE / "ten_second_run.py")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ours = with_path(env, REPO)
    commands = {"plain": ([sys.executable, *script], env),
                "torchdoctor run": ([sys.executable, "-m", "torchdoctor", "run", *script], ours)}
    if args.baseline is not None:
        commands["run (baseline)"] = ([sys.executable, "-m", "torchdoctor", "run", *script],
                                      with_path(env, args.baseline))
    names = list(commands)
    for name in names:  # warm-up: the page cache, the byte-compiled files
        timed(*commands[name])
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.pairs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu, status = timed(*commands[name])
            if status != 0:
                sys.exit(f"whole_run: {name} exited {status}: {' '.join(commands[name][0])}")
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(f"{' '.join(script)}: {args.pairs} rounds after a warm-up of each, order rotated")
    for name in names:
        ratios = [w / p for w, p in zip(walls[name], walls["plain"], strict=True)]
        cpu_ratios = [c / p for c, p in zip(cpus[name], cpus["plain"], strict=True)]
        print(f"  {name:16s} wall {statistics.median(walls[name]):6.2f} s  {statistics.median(ratios):5.3f}x "
              f"(rounds {min(ratios):5.3f}-{max(ratios):5.3f}x)   CPU {statistics.median(cpus[name]):6.2f} s  "
              f"{statistics.median(cpu_ratios):5.3f}x")


if __name__ == "__main__":
    main()
