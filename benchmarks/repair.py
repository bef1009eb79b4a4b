"""How often torchdoctor's advice heals a run: every faulty example under `torchdoctor fix` and
under `torchdoctor run --heal`.

    python benchmarks/repair.py            # every faulty example, both ways
    python benchmarks/repair.py -v         # and each run's findings

Under `fix`, a run ends healthy when the finding it was run for is gone, nothing at warning or
above is left, the script exits 0, its final loss is below its first, and its validation loss
(where there is one) is no worse than before the fix.

`--heal` acts only on a run that blows up (non-finite losses or gradients, a gradient spike, a loss
climbing away): the examples of those findings are its share, the others are left as they are and
shown as "-". Such a run is healed when its finding is gone from the problems (answered in flight:
lowered to info, see rules/healed.settle), no problem is left that the plain run did not have,
the script exits 0, its final loss is below its first and validation is no worse.

Each script runs in this one process, on one CPU thread, its output swallowed. Printed: one row
per example (fixed? healed in flight?) and the totals.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: a torchdoctor placed there is the one measured

import torch  # noqa: E402

from torchdoctor.execfile import prepare_script  # noqa: E402
from torchdoctor.repair import fix_script  # noqa: E402
from torchdoctor.repair.loop import summarize  # noqa: E402
from torchdoctor.rules.healed import ANSWERS  # noqa: E402
from torchdoctor.session import Doctor  # noqa: E402

HEAL_SCOPE = frozenset().union(*ANSWERS.values())  # the findings --heal answers in flight

EXAMPLES = ROOT / "examples"

# (script, its arguments, the finding it demonstrates)
FAULTY = [
    ("exploding_gradients.py", ("--epochs", "2"), "exploding_gradients"),
    ("divergence.py", ("--epochs", "2"), "divergence"),
    ("nan_input.py", ("--epochs", "1"), "nonfinite_loss"),
    ("nan_custom_loss.py", ("--epochs", "1"), "nonfinite_loss"),
    ("nonfinite_gradient.py", ("--epochs", "1"), "nonfinite_gradient"),
    ("vanishing_gradients.py", ("--epochs", "1"), "vanishing_gradients"),
    ("loss_plateau.py", (), "loss_plateau"),
    ("overfitting.py", (), "overfitting"),
    ("dead_relu.py", (), "dead_units"),
    ("saturated_tanh.py", (), "saturated_activations"),
    ("frozen_backbone.py", (), "frozen_parameters"),
    ("missing_zero_grad.py", (), "missing_zero_grad"),
    ("double_softmax.py", (), "double_softmax"),
    ("raw_pixels.py", (), "unnormalized_input"),
    ("no_eval_mode.py", (), "eval_mode_missing"),
    ("memory_leak.py", (), "memory_leak"),
    ("slow_loader.py", (), "dataloader_bottleneck"),
]


def ends_healthy(code: str, before, after, *, allowed: tuple[str, ...] = ()) -> bool:
    """The finding gone, nothing else wrong (but the `allowed` problems), exit 0, the loss below its
    start, validation no worse."""
    if code in after.problems or after.script_status != 0:
        return False
    if any(c not in allowed for c in after.problems):
        return False
    if after.first_loss is None or after.last_loss is None or not math.isfinite(after.last_loss):
        return False
    if not after.last_loss < after.first_loss:
        return False
    if before.val_loss is not None and math.isfinite(before.val_loss):
        return after.val_loss is not None and after.val_loss <= before.val_loss * 1.02
    return True


def quietly(call):
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return call()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="print each run's problems")
    parser.add_argument("--tries", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, fixed, healed, in_scope, start = [], 0, 0, 0, time.perf_counter()
    for script, script_args, code in FAULTY:
        target = prepare_script(str(EXAMPLES / script))
        result = quietly(lambda: fix_script(target, script_args, tries=args.tries))  # noqa: B023
        before, after = result.runs[0], result.runs[-1]
        ok_fix = bool(result.attempts) and ends_healthy(code, before, after)
        heal_cell = "-"
        if code in HEAL_SCOPE:
            heal_run = quietly(lambda: Doctor(print_report=False, heal=True).run(target, list(script_args)))  # noqa: B023
            ok_heal = ends_healthy(code, before, summarize("heal", heal_run), allowed=tuple(before.problems))
            in_scope += 1
            healed += ok_heal
            heal_cell = "yes" if ok_heal else "no"
        fixed += ok_fix
        tried = ", ".join(f"{a['fix']}" + ("" if a.get("kept", True) else " (undone)") for a in result.attempts)
        tried = tried or "no fix applied from outside"
        rows.append((script.removesuffix(".py"), code, "yes" if ok_fix else "no", tried, heal_cell))
        print(f"{script}: fix {'ok' if ok_fix else 'no'} ({tried}), heal {heal_cell}", file=sys.stderr)
        if args.verbose:
            for run in result.runs:
                print(f"    {run.label}: {run.problems or 'healthy'}", file=sys.stderr)
    n = len(FAULTY)
    print("| example | finding | healthy after `fix` | fixes applied | healthy under `--heal` |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"| **total** | | **{fixed}/{n}** | | **{healed}/{in_scope}** |")
    print(f"\n{n} examples in {time.perf_counter() - start:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
