"""Thresholds and switches: rule defaults, overridden by `[tool.torchdoctor]` and then by the CLI."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .findings import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from .rules.base import Rule


FAIL_ON_STATUS = 3  # `torchdoctor run`'s exit status when --fail-on trips


class ConfigError(ValueError):
    """Bad configuration; the CLI turns it into a one-line error."""


@dataclass
class Config:
    disabled: set[str] = field(default_factory=set)
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    fail_on: Severity | None = None
    memory_budget: int | None = None  # bytes the training step should fit in (--memory-budget)

    def params_for(self, rule: Rule) -> dict[str, float]:
        params = rule.defaults()
        params.update(self.thresholds.get(rule.code, {}))
        return params


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject_table(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("torchdoctor", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.torchdoctor] must be a table")
    return table


def _known_rules() -> dict[str, Rule]:
    from .rules import REGISTRY

    return REGISTRY


def _check_code(code: str, origin: str) -> None:
    if code not in _known_rules():
        raise ConfigError(f"{origin}: unknown finding code {code!r} (see `torchdoctor rules`)")


def _set_threshold(cfg: Config, code: str, name: str, value: Any, origin: str) -> None:
    _check_code(code, origin)
    rule = _known_rules()[code]
    if name not in rule.params:
        known = ", ".join(rule.params) or "none"
        raise ConfigError(f"{origin}: rule {code} has no threshold {name!r} (known: {known})")
    try:
        cfg.thresholds.setdefault(code, {})[name] = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {code}.{name} must be a number, got {value!r}") from None


def build_config(
    table: dict[str, Any] | None = None,
    disable: tuple[str, ...] | list[str] = (),
    settings: tuple[str, ...] | list[str] = (),
    fail_on: str | None = None,
    origin: str = "pyproject.toml",
    memory_budget: str | None = None,
) -> Config:
    """Merge pyproject settings and CLI options (the CLI wins)."""
    cfg = Config()
    table = dict(table or {})
    for code in table.pop("disable", []):
        _check_code(code, origin)
        cfg.disabled.add(code)
    table_fail_on = table.pop("fail-on", table.pop("fail_on", None))
    table_budget = table.pop("memory-budget", table.pop("memory_budget", None))
    for key, value in table.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: unknown setting {key!r} in [tool.torchdoctor]")
        for name, v in value.items():
            if name == "enabled":
                _check_code(key, origin)
                if not v:
                    cfg.disabled.add(key)
                continue
            _set_threshold(cfg, key, name, v, origin)
    for code in disable:
        _check_code(code, "--disable")
        cfg.disabled.add(code)
    for item in settings:
        key, sep, value = item.partition("=")
        code, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set expects CODE.THRESHOLD=VALUE, got {item!r}")
        _set_threshold(cfg, code, name.strip(), value.strip(), "--set")
    budget, where = (memory_budget, "--memory-budget") if memory_budget is not None else (table_budget, origin)
    if budget is not None:
        cfg.memory_budget = _size(budget, where)
    chosen = fail_on if fail_on is not None else table_fail_on
    if chosen is not None:
        try:
            cfg.fail_on = Severity.parse(chosen)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return cfg


def _size(value: Any, origin: str) -> int:
    from .units import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
