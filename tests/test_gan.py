"""GANs for real: two models, two optimizers, two losses taking turns. Each model has its own loss
series, the roles come from the data flowing between them, and the classic mistakes are found
while the healthy recipe stays clean."""

from __future__ import annotations

import pytest

from tests.conftest import SCRIPTS, run_script
from torchdoctor.findings import Severity
from torchdoctor.jsonreport import to_dict

GAN = SCRIPTS / "small_gan_faults.py"
GAN_CODES = {"fake_not_detached", "optimizer_holds_other_model", "mode_collapse", "discriminator_overpowering"}


def test_the_healthy_gan_has_both_models_series_and_no_alarm():
    result = run_script(GAN, "--steps", "80")
    tl = result.report.timeline
    assert tl.task == "generation"
    assert (tl.roles.generator, tl.roles.discriminator) == ("netG", "netD")
    series = tl.model_loss_series()
    assert set(series) == {"netG", "netD"} and len(series["netG"]) == len(series["netD"]) == 80
    assert series["netD"][0][1] == pytest.approx(1.4, abs=0.1)  # two BCE terms at chance: 2 ln 2
    assert tl.model_grad_norms("netG") and tl.model_grad_norms("netD")
    assert len(tl.roles.diversity) >= 6 and min(v for _, v in tl.roles.diversity) > 0.3
    assert not [f for f in result.report.findings if f.severity >= Severity.WARNING], result.report.codes()
    assert to_dict(result.report)["run"]["task"] == "generation"


@pytest.mark.parametrize(("fault", "code", "where"), [
    ("not_detached", "fake_not_detached", "netD"),
    ("wrong_optimizer", "optimizer_holds_other_model", "netG"),
    ("shared_noise", "mode_collapse", "netG"),
])
def test_the_classic_gan_mistakes_are_found_and_named(fault, code, where):
    result = run_script(GAN, "--fault", fault, "--steps", "80")
    found = result.report.by_code(code)
    assert found is not None, result.report.codes()
    assert found.where == where
    assert {f.code for f in result.report.findings} & GAN_CODES == {code}
    if fault == "wrong_optimizer":  # the untrained generator's parameters are the consequence
        frozen = result.report.by_code("frozen_parameters")
        assert frozen is not None and frozen.caused_by == "optimizer_holds_other_model"
        # the second optimizer over netD is its companion, not its replacement: one step an iteration
        tl = result.report.timeline
        assert len(tl.steps) == 80 and [p.reason for p in tl.phases()] == ["start"]
