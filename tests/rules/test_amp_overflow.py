"""amp_overflow on hand-made GradScaler histories: a scale that collapses on NaN gradients, a scaler
that keeps skipping long after it calibrated, beside the skips GradScaler makes by design."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.timeline import AmpInfo, Timeline


def scaler_run(updates: int, skips: Iterable[int], init_scale: float = 65536.0,
               growth_interval: int = 2000) -> Timeline:
    """A run whose GradScaler made `updates` updates and skipped (Inf/NaN gradients) those in `skips`,
    kept as the recorder keeps it: the scale after each update (halved on a skip, doubled after
    `growth_interval` clean ones, as torch.amp.GradScaler does), and the training steps done at
    each skip (a skipped optimizer.step() is not a training step)."""
    skipped = set(skips)
    amp = AmpInfo()
    scale, clean, steps = init_scale, 0, 0
    for i in range(updates):
        amp.updates += 1
        if i in skipped:
            amp.skipped += 1
            amp.skipped_steps.append(steps)
            scale, clean = scale * 0.5, 0
        else:
            steps += 1
            clean += 1
            if clean == growth_interval:
                scale, clean = scale * 2.0, 0
        amp.scales.append((i, scale))
    tl = make_timeline([1.0] * steps, lr=0.01)
    tl.amp = amp
    return tl


def test_a_scale_collapsing_on_nan_gradients_is_found_with_the_bfloat16_fix():
    tl = scaler_run(60, skips=range(60))  # NaN in every gradient: every step is thrown away
    (finding,) = findings("amp_overflow", tl)
    assert finding.severity is Severity.WARNING
    assert finding.step == 0 and finding.where is None
    assert finding.evidence["skipped_steps"] == finding.evidence["updates"] == 60
    assert finding.evidence["lowest_scale"] == finding.evidence["last_scale"] == 65536.0 / 2**60
    assert finding.evidence["late_skip_share"] == 1.0
    assert len(finding.evidence["scale_history"]) <= 41
    assert "collapsed" in finding.title
    actions = [f.action for f in finding.fixes]
    assert actions == ["find_nonfinite_gradient", "mixed_precision"]  # clipping cannot help when all are NaN
    assert finding.fixes[1].params == {"dtype": "bfloat16"}
    assert "scaler.unscale_(optimizer)" in finding.fixes[0].snippet


def test_late_skips_after_calibration_are_found_with_clipping():
    # 3 skips while calibrating, then 3 of the second half's 10 updates: 30% > 25%; the scale stays above 1
    tl = scaler_run(20, skips=[0, 1, 2, 12, 15, 18])
    (finding,) = findings("amp_overflow", tl)
    assert finding.evidence["late_skip_share"] == pytest.approx(0.3)
    assert finding.evidence["lowest_scale"] == 65536.0 / 2**6 and finding.evidence["skipped_steps"] == 6
    assert "30% of them after it had calibrated" in finding.title
    assert finding.step == 0
    clip = finding.fixes[-1]
    assert clip.action == "clip_gradients" and clip.params == {"max_norm": 1.0}


def test_calibrating_from_a_huge_scale_is_by_design():
    # init_scale 3e38: the scale halves until the scaled gradients fit, then never skips again
    assert findings("amp_overflow", scaler_run(60, skips=range(8), init_scale=3e38)) == []


def test_an_occasional_skip_in_a_long_run_is_by_design():
    tl = scaler_run(1000, skips=[0, 1, 2, 3, 410, 730, 905])
    assert tl.amp.scales[-1][1] > 1
    assert findings("amp_overflow", tl) == []


def test_the_late_skip_share_is_a_threshold():
    tl = scaler_run(20, skips=[0, 1, 2, 12, 15, 18])
    assert findings("amp_overflow", tl, late_skip_share=0.3) == []  # 30% is not above 30%
    healthy = scaler_run(40, skips=[0, 1, 2, 25, 33])  # 2 of the last 20: 10%
    assert findings("amp_overflow", healthy) == []
    assert len(findings("amp_overflow", healthy, late_skip_share=0.05)) == 1


def test_the_lowest_scale_is_a_threshold():
    tl = scaler_run(1000, skips=[0, 1, 2, 3, 410, 730, 905])  # lowest scale 65536 / 2**7 = 512
    (finding,) = findings("amp_overflow", tl, min_scale=1024)
    assert finding.evidence["lowest_scale"] == 512.0 and "collapsed" in finding.title


def test_too_few_updates_give_no_verdict():
    tl = scaler_run(8, skips=range(8))
    assert findings("amp_overflow", tl) == []
    assert len(findings("amp_overflow", tl, min_updates=8)) == 1


def test_a_run_without_a_scaler_is_clean():
    assert findings("amp_overflow", Timeline()) == []
    assert findings("amp_overflow", make_timeline([1.0] * 50)) == []


def test_sustained_skips_with_a_regrowing_scale_are_found():
    # growth_interval=2: the scale regrows between skips, so it never collapses; a third are skipped
    tl = scaler_run(300, skips=[u for u in range(300) if u % 3 == 0 or u < 3], growth_interval=2)
    assert min(s for _, s in tl.amp.scales) >= 1
    (finding,) = findings("amp_overflow", tl)
    assert finding.evidence["late_skip_share"] == pytest.approx(1 / 3, abs=0.01)


def test_late_skips_are_seen_past_the_recorded_history():
    """The recorder keeps the last 2000 scales (MAX_AMP_RECORDS): past 4000 updates the second half
    is found by each entry's update index, not by its position in what is kept."""
    tl = scaler_run(5000, skips=[u for u in range(5000) if u % 3 == 0 or u < 3], growth_interval=2)
    del tl.amp.scales[:-2000]  # what the recorder keeps
    del tl.amp.skipped_steps[:-2000]
    assert min(s for _, s in tl.amp.scales) >= 1
    (finding,) = findings("amp_overflow", tl)
    assert finding.evidence["late_skip_share"] == pytest.approx(1 / 3, abs=0.01)


def test_a_long_healthy_scaler_history_trimmed_to_its_end_stays_clean():
    """Its control: the same 5000 updates with the calibration skips and one skip in 500 after."""
    tl = scaler_run(5000, skips=[0, 1, 2, *range(500, 5000, 500)], growth_interval=200)
    del tl.amp.scales[:-2000]
    del tl.amp.skipped_steps[:-2000]
    assert findings("amp_overflow", tl) == []
