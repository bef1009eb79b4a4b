"""fit(): a plain, correct training loop with every probe attached."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from .report import Report
from .session import Doctor


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    report: Report | None = None


def _to(batch: Any, device: torch.device | None) -> Any:
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _split(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("fit() expects batches of (inputs, targets)")


def fit(
    model: torch.nn.Module,
    train_loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    epochs: int = 1,
    val_loader: Iterable[Any] | None = None,
    device: str | torch.device | None = None,
    **doctor_options: Any,
) -> FitResult:
    """Train `model` for `epochs` and diagnose the run.

    Each epoch's mean training loss (and validation loss and, for integer targets,
    accuracy) goes into `history`; the report is in `.report` and is printed at the
    end unless `print_report=False` is passed. Inside another watch (a script run with
    `torchdoctor run`), it joins that one: the run has one report, and `.report` is the diagnosis
    of what had been recorded when training here ended.
    """
    dev = torch.device(device) if device is not None else None
    result = FitResult()
    doctor = Doctor(model, optimizer, **doctor_options)
    with doctor:
        for epoch in range(epochs):
            model.train()
            total, batches = 0.0, 0
            for batch in train_loader:
                x, y = _split(_to(batch, dev))
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
            row: dict[str, float] = {"epoch": epoch, "train_loss": total / max(batches, 1)}
            if val_loader is not None:
                row.update(_evaluate(model, val_loader, loss_fn, dev))
                doctor.log(**{k: v for k, v in row.items() if k != "epoch"})
            result.history.append(row)
    result.report = doctor.report
    return result


def _evaluate(model: torch.nn.Module, loader: Iterable[Any], loss_fn: Callable[[Any, Any], torch.Tensor],
              dev: torch.device | None) -> dict[str, float]:
    was_training = model.training
    model.eval()
    total, batches, correct, seen = 0.0, 0, 0, 0
    classify = True
    with torch.no_grad():
        for batch in loader:
            x, y = _split(_to(batch, dev))
            out = model(x)
            total += float(loss_fn(out, y))
            batches += 1
            if classify and isinstance(out, torch.Tensor) and out.dim() == 2 and not y.is_floating_point():
                correct += int((out.argmax(1) == y).sum())
                seen += y.numel()
            else:
                classify = False
    model.train(was_training)
    row = {"val_loss": total / max(batches, 1)}
    if classify and seen:
        row["val_acc"] = correct / seen
    return row
