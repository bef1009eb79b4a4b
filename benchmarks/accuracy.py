"""How often torchdoctor is right: the calibration corpus (tests/calibration/) run end to end.

    python benchmarks/accuracy.py                 # the whole corpus
    python benchmarks/accuracy.py --only healthy  # the healthy scripts alone
    python benchmarks/accuracy.py --only faulty   # the faulty twins alone
    python benchmarks/accuracy.py -v              # and every script's findings

Each script runs in this one process under `Doctor(print_report=False).run(path, args)` (what
`torchdoctor run` does), on one CPU thread, its own output swallowed. Each report is judged
against tests/calibration/manifest.py by tests/calibration/judge.py, the same judgement as
tests/test_calibration.py. Printed: faulty twins detected (the right code at the right
severity), with the right step (where the manifest gives bounds), the cause leading (the
expected finding is the first of warning or above), the consequences carrying their cause;
healthy scripts clean (nothing at warning or above); detected per diagnosis; then one line per script that failed its
expectation, and the wall time. Exit status 1 when any script failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: a torchdoctor placed there is the one judged

import torch  # noqa: E402

from tests.calibration.judge import Verdict, describe, judge  # noqa: E402
from tests.calibration.manifest import CASES, Case  # noqa: E402
from torchdoctor.session import Doctor  # noqa: E402


def run_case(case: Case) -> tuple[Verdict, float]:
    """One script under torchdoctor, in this process; its stdout and stderr are swallowed."""
    start = time.perf_counter()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        result = Doctor(print_report=False).run(str(case.path), list(case.args))
    return judge(case, result.report.findings, result.script_status), time.perf_counter() - start


def ratio(hits: int, total: int) -> str:
    return f"{hits}/{total}" + (f" ({100 * hits / total:.0f}%)" if total else "")


def table(verdicts: list[Verdict]) -> list[str]:
    faulty = [v for v in verdicts if not v.case.healthy]
    healthy = [v for v in verdicts if v.case.healthy]
    stepped = [v for v in faulty if v.step_ok is not None]
    caused = [v for v in faulty if v.case.caused_by]
    rows = []
    if faulty:
        rows += [("faulty detected (right code)", ratio(sum(v.detected for v in faulty), len(faulty))),
                 ("  at the right step", ratio(sum(bool(v.step_ok) for v in stepped), len(stepped))),
                 ("  cause leads the report", ratio(sum(v.leads for v in faulty), len(faulty))),
                 ("  consequences carry caused_by", ratio(sum(v.causes_ok for v in caused), len(caused)))]
    codes = sorted({v.case.code for v in faulty if v.case.code})
    for code in codes:  # one row per diagnosis the corpus has a faulty twin of
        mine = [v for v in faulty if v.case.code == code]
        rows.append((f"  {code}", ratio(sum(v.detected for v in mine), len(mine))))
    if healthy:
        rows.append(("healthy clean (nothing >= warning)", ratio(sum(v.clean for v in healthy), len(healthy))))
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'measure'.ljust(width)} | result |", f"|{'-' * (width + 2)}|--------|"]
    return lines + [f"| {name.ljust(width)} | {value} |" for name, value in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["healthy", "faulty"], help="run one half of the corpus")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every script's findings")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cases = [c for c in CASES if args.only is None or c.healthy == (args.only == "healthy")]
    verdicts, start = [], time.perf_counter()
    for case in cases:
        verdict, seconds = run_case(case)
        verdicts.append(verdict)
        mark = "ok  " if verdict.passed else "FAIL"
        print(f"{mark} {seconds:5.1f}s {case.name}", file=sys.stderr)
        if args.verbose:
            print(describe(verdict.findings), file=sys.stderr)
    wall = time.perf_counter() - start
    print("\n".join(table(verdicts)))
    failed = [v for v in verdicts if not v.passed]
    if failed:
        print(f"\n{len(failed)} failed:")
        for v in failed:
            found = ", ".join(f"{f.code}[{f.severity.label}]@{f.step}" for f in v.findings) or "no findings"
            print(f"- {v.case.name}: {'; '.join(v.problems)} (found: {found})")
    print(f"\n{len(verdicts)} scripts in {wall:.0f} s wall")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
