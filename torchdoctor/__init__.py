"""torchdoctor: diagnoses PyTorch training runs and says what to change."""

from __future__ import annotations

__version__ = "0.1.0"

from .findings import Finding, Fix, Severity  # noqa: E402
from .loop import FitResult, fit  # noqa: E402
from .report import Report  # noqa: E402
from .session import Doctor, watch  # noqa: E402

__all__ = ["Doctor", "Finding", "FitResult", "Fix", "Report", "Severity", "__version__", "fit", "watch"]
