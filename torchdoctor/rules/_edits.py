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

    arg = _argument(call, name, position)
    if arg is not None:
        return _splice(statement, at(arg.lineno, arg.col_offset),
                       at(arg.end_lineno or arg.lineno, arg.end_col_offset or 0), value)
    if any(isinstance(a, ast.Starred) for a in call.args) or any(kw.arg is None for kw in call.keywords):
        return None
    return _append(statement, call, at, f"{name}={value}")


def argument_text(statement: str, name: str, position: int | None = None) -> str | None:
    """The source text of the value the statement's call passes as `name` (the keyword, else the
    positional at `position`); None when the statement is no such call or does not pass it."""
    body, shift = _parse(statement)
    if body is None or len(body) != 1:
        return None
    call = _call_of(body[0])
    value = _argument(call, name, position) if call is not None else None
    if value is None:
        return None
    return _segment(statement, shift, value)


def _argument(call: ast.Call, name: str, position: int | None) -> ast.expr | None:
    """The value the call passes as `name`: its keyword, else its positional at `position` when
    no `*args` comes before it (which would shift the positions)."""
    value = next((kw.value for kw in call.keywords if kw.arg == name), None)
    if value is None and position is not None and position < len(call.args):
        if not any(isinstance(a, ast.Starred) for a in call.args[: position + 1]):
            value = call.args[position]
    return value


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


def replace_layer(statement: str, kind: str, replacement: str = "Identity") -> str | None:
    """`statement` with its last `kind(...)` construction (`nn.Softmax(dim=1)`, `torch.nn.Sigmoid()`)
    replaced by `replacement()` under the same prefix (`nn.Identity()`): the layer's place, and so
    the indices of an `nn.Sequential` and its state_dict keys, stay. The last one is the output
    layer when the statement builds a whole Sequential. None when there is none."""
    found, shift = _calls(statement)
    calls = [c for c in found if _callee(c) == kind and isinstance(c.func, (ast.Name, ast.Attribute))]
    if not calls:
        return None
    call = calls[-1]
    prefix = ast.unparse(call.func.value) + "." if isinstance(call.func, ast.Attribute) else ""
    return _replace_node(statement, shift, call, f"{prefix}{replacement}()")


def unwrap_call(statement: str, name: str) -> str | None:
    """`statement` with its last `name` call unwrapped to the tensor it was given: `F.softmax(out,
    dim=1)` and `torch.softmax(out, 1)` become `out`, the method `out.softmax(dim=1)` becomes
    `out`. None when the statement makes no such call."""
    found, shift = _calls(statement)
    calls = [c for c in found if _callee(c) == name]
    for call in reversed(calls):
        func = call.func
        if isinstance(func, ast.Attribute) and not _is_module_path(func.value) and not call.args[:1]:
            inner = func.value  # a method on the tensor
        elif call.args:
            inner = call.args[0]
        else:
            continue
        text = _segment(statement, shift, inner)
        if text is not None:
            return _replace_node(statement, shift, call, text)
    return None


def _is_module_path(node: ast.expr) -> bool:
    """`F`, `torch`, `torch.nn.functional`: a namespace, not a tensor the method is called on."""
    names = {"F", "torch", "functional", "nn", "np"}
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in names


def _calls(statement: str) -> tuple[list[ast.Call], int]:
    """Every call in the statement, in source order, and the parse's line shift (see _parse)."""
    body, shift = _parse(statement)
    calls = [n for stmt in body or [] for n in ast.walk(stmt) if isinstance(n, ast.Call)]
    return sorted(calls, key=lambda c: (c.lineno, c.col_offset)), shift


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _segment(statement: str, shift: int, node: ast.AST) -> str | None:
    """The source text of `node`, parsed from `statement` with `shift` lines put in front."""
    return ast.get_source_segment("if True:\n" + statement if shift else statement, node)


def _replace_node(statement: str, shift: int, node: ast.AST, text: str) -> str:
    offsets = _line_offsets(statement)
    start = _index(statement, offsets, node.lineno - shift, node.col_offset)  # type: ignore[attr-defined]
    end = _index(statement, offsets, (node.end_lineno or node.lineno) - shift, node.end_col_offset or 0)  # type: ignore[attr-defined]
    return _splice(statement, start, end, text)
