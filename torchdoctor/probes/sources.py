"""Where in the user's code the optimizer was built, so a fix can name that line and rewrite it;
likewise the layers, the DataLoaders, the training loss call and an evaluation's block.

`torch.optim.Optimizer.__init__` is wrapped while the run is watched: at construction only (never on
a step), the stack is walked to the first frame outside torch and torchdoctor and the whole
statement there is read (every line of a call that spans several). The counted optimizer is the
first that steps (recorder/optimizers.py); its site becomes `Timeline.sources["optimizer"]`,
the place the learning-rate fixes edit. Every failure here is contained: the user's optimizer is
built as if torchdoctor were not there.
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ..patching import after_init
from ..timeline import Timeline

if TYPE_CHECKING:
    from .shared import Handlers

# torch, torchdoctor and the standard library: a frame there did not write the user's statement.
_LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(f)) + os.sep
                      for f in (torch.__file__, os.path.dirname(os.path.abspath(__file__)), os.__file__))


# The layers a fix rewrites the arguments of (in_features, in_channels, num_classes), and the output
# activations a fix replaces (a Softmax before CrossEntropyLoss, a Sigmoid before BCEWithLogitsLoss).
SITED_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Softmax,
                torch.nn.Sigmoid)
MAX_LAYER_SITES = 4096


# torch's and torchdoctor's own files (installed or not): frames that are never the builder.
_OWN_DIRS = tuple(os.path.dirname(os.path.abspath(f)) + os.sep
                  for f in (torch.__file__, os.path.dirname(os.path.abspath(__file__))))


class SourceProbe:
    def __init__(self, timeline: Timeline, recorder: Handlers | None = None) -> None:
        self.timeline = timeline
        self.recorder = recorder
        self.sites: dict[int, tuple[Any, dict[str, Any]]] = {}  # id(optimizer) -> (weak ref, site)
        self.patches = contextlib.ExitStack()  # the wrapped __init__ of the optimizer and the sited classes
        self.handle: Any = None
        # (file, first line of a top-level block) -> its simple statements' line spans
        self._statements: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self.layer_sites: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.loader_sites: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def install(self) -> None:
        self.patches = contextlib.ExitStack()
        self.patches.enter_context(after_init(torch.optim.Optimizer, self.constructed, self._error))
        for cls in (*SITED_LAYERS, torch.utils.data.DataLoader):
            self.patches.enter_context(after_init(cls, self.layer_constructed, self._error))
        self.handle = register_optimizer_step_pre_hook(self._pre)
        if self.recorder is not None:
            self.recorder.shared.layer_sites = self.layer_sites
            self.recorder.shared.loader_sites = self.loader_sites
            self.recorder.shared.evaluation_site = self.evaluation_site
            self.recorder.shared.call_site = self.site

    def remove(self) -> None:
        self.patches.close()  # every __init__ as it was
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.sites.clear()

    # -- at construction -----------------------------------------------------------------------
    def constructed(self, optimizer: Any) -> None:
        if "optimizer" in self.timeline.sources:
            return  # the counted optimizer's site is known: later ones are not looked at
        site = self.site()
        if site is not None:
            self.sites[id(optimizer)] = (_weak(optimizer), site)

    def layer_constructed(self, layer: Any) -> None:
        """A Linear, Conv or DataLoader the script built: where, for a fix to its arguments (a
        crash names the layer; dataloader_bottleneck the training loader's num_workers)."""
        if isinstance(layer, torch.utils.data.DataLoader):
            if len(self.loader_sites) < MAX_LAYER_SITES:
                site = self.site(direct=True)
                if site is not None:
                    self.loader_sites[layer] = site
            return
        if len(self.layer_sites) < MAX_LAYER_SITES and type(layer) in SITED_LAYERS:
            site = self.site(direct=True)
            if site is not None:
                self.layer_sites[layer] = site

    def site(self, direct: bool = False) -> dict[str, Any] | None:
        """The user's statement that built the optimizer: the first frame that is not torch's,
        torchdoctor's or an installed library's (a fix must not edit a file in site-packages).
        `direct`: only when that frame built it itself; a layer that torchvision's resnet18()
        built has no line of the user's to rewrite (`model = resnet18()` has no in_features)."""
        found = _user_frame(direct)
        return self.statement(*found) if found is not None else None

    def evaluation_site(self) -> dict[str, Any] | None:
        """The block of the user's code that runs an evaluation, seen from inside one of its
        forwards: the nearest enclosing `with torch.no_grad()` / `inference_mode()` statement, else
        the nearest enclosing `for` loop, all its lines (`indent`: its first line's). None without
        source or outside any such block. Called once per run (the first evaluation in train())."""
        found = _user_frame()
        return self._block(*found) if found is not None else None

    def _block(self, name: str, path: str, line: int) -> dict[str, Any] | None:
        lines = linecache.getlines(name)
        try:
            tree = ast.parse("".join(lines))
        except (SyntaxError, ValueError):
            return None
        around = [n for n in ast.walk(tree) if isinstance(n, (ast.With, ast.For))
                  and n.lineno <= line <= (n.end_lineno or n.lineno)]
        grad_off = [n for n in around if isinstance(n, ast.With) and any(
            "no_grad" in ast.unparse(item.context_expr) or "inference_mode" in ast.unparse(item.context_expr)
            for item in n.items)]
        chosen = max(grad_off or [n for n in around if isinstance(n, ast.For)], key=lambda n: n.lineno, default=None)
        if chosen is None:
            return None
        first, last = chosen.lineno, chosen.end_lineno or chosen.lineno
        text = "".join(lines[first - 1:last]).rstrip("\r\n")
        return {"file": path, "line": first, "end_line": last, "text": text,
                "indent": lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip())]}

    def statement(self, name: str, path: str, line: int) -> dict[str, Any] | None:
        """The simple statement spanning `line` in the file, all its lines; None without source."""
        lines = linecache.getlines(name)
        if not lines or line < 1 or line > len(lines):
            return None
        first, last = line, line
        spans = self._spans(name, lines, line)
        inner = [s for s in spans if s[0] <= line <= s[1]]
        if inner:
            first, last = min(inner, key=lambda s: s[1] - s[0])
        text = "".join(lines[first - 1:last])
        return {"file": path, "line": first, "end_line": last, "text": text.rstrip("\r\n")}

    def _spans(self, path: str, lines: list[str], line: int) -> list[tuple[int, int]]:
        """The line spans of the simple statements in the top-level block around `line`. Parsing
        only that block (the function or loop the call sits in) costs a tenth of parsing the file
        (8 ms for 340 lines, paid at the first step); a block that does not parse on its own (a
        column-0 line inside a string) falls back to the whole file."""
        first, last = _top_level_block(lines, line)
        key = (path, first)
        spans = self._statements.get(key)
        if spans is None:
            spans = _simple_statements("".join(lines[first - 1:last]), first - 1)
            if spans is None:
                whole = self._statements.get((path, 0))
                if whole is None:
                    whole = self._statements[(path, 0)] = _simple_statements("".join(lines), 0) or []
                spans = whole
            self._statements[key] = spans
        return spans

    # -- at the first step -------------------------------------------------------------------
    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The first optimizer to step is the one steps are counted on: its site is the one."""
        if "optimizer" in self.timeline.sources:
            return None
        try:
            entry = self.sites.get(id(optimizer))
            if entry is not None and entry[0]() is optimizer:
                self.timeline.sources["optimizer"] = entry[1]
                self.sites.clear()
        except Exception as exc:
            self._error(exc)
        return None

    def _error(self, exc: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.internal_error(f"optimizer source: {type(exc).__name__}: {exc}", exc)


def _user_frame(direct: bool = False) -> tuple[str, str, int] | None:
    """(file name, absolute path, line) of the first frame that is not torch's, torchdoctor's, the
    standard library's or an installed package's: the user's code that made this call. `direct`:
    None when an installed package stands between (it made the call, not the user)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        path = os.path.abspath(name)
        library = "-packages" + os.sep in path and not path.startswith(_OWN_DIRS)
        if not path.startswith(_LIBRARY_DIRS) and not library:
            return name, path, frame.f_lineno
        if direct and library:
            return None
        frame = frame.f_back  # type: ignore[assignment]
    return None


# A column-0 line that goes on with the statement above it, not one that starts a new one.
_CONTINUES = ("else", "elif", "except", "finally", ")", "]", "}", "#")


def _top_level_block(lines: list[str], line: int) -> tuple[int, int]:
    """The lines (1-based, inclusive) of the top-level statement around `line`: from the last
    column-0 line that starts a statement (its decorators with it) to the line before the next."""
    def starts(k: int) -> bool:
        text = lines[k - 1]
        return bool(text[:1].strip()) and not text.startswith(_CONTINUES)

    first = line
    while first > 1 and not starts(first):
        first -= 1
    while first > 1 and lines[first - 2].startswith("@"):
        first -= 1
    last = line + 1
    while last <= len(lines) and not (starts(last) and not lines[last - 2].startswith("@")):
        last += 1
    return first, last - 1


def _simple_statements(source: str, offset: int) -> list[tuple[int, int]] | None:
    """(first, last) line of every statement without a body, shifted by `offset`; None when
    `source` does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    return [(n.lineno + offset, (n.end_lineno or n.lineno) + offset) for n in ast.walk(tree)
            if isinstance(n, ast.stmt) and not hasattr(n, "body")]


def _weak(obj: Any) -> Any:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj
