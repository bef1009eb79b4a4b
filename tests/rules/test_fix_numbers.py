"""The numbers the fixes carry are taken from the healthy part of the run only."""

from __future__ import annotations

from tests.rules.timelines import make_timeline
from torchdoctor.rules._fixes import clip_gradients


def test_max_norm_leaves_out_the_steps_whose_loss_had_already_blown_up():
    """Issue 17: an exploding run's max_norm came from 'healthy steps 0-3' when step 3's loss
    was already 785,074 (and its gradient norm with it)."""
    norms = [1.0, 1.2, 0.9, 4000.0, 1e6, 1e9]
    losses = [2.3, 2.2, 2.4, 785_074.0, 1e9, 1e12]
    fix = clip_gradients(make_timeline(norms, losses), until_step=5)
    assert fix is not None and fix.params["max_norm"] == 2.0  # twice the median of 1.0, 1.2, 0.9
    assert "steps 0-2" in fix.text


def test_a_steady_run_clips_at_twice_its_median():
    fix = clip_gradients(make_timeline([1.0, 2.0, 3.0, 2.0, 1.0], [1.0] * 5), until_step=None)
    assert fix is not None and fix.params["max_norm"] == 4.0 and "the run" in fix.text
