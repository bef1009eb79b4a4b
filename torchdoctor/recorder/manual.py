"""Loops that update the weights by hand (`p.data.add_(p.grad, alpha=-lr)` after backward(), as
PyTorch's own word-language-model example does) are training loops too: with no optimizer in
sight, a backward() after which the weights changed before the next one was a step."""

from __future__ import annotations

import torch

from .models import Models

MAX_CHECKS = 8  # backward() calls watched for a hand-made update before giving up
FINGERPRINT = 16  # elements of each of the first parameters compared


class ManualUpdates:
    def __init__(self, models: Models) -> None:
        self.models = models
        self.on = False
        self.checks = 0
        self.fingerprint: list[torch.Tensor] | None = None

    def after_backward(self) -> bool:
        """Whether this backward() is a step of a hand-made loop. Until that is known, a few
        elements of the first parameters are kept after each backward() and compared at the next
        (one host read each, on those first calls only): changed, with no optimizer, is a hand-made
        update. Gradient accumulation changes nothing and stays undetected, as it should."""
        if self.on:
            return True
        if self.checks >= MAX_CHECKS:
            return False
        self.checks += 1
        params = [p for _, p in self.models.trainable()][:4]
        if not params:
            return False
        current = [p.detach().reshape(-1)[:FINGERPRINT].clone() for p in params]
        previous, self.fingerprint = self.fingerprint, current
        if previous is None or len(previous) != len(current):
            return False
        self.on = any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(previous, current, strict=True))
        return self.on

    def stop(self) -> None:
        """An optimizer stepped: it counts the steps from now on."""
        self.on = False
        self.checks = MAX_CHECKS
        self.fingerprint = None
