"""The HTML report: one self-contained file a person can open anywhere, even offline, and forward.

It renders from the JSON report dict only (`jsonreport.to_dict(report)` or a saved report read
back), so a report saved on a training box renders the same later on a laptop. Everything the page
needs is inside it: CSS inline, plots as base64 PNG, no fonts, scripts or styles fetched from anywhere.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..formatting import fmt as compact
from ..formatting import format_bytes
from ..jsonreport import saved_problems
from ..report import cause_in, caveat, count_line, saved_view
from . import loss_plots, plots
from .plots import number
from .svg import sparkline

SEVERITIES = ("critical", "error", "warning", "info")
SHOWN_TASKS = ("classification", "detection", "segmentation", "generation")

CSS = """
:root { --red: #c0392b; --amber: #b7791f; --blue: #2c6fbb; --green: #1e8449; --dim: #666; }
* { box-sizing: border-box; }
body { font: 15px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222;
       max-width: 1040px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.meta, .note, .dim { color: var(--dim); }
.note { font-size: 13px; margin: 4px 0; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 14px 0; font-weight: 600; }
.banner.healthy { background: #e8f6ee; color: var(--green); border: 1px solid #b7e1c8; }
.banner.empty { background: #fdf6e3; color: var(--amber); border: 1px solid #f0dca8; }
.banner.problem { background: #fdecea; color: var(--red); border: 1px solid #f3b8b0; }
.banner.problem.warning { background: #fdf6e3; color: var(--amber); border-color: #f0dca8; }
.finding { border: 1px solid #ddd; border-left: 6px solid #999; border-radius: 6px; padding: 10px 14px;
           margin: 12px 0; }
.finding.sev-critical { border-left-color: var(--red); }
.finding.sev-error { border-left-color: #e74c3c; }
.finding.sev-warning { border-left-color: #f1c40f; }
.finding.sev-info { border-left-color: var(--blue); }
.finding.consequence { margin-left: 32px; border-style: dashed; border-left-style: solid; }
.cause { margin: 4px 0; font-size: 14px; color: #17728a; }
.badge { display: inline-block; font-size: 12px; font-weight: 700; letter-spacing: .04em; padding: 1px 7px;
         border-radius: 4px; color: #fff; background: #999; text-transform: uppercase; vertical-align: 1px; }
.badge.critical { background: var(--red); }
.badge.error { background: #e74c3c; }
.badge.warning { background: #f1c40f; color: #222; }
.badge.info { background: var(--blue); }
.code { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 700; margin-left: 6px; }
.where { color: #17728a; margin-left: 6px; font-size: 14px; }
.title { margin: 6px 0; font-weight: 600; }
.evidence { margin: 4px 0; padding: 0; list-style: none; font-size: 13px; color: #444; }
.evidence li { display: inline-block; margin: 0 14px 2px 0; }
.evidence .k { color: var(--dim); }
.fixes { margin: 8px 0 0; padding-left: 22px; }
.fixes li { margin: 6px 0; }
.action { font-family: ui-monospace, Menlo, Consolas, monospace; color: var(--green); font-weight: 700; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 4px; padding: 8px 10px; overflow-x: auto;
      font-size: 13px; margin: 6px 0; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; }
details { font-size: 13px; margin: 4px 0; }
summary { cursor: pointer; color: var(--dim); }
.small { font-size: 13px; }
.small ul { margin: 4px 0; padding-left: 20px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: 13px; color: var(--dim); margin-top: 4px; }
table.grads { border-collapse: collapse; width: 100%; font-size: 13px; }
table.grads th, table.grads td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right;
                                 white-space: nowrap; }
table.grads th { background: #fafafa; }
table.grads td.l, table.grads th.l { text-align: left; }
table.grads tr.flagged td { background: #fdecea; }
table.grads tr.flagged td.name { color: var(--red); font-weight: 700; }
svg.spark { vertical-align: middle; }
"""

# Lets a headless browser check that every plot decoded: the test reads these from the DOM.
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 100; });
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(loaded.length);
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Compact numbers (1.2e-05, 0.034, 12.5, 3.46e+09); NaN/Inf as the report spells them."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    v = number(value)
    if isinstance(value, str) and math.isnan(v) and value.lower() != "nan":
        return value
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return compact(v)  # as the terminal report writes it


def _bytes(value: Any) -> str:
    v = number(value)
    return format_bytes(v) if math.isfinite(v) else fmt(value)


# -- header -------------------------------------------------------------------------------------


def _script_name(run: dict[str, Any]) -> str:
    argv = run.get("argv") or []
    return os.path.basename(str(argv[0])) if argv else "watched run"


def _header(data: dict[str, Any]) -> str:
    run = data.get("run") or {}
    task = [run["task"]] if run.get("task") in SHOWN_TASKS else []  # "other": torchdoctor could not tell
    bits = [*task, f"{fmt(run.get('steps', 0))} steps"]
    if run.get("epochs") is not None:
        bits.append(f"{fmt(run['epochs'])} epochs")
    bits.append(f"device {run.get('device') or 'unknown'}")
    if run.get("duration_s") is not None:
        bits.append(f"{number(run['duration_s']):.1f} s")
    if run.get("exit_status") is not None:
        bits.append(f"exit status {run['exit_status']}")
    extra = [f"torch {run['torch_version']}"] if run.get("torch_version") else []
    for key, label in (("models", "model"), ("optimizers", "optimizer")):
        if run.get(key):
            extra.append(f"{label}: {', '.join(map(str, run[key]))}")
    args = " ".join(map(str, (run.get("argv") or [])[1:]))
    return (f"<header><h1>torchdoctor · {esc(_script_name(run))}"
            + (f" <span class=\"dim\"><code>{esc(args)}</code></span>" if args else "") + "</h1>"
            f"<div class=\"meta\">{esc(' · '.join(bits))}</div>"
            + (f"<div class=\"meta small\">{esc(' · '.join(extra))}</div>" if extra else "") + "</header>")


def _finite_series(data: dict[str, Any], *path: str) -> list[float]:
    node: Any = data
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return [v for v in (number(r[1]) for r in node or [] if isinstance(r, list) and len(r) > 1) if math.isfinite(v)]


def _banner(data: dict[str, Any]) -> str:
    """Healthy only when nothing at warning or above was found on enough steps of a run that was
    not interrupted (report.caveat); the count counts the cards below, as the terminal's does."""
    run = data.get("run") or {}
    steps, problems = int(run.get("steps") or 0), saved_problems(data)
    shown, hidden = saved_view(data.get("findings") or [])
    warned = caveat(steps, run.get("interrupted"))
    if problems:
        worst = min((str(p["severity"]) for p in problems), key=SEVERITIES.index)  # causes lead, not the worst
        lines = [("empty", warned)] if warned and run.get("interrupted") else []
        lines.append((f"problem {worst}", count_line(len(problems), worst, len(shown), len(hidden), "unfold below")))
    elif not steps:
        lines = [("empty", "nothing to diagnose: no optimizer.step() was observed")]
    else:
        loss = _finite_series(data, "metrics", "loss", "train")
        val = _finite_series(data, "metrics", "loss", "val_by_step")
        models = [(name, _finite_series(data, "metrics", "loss", "models", name))
                  for name in ((data.get("metrics") or {}).get("loss") or {}).get("models") or {}]
        numbers = ([f"{name} loss {fmt(vs[0])} → {fmt(vs[-1])}" for name, vs in models if vs] if len(models) > 1
                   else [f"loss {fmt(loss[0])} → {fmt(loss[-1])}"] if loss else []) + (
            [f"val loss {fmt(val[-1])}"] if val else [])
        lines = [("empty", warned + (" · " + ", ".join(numbers) if numbers else "")) if warned
                 else ("healthy", "✔ healthy: " + ", ".join([f"{fmt(steps)} steps", *numbers]))]
    out = "".join(f"<div class=\"banner {esc(kind)}\">{esc(text)}</div>" for kind, text in lines)
    if hidden and not problems:
        out += f"<p class=\"note\">{esc(count_line(0, None, 0, len(hidden), 'unfold below'))}</p>"
    return out


# -- findings -----------------------------------------------------------------------------------


def _scalar(key: str, value: Any) -> str | None:
    """One evidence value as text, or None when it is a series or structure (shown raw, folded away)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith("_bytes"):
        return format_bytes(value)
    if isinstance(value, (bool, int, float, str)):
        return fmt(value) if not isinstance(value, str) else value
    if isinstance(value, list) and 0 < len(value) <= 4 and all(isinstance(x, (str, int, float)) for x in value):
        return ", ".join(_scalar(key, x) or "" for x in value)
    return None


def _evidence(evidence: dict[str, Any]) -> str:
    items, rest = [], {}
    for key, value in (evidence or {}).items():
        if value is None or key == "step":  # the step is in the finding's heading already
            continue
        shown = _scalar(key, value)
        if shown is None:
            rest[key] = value
            continue
        label = key.removesuffix("_bytes").replace("_", " ")
        items.append(f"<li><span class=\"k\">{esc(label)}:</span> {esc(shown)}</li>")
    out = f"<ul class=\"evidence\">{''.join(items)}</ul>" if items else ""
    if rest:
        raw = json.dumps(rest, indent=1, default=str)
        out += (f"<details><summary>more evidence ({esc(', '.join(rest))})</summary>"
                f"<pre><code>{esc(raw)}</code></pre></details>")
    return out


def _fix(fix: dict[str, Any]) -> str:
    code = f"<pre><code>{esc(fix['snippet'])}</code></pre>" if fix.get("snippet") else ""
    return (f"<li><span class=\"action\">{esc(fix.get('action', ''))}</span>: {esc(fix.get('text', ''))}"
            f"{code}</li>")


def _where(finding: dict[str, Any]) -> str:
    bits = [f"step {finding['step']}"] if finding.get("step") is not None else []
    bits += [f"epoch {finding['epoch']}"] if finding.get("epoch") is not None else []
    bits += [f"at {finding['where']}"] if finding.get("where") else []
    return f"<span class=\"where\">{esc(' · '.join(bits))}</span>" if bits else ""


def _cause(finding: dict[str, Any], cause: dict[str, Any] | None) -> str:
    """A consequence's line: which finding explains it (a link to it), at which step, and why."""
    code = finding.get("caused_by")
    step = f" (step {esc(cause['step'])})" if cause and cause.get("step") is not None else ""
    why = f": {esc(finding['cause_reason'])}" if finding.get("cause_reason") else ""
    return (f"<div class=\"cause\">↳ caused by <a href=\"#finding-{esc(code)}\"><code>{esc(code)}</code></a>"
            f"{step}{why}</div>") if code else ""


def _finding(finding: dict[str, Any], cause: dict[str, Any] | None = None) -> str:
    """One finding; a consequence is indented under its cause, which the JSON lists before it."""
    severity = str(finding.get("severity", "info"))
    cls = severity if severity in SEVERITIES else "info"
    fixes = finding.get("fixes") or []
    fix_list = f"<ol class=\"fixes\">{''.join(_fix(f) for f in fixes)}</ol>" if fixes else ""
    kind = " consequence" if finding.get("caused_by") else ""
    return (f"<article class=\"finding sev-{cls}{kind}\" id=\"finding-{esc(finding.get('code', ''))}\">"
            f"<div><span class=\"badge {cls}\">{esc(severity)}</span>"
            f"<span class=\"code\">{esc(finding.get('code', ''))}</span>{_where(finding)}</div>"
            f"<div class=\"title\">{esc(finding.get('title', ''))}</div>{_cause(finding, cause)}"
            f"{_evidence(finding.get('evidence') or {})}{fix_list}</article>")


def _findings(data: dict[str, Any]) -> str:
    """The findings report.default_view shows, as cards; the rest (info findings that are no
    problem) folded under a toggle, as -v unfolds them in the terminal."""
    findings = data.get("findings") or []
    shown, hidden = saved_view(findings)

    def cards(which: list[dict[str, Any]]) -> str:
        return "".join(_finding(f, cause_in(findings, f, lambda x: x.get("code"), lambda x: x.get("caused_by")))
                       for f in which)

    body = cards(shown) or ("" if hidden else "<p class=\"note\">No findings.</p>")
    if hidden:
        body += (f"<details class=\"more-findings\"><summary>{len(hidden)} info finding"
                 f"{'s' if len(hidden) != 1 else ''}, not a problem</summary>{cards(hidden)}</details>")
    return f"<section id=\"findings\"><h2>Findings</h2>{body}{_aside(data)}</section>"


def _aside(data: dict[str, Any]) -> str:
    """Rules that could not judge, and torchdoctor's own troubles: small, but a reader must not take
    their silence for a clean bill of health."""
    out = ""
    skipped = data.get("not_evaluated") or {}
    if skipped:
        rows = "".join(f"<li><code>{esc(code)}</code>: {esc(why)}</li>" for code, why in skipped.items())
        out += f"<div class=\"small dim\"><b>Not evaluated</b><ul>{rows}</ul></div>"
    errors = data.get("internal_errors") or []
    if errors:
        rows = "".join(f"<li>{esc(message)}</li>" for message in errors)
        out += f"<div class=\"small dim\"><b>torchdoctor internal errors</b><ul>{rows}</ul></div>"
    return out


# -- plots --------------------------------------------------------------------------------------


def _plot(title: str, draw: Callable[[dict[str, Any]], bytes | None], data: dict[str, Any], missing: str,
          caption: str = "") -> str:
    """One plot as an embedded PNG; when it cannot be drawn, one line says why and the page goes on."""
    try:
        png = draw(data)
    except ImportError:
        return f"<p class=\"note\">{esc(title)}: not drawn (matplotlib is not installed).</p>"
    except Exception as error:  # a broken plot must not cost the reader the findings above it
        return f"<p class=\"note\">{esc(title)}: could not be drawn ({esc(type(error).__name__)}: {esc(error)}).</p>"
    if not png:
        return f"<p class=\"note\">{esc(title)}: not drawn ({esc(missing)}).</p>"
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f"<figure><img src=\"{source}\" alt=\"{esc(title)}\">"
            f"<figcaption>{esc(caption or title)}</figcaption></figure>")


def _gradient_table(data: dict[str, Any]) -> str:
    layers = (data.get("gradients") or {}).get("layers") or []
    if not layers:
        return "<p class=\"note\">Gradient table: no per-layer gradients were recorded.</p>"
    head = ("<tr><th class=\"l\">layer</th><th class=\"l\">type</th><th>norm last</th><th>norm median</th>"
            "<th>norm max</th><th>update ratio</th><th>non-finite</th><th class=\"l\">trend (log)</th>"
            "<th class=\"l\">flagged by</th></tr>")
    rows = []
    for layer in layers:
        flagged = layer.get("flagged") or []
        share = number(layer.get("nonfinite_share"))
        row_class = " class=\"flagged\"" if flagged else ""
        rows.append(
            f"<tr{row_class}><td class=\"l name\">{esc(layer.get('name', ''))}</td>"
            f"<td class=\"l\">{esc(layer.get('type') or '')}</td><td>{esc(fmt(layer.get('norm_last')))}</td>"
            f"<td>{esc(fmt(layer.get('norm_median')))}</td><td>{esc(fmt(layer.get('norm_max')))}</td>"
            f"<td>{esc(fmt(layer.get('update_ratio_median')))}</td>"
            f"<td>{esc(f'{share:.0%}' if math.isfinite(share) else 'n/a')}</td>"
            f"<td class=\"l\">{sparkline(layer.get('trend'))}</td><td class=\"l\">{esc(', '.join(flagged))}</td></tr>")
    return f"<h3>Per-layer gradients</h3><table class=\"grads\">{head}{''.join(rows)}</table>"


def _memory_text(memory: dict[str, Any]) -> str:
    """The numbers the breakdown plot is read against: the budget and capacity above all."""
    bits = [f"device {memory.get('device') or 'unknown'}"]
    for key, label in (("budget_bytes", "budget"), ("capacity_bytes", "capacity"), ("peak_rss_bytes", "peak RSS"),
                       ("peak_allocated_bytes", "CUDA peak allocated"), ("peak_reserved_bytes", "CUDA peak reserved"),
                       ("fragmentation_bytes", "fragmentation")):
        if memory.get(key) is not None:
            bits.append(f"{label} {_bytes(memory[key])}")
    if memory.get("budget_bytes") is None:
        bits.append("no budget set (--memory-budget)")
    out = f"<p class=\"small\">{esc(' · '.join(bits))}</p>"
    step = memory.get("step")
    if step:
        parts = [f"measured at step {step.get('measured_at_step')}",
                 f"batch size {step.get('batch_size') or 'unknown'}",
                 f"estimated peak {_bytes(step.get('estimated_peak'))}"]
        if step.get("per_sample"):
            parts.append(f"{_bytes(step['per_sample'])} per sample")
        out += f"<p class=\"small\">training step: {esc(', '.join(parts))}</p>"
    else:
        out += "<p class=\"note\">No training step was measured (no forward with gradients was seen).</p>"
    return out


def _plots(data: dict[str, Any]) -> str:
    memory = data.get("memory") or {}
    return "".join([
        "<section id=\"training\"><h2>Training curves</h2>",
        _plot("Loss", loss_plots.loss_plot, data, "the run recorded no loss", loss_plots.loss_caption(data)),
        _plot("Accuracy", plots.accuracy_plot, data, "the run logged no accuracy"),
        *(_plot(title, draw, data, "", caption) for title, draw, caption in loss_plots.extra_plots(data)),
        "</section><section id=\"gradients\"><h2>Gradients</h2>",
        _plot("Gradient flow", plots.gradient_heatmap, data, "no per-layer gradient norms were recorded",
              "log10 gradient norm per layer (first layer on top) and step; layers a finding names in red."),
        _plot("Update-to-weight ratio", plots.update_ratio_plot, data, "no optimizer update was measured",
              "Median |Δw|/|w| per step for each layer; the green band is the typical range."),
        _gradient_table(data),
        "</section><section id=\"memory\"><h2>Memory</h2>",
        _memory_text(memory),
        _plot("Memory timeline", plots.memory_timeline_plot, data, "memory was not sampled",
              "Memory per step in MiB."),
        _plot("Memory breakdown", plots.memory_breakdown_plot, data, "no training step was measured",
              "One training step's memory per top-level module (submodules rolled up), in MiB."),
        "</section>",
    ])


# -- page ---------------------------------------------------------------------------------------


def render_html(data: dict[str, Any]) -> str:
    """The whole report as one HTML page; deterministic, so the same report gives the same bytes."""
    title = f"torchdoctor · {_script_name(data.get('run') or {})}"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        _header(data), _banner(data), _findings(data), _plots(data),
        f"<footer class=\"note\">torchdoctor {esc(data.get('torchdoctor_version') or '')} · "
        f"{esc(data.get('schema') or '')}</footer>",
        f"<script>{SCRIPT}</script></body></html>\n",
    ])


def write_html(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """UTF-8 regardless of locale: the page says charset=utf-8 and holds arrows and Δ."""
    Path(path).write_text(render_html(data), encoding="utf-8")
