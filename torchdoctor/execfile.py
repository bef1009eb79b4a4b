"""Run a user's script or module as `__main__`, the way `python script.py` / `python -m` would.

Follows coverage.py's PyRunner: a fresh `__main__` module, `sys.argv`, `sys.path[0]`,
`__file__` and `__spec__` set as Python sets them; the script's `SystemExit` passes
through; an uncaught exception prints the user's traceback without torchdoctor's frames.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import signal
import sys
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_DIR = str(Path(__file__).resolve().parent)


class BadTarget(Exception):
    """The script or module cannot be run; the message is one line for the user."""


@dataclass
class Target:
    display: str
    code: types.CodeType
    file: str
    spec: Any = None  # ModuleSpec for -m
    path0: str = ""
    argv0: str = ""  # sys.argv[0]; the file's full path when empty (python -m does that)


@dataclass
class Outcome:
    status: int
    exception: BaseException | None = None


def prepare_script(path: str) -> Target:
    p = Path(path)
    if not p.exists():
        raise BadTarget(f"no such file: {path}")
    if p.is_dir():
        raise BadTarget(f"{path} is a directory, not a Python script")
    try:
        source = p.read_bytes()
    except OSError as exc:
        raise BadTarget(f"cannot read {path}: {exc.strerror or exc}") from None
    # Like python: __file__ is the absolute path (symlinks kept), sys.path[0] the folder of the
    # real file (symlinks resolved), sys.argv[0] the path exactly as typed.
    full = os.path.abspath(path)
    is_py = p.suffix in (".py", ".pyw")
    if b"\x00" in source:
        raise BadTarget(f"{path} is not a Python script (it is a binary file)")
    try:
        code = compile(source, full, "exec", dont_inherit=True)
    except SyntaxError as exc:
        if not is_py:
            raise BadTarget(f"{path} is not a Python script ({exc.msg} at line {exc.lineno})") from None
        raise BadTarget(f"syntax error in {path}, line {exc.lineno}: {exc.msg}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadTarget(f"{path} is not a Python script ({exc})") from None
    return Target(display=path, code=code, file=full, path0=os.path.dirname(str(p.resolve())), argv0=path)


def prepare_module(name: str) -> Target:
    """Find `name` as `python -m name` would: from the current directory first.

    `python -m` puts the current directory at sys.path[0]; the `torchdoctor` console script
    has its own bin folder there instead, so the search (which imports the parent packages,
    as runpy does) runs with the current directory in that place, and so does the module.
    """
    cwd = os.getcwd()
    saved = sys.path[0] if sys.path else None
    if sys.path:
        sys.path[0] = cwd
    else:
        sys.path.insert(0, cwd)
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(name + ".__main__")
            if spec is None:
                raise BadTarget(f"{name} is a package and cannot be directly executed (no __main__)")
    except BadTarget:
        raise
    except Exception as exc:  # import of a parent package failed
        raise BadTarget(f"cannot find module {name}: {type(exc).__name__}: {exc}") from None
    finally:
        if saved is None:
            sys.path.pop(0)
        else:
            sys.path[0] = saved
    if spec is None or spec.loader is None:
        raise BadTarget(f"no module named {name}")
    try:
        code = spec.loader.get_code(spec.name)  # type: ignore[attr-defined]
    except SyntaxError as exc:
        raise BadTarget(f"syntax error in {exc.filename}, line {exc.lineno}: {exc.msg}") from None
    if code is None:
        raise BadTarget(f"cannot run module {name}: no code object")
    return Target(display=name, code=code, file=spec.origin or name, spec=spec, path0=cwd)


_last_argv: list[str] = []  # the sys.argv of the script run last


@contextlib.contextmanager
def script_argv_at_exit(keep: bool) -> Iterator[None]:
    """run_target puts the caller's sys.argv back after each script, as in-process callers need.
    With `keep` (the process is the command's own) this block leaves the last script's arguments
    in sys.argv, so the script's atexit handlers read their own, as under plain python."""
    _last_argv.clear()
    try:
        yield
    finally:
        if keep and _last_argv:
            sys.argv = list(_last_argv)


def run_target(target: Target, args: list[str]) -> Outcome:
    """Execute the target; never raises (except for what it must: nothing)."""
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=target.file,
        __builtins__=sys.modules["builtins"],
        __spec__=target.spec,
        __package__=target.spec.parent if target.spec else None,
        __loader__=target.spec.loader if target.spec
        else importlib.machinery.SourceFileLoader("__main__", target.file),
        __cached__=None,
    )
    saved_main = sys.modules.get("__main__")
    saved_argv = sys.argv
    saved_path0 = sys.path[0] if sys.path else None
    sys.modules["__main__"] = main
    sys.argv = [target.argv0 or target.file, *args]
    _last_argv[:] = sys.argv
    if sys.path:
        sys.path[0] = target.path0
    else:
        sys.path.insert(0, target.path0)
    try:
        exec(target.code, main.__dict__)
        return Outcome(0)
    except SystemExit as exc:
        return Outcome(_exit_status(exc.code), exc if exc.code not in (None, 0) else None)
    except KeyboardInterrupt as exc:
        print_user_traceback(exc)
        return Outcome(130, exc)
    except BaseException as exc:
        print_user_traceback(exc)
        return Outcome(1, exc)
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


def _exit_status(code: Any) -> int:
    """What the interpreter does with sys.exit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stdout.flush()
    except Exception:
        pass
    print(code, file=sys.stderr)
    return 1


def _strip(te: traceback.TracebackException) -> None:
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if not f.filename.startswith(PACKAGE_DIR)]
    )
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _strip(chained)


def print_user_traceback(exc: BaseException) -> None:
    try:
        sys.stdout.flush()
    except Exception:
        pass
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    _strip(te)
    sys.stderr.write("".join(te.format()))
    sys.stderr.flush()


@contextlib.contextmanager
def terminated_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) while the script runs, so its `finally` blocks run and
    the report is still written; the status is what a shell shows for a SIGTERM'd process."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread, or no such signal here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
