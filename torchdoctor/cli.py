"""Command line: `torchdoctor run | report | rules | explain`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import FAIL_ON_STATUS

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
@click.option("-q", "--quiet", is_flag=True, help="Do not print the report (use with --json).")
@click.option("-v", "--verbose", is_flag=True, help="Show info findings and full evidence.")
@click.argument("target", metavar="SCRIPT|MODULE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(module: bool, json_path: str | None, fail_on: str | None, disable: tuple[str, ...],
        settings: tuple[str, ...], config_path: str | None, memory_budget: str | None, memory_report: bool,
        gradient_report: bool, html_path: str | None, live: bool | None, quiet: bool, verbose: bool,
        target: str, args: tuple[str, ...]) -> int:
    """Run a training script unchanged and diagnose it.

    Everything after SCRIPT belongs to the script: torchdoctor run train.py --epochs 3
    """
    from .config import ConfigError, build_config, find_pyproject, read_pyproject_table
    from .execfile import BadTarget, prepare_module, prepare_script

    json_target = check_output_path(json_path, "--json") if json_path else None
    html_target = check_output_path(html_path, "--html") if html_path else None
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
    options = {"memory_report": memory_report, "gradient_report": gradient_report, "html_path": html_target,
               "live": live if live is not None else (not quiet and sys.stdout.isatty() and sys.stderr.isatty())}
    from .session import Doctor

    doctor = Doctor(config=config, json_path=json_target, print_report=not quiet, verbose=verbose, **options)
    return doctor.run(prepared, list(args)).status


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

    table = Table(show_lines=False, box=None, pad_edge=False)
    table.add_column("code", style="bold")
    table.add_column("severity")
    table.add_column("what it finds")
    table.add_column("thresholds (defaults)", style="dim")
    for r in all_rules():
        params = ", ".join(f"{k}={p.default:g}" for k, p in r.params.items())
        table.add_row(r.code, r.severity.label, r.summary, params)
    Console().print(table)


@cli.command()
@click.argument("code")
def explain(code: str) -> None:
    """Explain one diagnosis: what it finds, why it matters, what to do."""
    from .rules import REGISTRY

    rule = REGISTRY.get(code)
    if rule is None:
        import difflib

        close = difflib.get_close_matches(code, list(REGISTRY), n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (see `torchdoctor rules`)"
        raise BadInput(f"unknown finding code {code!r}{hint}")
    click.echo(f"{rule.code} ({rule.severity.label}): {rule.summary}\n")
    click.echo(rule.explanation)
    if rule.params:
        click.echo("\nThresholds (change with --set CODE.NAME=VALUE or [tool.torchdoctor." + rule.code + "]):")
        for name, p in rule.params.items():
            click.echo(f"  {name} = {p.default:g}    {p.help}")
    click.echo(f"\nSwitch off with --disable {rule.code} or [tool.torchdoctor] disable = [\"{rule.code}\"].")


def main(argv: list[str] | None = None) -> int:
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
