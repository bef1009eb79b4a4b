"""amp_clip_before_unscale on hand-made AMP records: clip_grad_norm_ on still-scaled gradients,
beside unscale_ then clip, a clip without a scaler, and a scaled clip now and then."""

from __future__ import annotations

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline


def amp_run(clips: int, scaled: int, scale: float = 65536.0, norm: float = 1.7e5, max_norm: float | None = 1.0,
            samples: int = 16) -> Timeline:
    """A run with `clips` clip_grad_norm_ calls under a GradScaler, the first `scaled` of them on
    scaled gradients, of which the first `samples` had their scale and norm read back."""
    tl = make_timeline([1.0] * clips)
    amp = tl.amp
    amp.clips, amp.scaled_clips = clips, scaled
    amp.clip_samples = [{"step": s, "scale": scale, "norm": norm, "max_norm": max_norm}
                        for s in range(min(scaled, samples))]
    return tl


def test_a_clip_before_unscale_is_found_with_the_scale_and_the_effective_max_norm():
    (finding,) = findings("amp_clip_before_unscale", amp_run(128, 128, norm=1.6e5))
    assert finding.severity is Severity.WARNING and finding.step == 0
    ev = finding.evidence
    assert ev["scale"] == 65536.0 and ev["max_norm"] == 1.0 and ev["clip_norm"] == 1.6e5
    assert ev["effective_max_norm"] == 1.0 / 65536 and abs(ev["true_norm"] - 1.6e5 / 65536) < 1e-9
    assert (ev["scaled_clips"], ev["clips"]) == (128, 128)
    assert "max_norm=1 acts as 1.5e-05 on the true gradients" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "unscale_before_clip" and fix.params == {"max_norm": 1.0, "scale": 65536.0}
    assert fix.snippet.index("scaler.unscale_(optimizer)") < fix.snippet.index("clip_grad_norm_")


def test_unscale_then_clip_is_clean():
    assert findings("amp_clip_before_unscale", amp_run(128, 0)) == []


def test_a_clip_without_a_scaler_records_nothing_and_is_clean():
    assert findings("amp_clip_before_unscale", make_timeline([1.0] * 50)) == []


def test_a_few_scaled_clips_are_not_enough():
    assert findings("amp_clip_before_unscale", amp_run(2, 2)) == []
    # one optimizer of two clipped before unscale now and then: a minority of the clips
    assert findings("amp_clip_before_unscale", amp_run(200, 40)) == []


def test_without_read_back_values_the_finding_still_counts_the_clips():
    tl = amp_run(10, 10, max_norm=None, samples=0)
    (finding,) = findings("amp_clip_before_unscale", tl)
    assert finding.evidence["scale"] is None and finding.evidence["scaled_clips"] == 10
    assert "max_norm=1.0" in finding.fixes[0].snippet


def test_explain_text_names_the_recipe():
    from torchdoctor.rules import REGISTRY

    text = REGISTRY["amp_clip_before_unscale"].explanation
    assert "unscale_" in text and "Not flagged" in text
