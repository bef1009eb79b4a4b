"""torchdoctor: diagnoses PyTorch training runs and says what to change.

The public names are imported lazily so that `torchdoctor --help` and bad-input
errors answer without first paying for `import torch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Doctor": "session",
    "watch": "session",
    "fit": "loop",
    "FitResult": "loop",
    "Report": "report",
    "Finding": "findings",
    "Fix": "findings",
    "Severity": "findings",
}

__all__ = ["Doctor", "Finding", "FitResult", "Fix", "Report", "Severity", "__version__", "fit", "watch"]

if TYPE_CHECKING:
    from .findings import Finding, Fix, Severity
    from .loop import FitResult, fit
    from .report import Report
    from .session import Doctor, watch


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'torchdoctor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
