"""The fixes that name a line of the user's code, as a unified diff (`torchdoctor run --patch FILE`).

One edit per finding, its top fix that carries a `location`, and one edit per statement (two fixes
rewriting the same line: the first, the worse finding's, is kept). The paths are relative to the
directory given (the one `torchdoctor run` started in) with git's `a/` and `b/` prefixes, so both
`git apply` and `patch -p1` take the file from there. An edit whose `before` no longer matches the
file (the script changed since the run) is left out rather than written wrong.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from ..report import Report


def unified_diff(report: Report, base: str | os.PathLike[str] | None = None) -> str:
    """The diff of every edited script against its text with the edits; "" when there is none."""
    edits: dict[str, list[dict[str, Any]]] = {}
    for finding in report.findings:
        location = next((f.location for f in finding.fixes if f.location), None)
        if location and location.get("file") and isinstance(location.get("line"), int):
            edits.setdefault(str(location["file"]), []).append(location)
    root = Path(base) if base is not None else Path.cwd()
    return "".join(_file_diff(Path(file), locations, root) for file, locations in edits.items())


def _file_diff(path: Path, locations: list[dict[str, Any]], root: Path) -> str:
    try:
        original = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return ""
    edited = list(original)
    taken: set[int] = set()
    # From the bottom up, so that an edit that changes the number of lines leaves the others' lines.
    for location in sorted(_first_per_line(locations), key=lambda loc: -loc["line"]):
        before = str(location.get("before", "")).splitlines(keepends=True)
        after = str(location.get("after", "")).splitlines(keepends=True)
        start = location["line"] - 1
        span = set(range(start, start + len(before)))
        if not before or span & taken or "".join(original[start:start + len(before)]).rstrip("\r\n") != \
                "".join(before).rstrip("\r\n"):
            continue
        taken |= span
        ending = _ending(original[start + len(before) - 1])
        newline = ending or "\n"
        after = [line.rstrip("\r\n") + (ending if i == len(after) - 1 else newline) for i, line in enumerate(after)]
        edited[start:start + len(before)] = after
    if edited == original:
        return ""
    name = _relative(path, root)
    lines = difflib.unified_diff(original, edited, f"a/{name}", f"b/{name}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _first_per_line(locations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[int] = set()
    out = []
    for location in locations:
        if location["line"] not in seen:
            seen.add(location["line"])
            out.append(location)
    return out


def _ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return "\n" if line.endswith("\n") else ""


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive (Windows): keep the absolute path
        return path.as_posix()
