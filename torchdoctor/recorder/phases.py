"""Where training changes course: a new optimizer, other parameters being trained (a frozen
backbone, a new head), another dataset. Each opens a phase that the dynamics rules judge on its
own: the loss of a new head on new classes starts high again, and that is no divergence."""

from __future__ import annotations

from collections.abc import Hashable

from ..timeline import Phase, Timeline

STABLE_STEPS = 3  # steps a configuration holds, before and after a change, for the change to be a phase
MAX_PHASES = 64


class _Watch:
    """One property of the steps (which layers got gradients, which dataset the batch came from):
    a phase opens where it changed, once the new value has held STABLE_STEPS steps after the old
    one had (a value flipping from step to step, a branch taken now and then, opens nothing)."""

    def __init__(self) -> None:
        self.current: Hashable = None
        self.held = 0
        self.candidate: Hashable = None
        self.since: int | None = None  # the step the candidate first appeared
        self.candidate_held = 0

    def changed(self, value: Hashable, step: int) -> int | None:
        """The step a phase opens at, once it is known; else None."""
        if value == self.current:
            self.held += 1
            self.candidate, self.since, self.candidate_held = None, None, 0
            return None
        if self.current is None:
            self.current, self.held = value, 1
            return None
        if value != self.candidate:
            self.candidate, self.since, self.candidate_held = value, step, 0
        self.candidate_held += 1
        if self.candidate_held < STABLE_STEPS:
            return None
        opened = self.since if self.held >= STABLE_STEPS else None
        self.current, self.held = value, self.candidate_held
        self.candidate, self.since, self.candidate_held = None, None, 0
        return opened


class PhaseWatch:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.layers = _Watch()
        self.dataset = _Watch()

    def at_step(self, step: int, new_optimizer: bool, layers: frozenset[int], dataset: Hashable) -> None:
        """At a counted step, with what it trained (the layers whose gradients it applied) and the
        dataset of its batch (None when the batch did not come from a DataLoader)."""
        found = []
        if new_optimizer and step > 0:
            found.append((step, "new_optimizer"))
        if layers and (at := self.layers.changed(layers, step)) is not None:
            found.append((at, "trained_parameters"))
        if dataset is not None and (at := self.dataset.changed(dataset, step)) is not None:
            found.append((at, "new_dataset"))
        starts = self.timeline.phase_starts
        for at, reason in found:
            if at > 0 and len(starts) < MAX_PHASES and all(p.step != at for p in starts):
                starts.append(Phase(at, reason))
                starts.sort(key=lambda p: p.step)
