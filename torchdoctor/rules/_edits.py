"""Rewrite one argument of the call a statement of the user's makes, keeping everything else.

A fix that names the user's line shows it rewritten: the same spacing, quotes, comments and every
other argument, only the value changed. So the text is spliced at the spans `ast` gives (never
re-printed with `ast.unparse`, which would drop the user's layout). Pure: text in, text out.
"""

from __future__ import annotations

import ast
from collections.abc import Callable


def set_keyword(statement: str, name: str, value: str, position: int | None = None) -> str | None:
    """`statement` with the call's argument `name` set to the source text `value`.

    The call is the statement's own (`x = f(...)`, `f(...)`, `x: T = f(...)`). A keyword `name=` has
    its value replaced; else, when `position` is given and the call has that many positionals, that
    positional is replaced (`SGD(params, 0.1)`: lr is position 1); else `name=value` is added after
    the last argument. None when the statement is not such a call, or when the argument could hide
    in a `*args` or `**kwargs` (adding it could pass it twice)."""
    tree, shift = _parse(statement)
    if tree is None or len(tree) != 1:
        return None
    call = _call_of(tree[0])
    if call is None:
        return None
    offsets = _line_offsets(statement)

    def at(lineno: int, col: int) -> int:
        return _index(statement, offsets, lineno - shift, col)

    for kw in call.keywords:
        if kw.arg == name:
            return _splice(statement, at(kw.value.lineno, kw.value.col_offset),
                           at(kw.value.end_lineno or kw.value.lineno, kw.value.end_col_offset or 0), value)
    starred = [i for i, a in enumerate(call.args) if isinstance(a, ast.Starred)]
    if position is not None and position < len(call.args) and not [i for i in starred if i <= position]:
        arg = call.args[position]
        return _splice(statement, at(arg.lineno, arg.col_offset),
                       at(arg.end_lineno or arg.lineno, arg.end_col_offset or 0), value)
    if starred or any(kw.arg is None for kw in call.keywords):
        return None
    return _append(statement, call, at, f"{name}={value}")


def _parse(statement: str) -> tuple[list[ast.stmt] | None, int]:
    """The statement's nodes, and how many lines were added in front to parse an indented one."""
    shift = 0
    text = statement
    if statement[:1] in (" ", "\t"):
        text, shift = "if True:\n" + statement, 1
    try:
        body = ast.parse(text).body
    except (SyntaxError, ValueError):
        return None, 0
    if shift:
        body = body[0].body if body and isinstance(body[0], ast.If) else []
    return body, shift


def _call_of(node: ast.stmt) -> ast.Call | None:
    value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Expr, ast.Return)) else None
    return value if isinstance(value, ast.Call) else None


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _index(text: str, offsets: list[int], lineno: int, col: int) -> int:
    """The character index of (1-based line, UTF-8 byte column): ast's columns count bytes."""
    start = offsets[lineno - 1]
    end = offsets[lineno] if lineno < len(offsets) else len(text)
    line = text[start:end]
    return start + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))


def _splice(text: str, start: int, end: int, value: str) -> str:
    return text[:start] + value + text[end:]


def _append(statement: str, call: ast.Call, locate: Callable[[int, int], int], argument: str) -> str:
    """Add `argument` after the call's last argument: on its own line, indented like the last one,
    when the arguments are written one a line; else `, argument` on the same line."""
    args: list[ast.expr | ast.keyword] = [*call.args, *call.keywords]
    if not args:
        close = locate(call.end_lineno or call.lineno, (call.end_col_offset or 1) - 1)
        return _splice(statement, close, close, argument)
    last = max(args, key=lambda a: (a.end_lineno or 0, a.end_col_offset or 0))
    end = locate(last.end_lineno or last.lineno, last.end_col_offset or 0)
    close = locate(call.end_lineno or call.lineno, (call.end_col_offset or 1) - 1)
    between = statement[end:close]
    first_line = getattr(args[0], "lineno", call.lineno)
    if "\n" in between and last.lineno != call.lineno and first_line != call.lineno:
        start = locate(last.lineno, last.col_offset)
        line_start = statement.rfind("\n", 0, start) + 1
        indent = statement[line_start:start]
        if indent.strip():  # the last argument shares its line with others: stay on that line
            return _splice(statement, end, end, f", {argument}")
        comma = between.find(",")
        if comma >= 0 and "#" not in between[:comma]:  # a trailing comma: the new one follows it
            at_comma = end + comma + 1
            return _splice(statement, at_comma, at_comma, f"\n{indent}{argument},")
        return _splice(statement, end, end, f",\n{indent}{argument}")
    return _splice(statement, end, end, f", {argument}")
