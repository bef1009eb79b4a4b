"""fake_not_detached: the discriminator's step backpropagates into the generator."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._gan import optimizer_of
from .base import finding_for, rule


@rule("fake_not_detached", Severity.WARNING,
      "A GAN's discriminator step backpropagates into the generator (`fake` not detached)")
def fake_not_detached(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the losses backwarded before the discriminator's optimizer step reach the
    generator's parameters: the discriminator was given the generator's output itself
    (`netD(fake)`) instead of `netD(fake.detach())`. Read from the backward graphs of the first
    steps, where the generator and discriminator are told apart by the data flowing between them.

    Why it matters: every discriminator step also runs backward through the whole generator and
    adds the discriminator's gradient to the generator's: wasted time and memory, and when the
    generator's gradients are not zeroed before its own step (or `retain_graph=True` keeps the
    graph), the generator is pushed to help the discriminator. Without `retain_graph` the
    generator's own backward then fails ('Trying to backward through the graph a second time').

    Not flagged: the generator's step reaching the discriminator (its loss goes through the
    discriminator by design).
    """
    roles = tl.roles
    g, d = roles.generator, roles.discriminator
    if g is None or d is None:
        return  # not a GAN: nothing to judge, and nothing missing
    d_opt = optimizer_of(tl, d)
    if d_opt is None or optimizer_of(tl, g) is None:
        return
    if g not in d_opt.get("reaches", []):
        return
    title = f"{d}'s optimizer steps on a loss whose backward runs into {g}: the fake batch was not detached"
    yield finding_for(
        "fake_not_detached", title, where=d,
        evidence={"discriminator": d, "generator": g, "optimizer": d_opt.get("optimizer"),
                  "optimizer_index": d_opt.get("index"), "reaches": list(d_opt.get("reaches", []))},
        fixes=[Fix("detach_fake",
                   f"Detach the generator's output for the discriminator's step: its loss then stops at the fake "
                   f"batch, and {g}'s gradients come from its own loss only.",
                   {}, f"output = {d}(fake.detach())  # the discriminator's step\n"
                       f"# ... and {d}(fake) again, not detached, for {g}'s step")],
    )
