"""Command line: `torchdoctor run | fix | report | rules | explain`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import FAIL_ON_STATUS
from .execfile import script_argv_at_exit

BAD_INPUT_STATUS = 2
SEVERITIES = ["critical", "error", "warning", "info"]


class BadInput(click.ClickException):
    """One clear line, status 2, no traceback."""

    exit_code = BAD_INPUT_STATUS

    def show(self, file: Any = None) -> None:
        click.echo(f"torchdoctor: error: {self.format_message()}", err=True)


def check_output_path(path: str, option: str) -> Path:
    """Fail before the script runs if the report could not be written (and resolve it, since
    the script may chdir)."""
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise BadInput(f"{option} {path}: is a directory")
    parent = target.parent
    if not parent.is_dir():
        raise BadInput(f"{option} {path}: directory {parent} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise BadInput(f"{option} {path}: file is not writable")
    if not target.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {path}: directory {parent} is not writable")
    return target


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="torchdoctor")
def cli() -> None:
    """torchdoctor diagnoses PyTorch training runs: what went wrong, where, and the fix."""


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog=f"Exit status: the script's own; {FAIL_ON_STATUS} when --fail-on is given and a finding "
    f"at or above that severity was made; {BAD_INPUT_STATUS} for bad input to torchdoctor itself.",
)
@click.option("-m", "module", is_flag=True, help="Run TARGET as a module, like `python -m`.")
@click.option("--json", "json_path", metavar="PATH", help="Write the JSON report (schema torchdoctor.report/1).")
@click.option("--fail-on", type=click.Choice(SEVERITIES, case_sensitive=False),
              help=f"Exit with status {FAIL_ON_STATUS} if a finding of this severity or worse was made.")
@click.option("--disable", "disable", multiple=True, metavar="CODE", help="Switch a rule off (repeatable).")
@click.option("--set", "settings", multiple=True, metavar="CODE.THRESHOLD=VALUE",
              help="Change a rule's threshold, e.g. --set exploding_gradients.growth_factor=100.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="PYPROJECT",
              help="Read [tool.torchdoctor] from this file (default: the nearest pyproject.toml above the "
              "script).")
@click.option("--memory-budget", metavar="SIZE",
              help="Check that a training step fits in SIZE (e.g. 16GiB, 512MB): will it fit on that GPU?")
@click.option("--memory-report", is_flag=True, help="Print the memory report: per-module table and key numbers.")
@click.option("--gradient-report", is_flag=True,
              help="Print the gradient report: per-layer norms, update ratios, trend.")
@click.option("--html", "html_path", metavar="PATH", help="Write the HTML report (findings and plots, one file).")
@click.option("--live/--no-live", default=None,
              help="Live progress while the script runs (default: on in a terminal, off with -q or when output "
              "is redirected).")
@click.option("--patch", "patch_path", metavar="FILE",
              help="Write the fixes that change a line of the script as a unified diff (git apply / patch -p1).")
@click.option("--heal", is_flag=True,
              help="Act inside the run: skip a step whose gradients are NaN/Inf, roll back to the last good state "
              "and lower the lr when the loss stays non-finite; every action is reported (healed).")
@click.option("--no-probe", "probes_off", multiple=True, metavar="NAME",
              help="Switch a probe off (repeatable): data, losses, schedulers, sources, clipping, ddp, workers; "
              "README's overhead table says what each costs and which findings need it.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the report (use with --json).")
@click.option("-v", "--verbose", is_flag=True, help="Show info findings and full evidence.")
@click.argument("target", metavar="SCRIPT|MODULE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(module: bool, json_path: str | None, fail_on: str | None, disable: tuple[str, ...],
        settings: tuple[str, ...], config_path: str | None, memory_budget: str | None, memory_report: bool,
        gradient_report: bool, html_path: str | None, live: bool | None, patch_path: str | None, heal: bool,
        probes_off: tuple[str, ...], quiet: bool, verbose: bool, target: str, args: tuple[str, ...]) -> int:
    """Run a training script unchanged and diagnose it.

    Everything after SCRIPT belongs to the script: torchdoctor run train.py --epochs 3
    """
    if target.startswith("-") and not Path(target).exists():
        raise BadInput(unknown_option(target, run))
    json_target = check_output_path(json_path, "--json") if json_path else None
    html_target = check_output_path(html_path, "--html") if html_path else None
    patch_target = check_output_path(patch_path, "--patch") if patch_path else None
    started_in = Path.cwd()  # the patch's paths are relative to it, even if the script chdirs
    prepared, config = prepare_target(target, module, config_path, disable, settings, fail_on, memory_budget)
    options = {"memory_report": memory_report, "gradient_report": gradient_report, "html_path": html_target,
               "heal": heal,
               "live": live if live is not None else (not quiet and sys.stdout.isatty() and sys.stderr.isatty())}
    from .session import OPTIONAL_PROBES, Doctor

    unknown = sorted(set(probes_off) - set(OPTIONAL_PROBES))
    if unknown:
        raise BadInput(f"--no-probe {unknown[0]}: no such probe (one of: {', '.join(OPTIONAL_PROBES)})")
    doctor = Doctor(config=config, json_path=json_target, print_report=not quiet, verbose=verbose,
                    probes_off=probes_off, **options)
    try:
        return doctor.run(prepared, list(args)).status
    finally:
        if patch_target is not None and doctor.report is not None and _is_main_rank():
            write_patch(doctor.report, patch_target, started_in)
        note = misplaced_options_note(args, target, module)
        if note and _is_main_rank():
            click.echo(note, err=True)


def write_patch(report: Any, target: Path, base: Path) -> None:
    """The fixes' edits as a diff; none: nothing written, one line says so. Never raises."""
    try:
        from .render.patch import unified_diff

        diff = unified_diff(report, base)
        if not diff:
            click.echo(f"torchdoctor: no fix changes a line of the script; {target} not written", err=True)
            return
        target.write_text(diff, encoding="utf-8")
    except Exception as exc:
        click.echo(f"torchdoctor: could not write {target}: {exc}", err=True)


def _option_names(command: click.Command) -> dict[str, bool]:
    """Every option name of `command` (`--json`, `-q`, `--no-live`), with whether it takes a value."""
    names: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = not (param.is_flag or param.count)
    return names


def unknown_option(arg: str, command: click.Command) -> str:
    """`--jsn` where the script was expected: an option torchdoctor does not have, not a file."""
    import difflib

    name = arg.split("=", 1)[0]
    known = [n for n in _option_names(command) if n.startswith("--")]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"see `torchdoctor {command.name} --help`"
    return f"no such option: {name} ({hint})"


def misplaced_options_note(args: tuple[str, ...] | list[str], target: str, module: bool) -> str | None:
    """Options of `run` found among the script's arguments went to the script, as they must
    (everything after SCRIPT is the script's); say so once, and how to give them to torchdoctor."""
    options = _option_names(run)  # -h/--help is not among them: after the script it is the script's
    found: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name in options:
            takes_value = options[name] and "=" not in arg and i + 1 < len(items)
            found.append(f"{arg} {items[i + 1]}" if takes_value else arg)
            i += 1 if takes_value else 0
        i += 1
    if not found:
        return None
    shown = " ".join(found)
    script = f"-m {target}" if module else target
    them = "it" if len(found) == 1 else "them"
    return (f"torchdoctor: note: {', '.join(found)} went to {target} (everything after the script is the "
            f"script's). For torchdoctor, put {them} before the script: torchdoctor run {shown} {script} ...")


def _is_main_rank() -> bool:
    from .distributed import detect

    rank = detect()
    return rank is None or rank.is_main


@cli.command()
@click.argument("report_path", metavar="RUN.json", type=click.Path(dir_okay=False))
@click.option("--html", "html_path", metavar="PATH", help="Write the HTML report (findings and plots, one file).")
@click.option("--memory-report", is_flag=True, help="Also print the memory report.")
@click.option("--gradient-report", is_flag=True, help="Also print the gradient report.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the findings (with --html).")
@click.option("-v", "--verbose", is_flag=True, help="Show info findings and full evidence.")
def report(report_path: str, html_path: str | None, memory_report: bool, gradient_report: bool, quiet: bool,
           verbose: bool) -> None:
    """Show a saved JSON report (from `run --json`) again: in the terminal, or as HTML."""
    import json

    from . import jsonreport
    from .render import render

    html_target = check_output_path(html_path, "--html") if html_path else None
    try:
        data = json.loads(Path(report_path).read_text())
        saved = jsonreport.from_dict(data)
    except FileNotFoundError:
        raise BadInput(f"{report_path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{report_path}: not a JSON report ({exc})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{report_path}: {exc}") from None
    if html_target is not None:
        from .render.html import write_html

        write_html(data, html_target)
    render(saved, verbose=verbose, memory=memory_report, findings=not quiet, gradients=gradient_report)


@cli.command()
def rules() -> None:
    """List the diagnoses, their severity and thresholds."""
    from rich.console import Console
    from rich.table import Table

    from .rules import all_rules

    # Thresholds one to a line and never cut: every one readable in full at 80 columns, where the
    # severity goes under the code to leave the summary room.
    console = Console()
    narrow = console.width < 100
    rows = [(r, [f"{k}={threshold_text(p)}" for k, p in r.params.items()]) for r in all_rules()]
    widest = max((len(line) for _, lines in rows for line in lines), default=10)
    table = Table(box=None, pad_edge=False, padding=(0, 2, 1, 0))
    table.add_column("code" + ("\nseverity" if narrow else ""), no_wrap=True)
    if not narrow:
        table.add_column("severity", no_wrap=True)
    table.add_column("what it finds", ratio=1, min_width=16)
    table.add_column("thresholds (defaults)", style="dim", width=widest, overflow="fold")
    for r, lines in rows:
        code = f"[bold]{r.code}[/bold]" + (f"\n{r.severity.label}" if narrow else "")
        cells = [code] if narrow else [code, r.severity.label]
        table.add_row(*cells, r.summary, "\n".join(lines))
    console.print(table)


def threshold_text(param: Any) -> str:
    """A threshold as a person reads it: 1000, not 1000.0; 16 MiB, not 1.67772e+07."""
    value = float(param.default)
    if is_bytes(param):
        from .formatting import format_bytes

        return format_bytes(value)
    return str(int(value)) if value.is_integer() else repr(value)


def is_bytes(param: Any) -> bool:
    """A threshold in bytes: declared so (`unit`), or described so ("bytes per step ...")."""
    return getattr(param, "unit", None) == "bytes" or param.help.lower().startswith("bytes")


def find_rule_code(code: str, codes: list[str]) -> tuple[str | None, list[str]]:
    """The rule `code` names, in any case and with hyphens for underscores; else the closest
    codes, compared whole and word by word (`explode` is close to `exploding`, not to the whole
    of `exploding_gradients`)."""
    import difflib

    wanted = code.strip().lower().replace("-", "_").replace(" ", "_")
    if wanted in codes:
        return wanted, []

    def score(candidate: str) -> float:
        parts = [candidate, *candidate.split("_")]
        best = max(difflib.SequenceMatcher(None, wanted, part).ratio() for part in parts)
        return 1.0 if len(wanted) >= 4 and wanted in candidate else best

    scored = sorted(((score(c), c) for c in codes), key=lambda sc: (-sc[0], sc[1]))
    top = scored[0][0] if scored else 0.0
    return None, [c for s, c in scored if s >= max(0.7, top - 0.05)][:3]


@cli.command()
@click.argument("code")
def explain(code: str) -> None:
    """Explain one diagnosis: what it finds, why it matters, what to do (CODE in any case)."""
    from .rules import REGISTRY

    found, close = find_rule_code(code, list(REGISTRY))
    if found is None:
        names = ", ".join(close[:-1]) + " or " + close[-1] if len(close) > 1 else "".join(close)
        hint = f" (did you mean {names}?)" if close else " (see `torchdoctor rules`)"
        raise BadInput(f"unknown finding code {code!r}{hint}")
    rule = REGISTRY[found]
    click.echo(f"{rule.code} ({rule.severity.label}): {rule.summary}\n")
    click.echo(rule.explanation)
    if rule.params:
        click.echo("\nThresholds (change with --set CODE.NAME=VALUE or [tool.torchdoctor." + rule.code + "]):")
        for name, p in rule.params.items():
            shown = threshold_text(p)
            if is_bytes(p):
                shown += f" ({float(p.default):.0f} bytes, the unit --set takes)"
            click.echo(f"  {name} = {shown}    {p.help}")
    click.echo(f"\nSwitch off with --disable {rule.code} or [tool.torchdoctor] disable = [\"{rule.code}\"].")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog=f"Exit status: 0 when the last run is healthy (healed, or healthy from the start); 1 when it "
    f"is not; {BAD_INPUT_STATUS} for bad input to torchdoctor itself.",
)
@click.option("--tries", default=3, show_default=True, type=click.IntRange(1, 20), metavar="N",
              help="Apply up to N fixes in turn, the earlier ones kept, until a run is healthy.")
@click.option("--json", "json_path", metavar="PATH",
              help='Write {"attempts": [...], "healed": bool, "patch": "..."}.')
@click.option("--patch", "patch_path", metavar="FILE",
              help="Write the applied fixes that change a line of the script as a unified diff.")
@click.option("--disable", "disable", multiple=True, metavar="CODE", help="Switch a rule off (repeatable).")
@click.option("--set", "settings", multiple=True, metavar="CODE.THRESHOLD=VALUE", help="Change a rule's threshold.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="PYPROJECT",
              help="Read [tool.torchdoctor] from this file (default: the nearest pyproject.toml above the script).")
@click.option("--memory-budget", metavar="SIZE",
              help="Check that a training step fits in SIZE (e.g. 16GiB): fix a step that does not.")
@click.option("-m", "module", is_flag=True, help="Run TARGET as a module, like `python -m`.")
@click.argument("target", metavar="SCRIPT|MODULE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fix(tries: int, json_path: str | None, patch_path: str | None, disable: tuple[str, ...],
        settings: tuple[str, ...], config_path: str | None, memory_budget: str | None, module: bool, target: str,
        args: tuple[str, ...]) -> int:
    """Run a script, apply the worst finding's fix from outside the code, re-run, compare.

    The fix is applied to PyTorch for the re-run (the optimizer's param groups, step and forward
    hooks, the DataLoader's arguments); the script's file is never edited. Everything after SCRIPT
    belongs to the script: torchdoctor fix train.py --epochs 3
    """
    import json

    if target.startswith("-") and not Path(target).exists():
        raise BadInput(unknown_option(target, fix))
    json_target = check_output_path(json_path, "--json") if json_path else None
    patch_target = check_output_path(patch_path, "--patch") if patch_path else None
    started_in = Path.cwd()
    prepared, config = prepare_target(target, module, config_path, disable, settings, None, memory_budget)
    from .repair import fix_script
    from .repair.loop import table

    result = fix_script(prepared, list(args), config, tries, started_in,
                        on_run=lambda r: click.echo(f"torchdoctor fix: {r.label}: "
                                                    f"{', '.join(r.problems) or 'healthy'}", err=True))
    for line in result.cannot_apply:
        click.echo(f"torchdoctor fix: {line}: cannot apply from outside the code; skipped", err=True)
    click.echo(table(result), err=True)
    verdict = "healed" if result.attempts and result.healed else "healthy, nothing to fix" if result.healed \
        else "not healed"
    click.echo(f"torchdoctor fix: {verdict}", err=True)
    if json_target is not None:
        json_target.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if patch_target is not None and result.patch:
        patch_target.write_text(result.patch, encoding="utf-8")
    return 0 if result.healed else 1


def prepare_target(target: str, module: bool, config_path: str | None, disable: tuple[str, ...],
                   settings: tuple[str, ...], fail_on: str | None, memory_budget: str | None) -> tuple[Any, Any]:
    """The script (or module) to run and the settings for it: `--config`, else the nearest
    pyproject.toml above the script (the working directory's for a module), then the command line.
    Bad input of either kind is one line (BadInput)."""
    from .config import ConfigError, build_config, find_pyproject, read_pyproject_table
    from .execfile import BadTarget, prepare_module, prepare_script

    try:
        prepared = prepare_module(target) if module else prepare_script(target)
        if config_path:
            if not Path(config_path).is_file():
                raise BadInput(f"--config {config_path}: no such file")
            pyproject: Path | None = Path(config_path)
        else:
            start = Path(prepared.file).resolve().parent if not module else Path.cwd()
            pyproject = find_pyproject(start) or find_pyproject(Path.cwd())
        config = build_config(read_pyproject_table(pyproject), disable, settings, fail_on,
                              origin=str(pyproject or "pyproject.toml"), memory_budget=memory_budget)
    except (BadTarget, ConfigError) as exc:
        raise BadInput(str(exc)) from None
    return prepared, config


def main(argv: list[str] | None = None) -> int:
    with script_argv_at_exit(keep=argv is None):  # the command's own process ends with the script's argv
        try:
            result = cli.main(args=argv, prog_name="torchdoctor", standalone_mode=False)
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            return 1
        return result if isinstance(result, int) else 0
