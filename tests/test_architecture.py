"""The layout in docs/architecture.md, held against the code: which package may import which, no
import circle anywhere in the package (imports inside functions count too), small modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "torchdoctor"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULE_PATHS = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every torchdoctor module and top-level outside package `path` imports, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & set(MODULE_PATHS)
            out |= submodules  # `from . import exchange`: that module, not its package
            if len(submodules) < len(node.names):
                out.add(target)
    return out


MODULES = MODULE_PATHS
GRAPH = {name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_import_circle():
    # Tarjan's strongly connected components; `torchdoctor` (the lazy __init__) is the package's
    # door, imported for __version__ only, so its edges back in do not make a layer circle.
    graph = {n: {m for m in deps if m != "torchdoctor"} for n, deps in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(n: str) -> None:
        index[n] = low[n] = len(index)
        stack.append(n)
        for m in graph[n]:
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in stack:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            component = []
            while True:
                m = stack.pop()
                component.append(m)
                if m == n:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for n in graph:
        if n not in index:
            visit(n)
    assert circles == []


def test_each_layer_imports_only_what_it_may():
    forbidden = {
        "torchdoctor.rules": {"torch", "time", "torchdoctor.config", "torchdoctor.probes", "torchdoctor.recorder",
                              "torchdoctor.report", "torchdoctor.jsonreport", "torchdoctor.render",
                              "torchdoctor.session", "torchdoctor.distributed"},
        "torchdoctor.probes": {"torchdoctor.recorder", "torchdoctor.rules", "torchdoctor.report",
                               "torchdoctor.render", "torchdoctor.session", "torchdoctor.config"},
        "torchdoctor.recorder": {"torchdoctor.rules", "torchdoctor.report", "torchdoctor.render",
                                 "torchdoctor.session", "torchdoctor.config"},
        "torchdoctor.timeline": {"torch", "torchdoctor.probes", "torchdoctor.recorder", "torchdoctor.rules",
                                 "torchdoctor.report", "torchdoctor.render"},
        "torchdoctor.report": {"torchdoctor.render", "torchdoctor.session", "torchdoctor.recorder"},
        "torchdoctor.render": {"torchdoctor.recorder", "torchdoctor.probes", "torchdoctor.session"},
        # --heal acts on the run and records what it did; fix re-runs the script as a way in, like session
        "torchdoctor.heal": {"torchdoctor.rules", "torchdoctor.report", "torchdoctor.render", "torchdoctor.session",
                             "torchdoctor.recorder", "torchdoctor.config"},
        "torchdoctor.repair": {"torchdoctor.cli", "torchdoctor.distributed"},
    }
    broken = []
    for name, path in MODULES.items():
        for layer, banned in forbidden.items():
            if not within(name, layer):
                continue
            for imported in imports_of(path):
                if any(within(imported, b) for b in banned) and not within(imported, layer):
                    broken.append(f"{name} imports {imported}")
    assert broken == []


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
