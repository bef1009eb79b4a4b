"""Memory arithmetic and the fixes that follow from it, shared by the memory rules.

Everything here reads one measured training step (`MemoryProfile`): parameters, gradients and
optimizer state do not depend on the batch size; activations and the batch grow with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..findings import Fix
from ..formatting import format_bytes
from ..timeline import MemoryProfile, Timeline
from ._fixes import at_source, from_a_setting

HALF_PRECISION = frozenset({"float16", "bfloat16"})


def breakdown(profile: MemoryProfile | None) -> dict[str, int | None]:
    if profile is None:
        return {}
    return {
        "parameters": profile.parameters,
        "gradients": profile.gradients,
        "optimizer_state": profile.optimizer_state,
        "activations": profile.activations,
        "batch": profile.batch,
        "batch_size": profile.batch_size,
    }


def largest_parts(profile: MemoryProfile) -> list[str]:
    """The breakdown in words, largest first: `activations 1.2 GiB, optimizer state 300 MiB`."""
    parts = [("activations", profile.activations + profile.batch), ("parameters", profile.parameters),
             ("gradients", profile.gradients), ("optimizer state", profile.optimizer_state)]
    return [f"{name} {format_bytes(size)}" for name, size in sorted(parts, key=lambda p: -p[1]) if size]


@dataclass
class Checkpointing:
    modules: list[str]
    saved: int  # bytes of activations no longer held at the peak


def _inside(name: str, block: str) -> bool:
    return name == block or name.startswith(block + ".")


def activation_peak(profile: MemoryProfile, blocks: dict[str, int]) -> int:
    """The most activation memory held at once with `blocks` ({name: bytes it keeps}) checkpointed.

    Backward frees saved tensors in the reverse order of the forward, and recomputes a block when
    it reaches it: then what was saved before the block (and the inputs the earlier blocks kept)
    is still there, the block's own activations are there again, and all that came after it is
    gone. The peak is the larger of the end of the forward and the worst recomputation.
    """
    held = 0  # saved and still alive at this point of the forward, checkpointing applied
    worst = 0
    current: str | None = None
    size = 0
    for owner, nbytes, others in profile.saves:
        block = next((b for b in blocks if _inside(owner, b)), None)
        if block is not None and any(not _inside(other, block) for other in others):
            block = None  # also saved outside the block (its output, by the next op): kept anyway
        if block != current and current is not None:
            worst = max(worst, held + blocks[current] + size)
            held += blocks[current]
            size = 0
        current = block
        if block is None:
            held += nbytes
        else:
            size += nbytes
    if current is not None:
        worst = max(worst, held + blocks[current] + size)
        held += blocks[current]
    return max(held, worst)


def checkpoint_plan(profile: MemoryProfile, max_modules: int = 8) -> Checkpointing | None:
    """Which modules to wrap in `torch.utils.checkpoint`, and what that saves at the peak.

    A checkpointed block keeps only its input and recomputes its activations in backward. Each
    block size cap is tried: the disjoint blocks up to that size that give back the most, whose
    effect is then simulated over the forward's saved tensors in order (`activation_peak`).
    """
    modules = profile.modules
    if not profile.saves:
        return None
    candidates = []
    for m in modules:
        if m.name == profile.root:
            continue
        held = sum(x.activations for x in modules if _inside(x.name, m.name))
        if held - m.input_bytes > 0:
            candidates.append((m.name, held, held - m.input_bytes, m.input_bytes))
    if not candidates:
        return None
    base = activation_peak(profile, {})
    best: Checkpointing | None = None
    order = {m.name: i for i, m in enumerate(modules)}
    for cap in sorted({held for _, held, _, _ in candidates}):
        chosen: dict[str, int] = {}
        for name, held, _, keep in sorted(candidates, key=lambda c: -c[2]):
            if held > cap or len(chosen) >= max_modules or any(_related(name, other) for other in chosen):
                continue
            chosen[name] = keep
        saved = base - activation_peak(profile, chosen)
        if saved > 0 and (best is None or saved > best.saved
                          or saved == best.saved and len(chosen) < len(best.modules)):
            best = Checkpointing(sorted(chosen, key=lambda n: order.get(n, 0)), saved)
    return best


def _related(a: str, b: str) -> bool:
    return _inside(a, b) or _inside(b, a)


def largest_batch(profile: MemoryProfile, limit: int, margin: float, other: int = 0) -> int | None:
    """The largest batch size whose step fits in `limit` with `margin` of it kept free. `other`:
    memory the breakdown does not account for (CUDA context, workspaces, fragmentation)."""
    per_sample = profile.per_sample
    if not per_sample:
        return None
    fixed = profile.parameters + profile.gradients + profile.optimizer_state + other
    room = limit * (1 - margin) - fixed
    return max(0, math.floor(room / per_sample))


def memory_fixes(tl: Timeline, profile: MemoryProfile | None, limit: int | None, margin: float,
                 other: int = 0) -> list[Fix]:
    """What lowers the step's peak, the batch size that fits first, then by bytes saved."""
    if profile is None:
        return []
    fixes: list[tuple[int, Fix]] = []
    first: list[Fix] = []
    bs = profile.batch_size
    if limit is not None and bs:
        fits = largest_batch(profile, limit, margin, other)
        if fits is not None and 0 < fits < bs:
            first.append(_batch_fix(tl, profile, fits, limit, margin, other))
    plan = checkpoint_plan(profile)
    if plan is not None:
        fixes.append((plan.saved, _checkpoint_fix(profile, plan)))
    float32 = profile.activation_dtypes.get("float32", 0)
    if float32 and not set(profile.activation_dtypes) & HALF_PRECISION:
        fixes.append((float32 // 2, _amp_fix(tl, float32 // 2)))
    if profile.gradients_in_forward:
        fixes.append((profile.gradients_in_forward, _set_to_none_fix(profile)))
    opt = tl.optimizer_name(None) or ""
    if profile.optimizer_state > max(profile.activations, profile.parameters) and opt.startswith("Adam"):
        saved = profile.optimizer_state - profile.parameters
        fixes.append((saved, _optimizer_fix(opt, profile, saved)))
    return first + [fix for _, fix in sorted(fixes, key=lambda f: -f[0])]


def _batch_fix(tl: Timeline, profile: MemoryProfile, fits: int, limit: int, margin: float, other: int) -> Fix:
    bs = profile.batch_size or 1
    per_sample = profile.per_sample or 0
    estimate = profile.parameters + profile.gradients + profile.optimizer_state + other + fits * per_sample
    steps = math.ceil(bs / fits)
    micro = math.ceil(bs / steps)
    params = {"batch_size": fits, "current_batch_size": bs, "estimated_peak_bytes": int(estimate),
              "limit_bytes": limit, "margin": margin, "per_sample_bytes": int(per_sample),
              "accumulation_steps": steps, "micro_batch_size": micro}
    text = (f"Use batch size {fits} instead of {bs}: each sample holds {format_bytes(per_sample)} of "
            f"activations, so the step needs about {format_bytes(estimate)}, keeping {margin:.0%} of the "
            f"{format_bytes(limit)} free. To keep the effective batch of {bs}, accumulate the gradients of "
            f"{steps} micro-batches of {micro}")
    lr = tl.last_lr
    if lr:
        text += f"; or step on each batch of {fits} and scale the learning rate to about {lr * fits / bs:.3g}"
    # the script's own loader line with the batch that fits (every other argument kept)
    location = at_source(tl, "train_loader", "batch_size", str(fits), position=1)
    if location:
        text += "." + from_a_setting(tl, location["before"], "batch_size", str(fits), position=1, what="DataLoader")
        text = text.rstrip(".")
    return Fix("reduce_batch_size", text + ".", params,
               f"loader = DataLoader(dataset, batch_size={micro}, ...)\n"
               f"for i, (x, y) in enumerate(loader):\n"
               f"    loss = criterion(model(x), y) / {steps}\n"
               f"    loss.backward()\n"
               f"    if (i + 1) % {steps} == 0:\n"
               f"        optimizer.step()\n"
               f"        optimizer.zero_grad()", location=location)


def _checkpoint_fix(profile: MemoryProfile, plan: Checkpointing) -> Fix:
    shown = ", ".join(plan.modules[:6]) + (f" and {len(plan.modules) - 6} more" if len(plan.modules) > 6 else "")
    after = profile.step_total - plan.saved
    first = plan.modules[0]
    attr = f"self.{first}" if first.isidentifier() else f"self[{first}]" if first.isdigit() else f"model.{first}"
    return Fix(
        "gradient_checkpointing",
        f"Checkpoint {shown}: they hold the most activation memory; recomputing them in backward "
        f"saves about {format_bytes(plan.saved)} (step peak about {format_bytes(after)}), for roughly "
        "one more forward of those blocks per step.",
        {"modules": plan.modules, "saved_bytes": plan.saved, "estimated_peak_bytes": after},
        "from torch.utils.checkpoint import checkpoint\n"
        f"# in forward(), for each of {', '.join(plan.modules[:6])}{' ...' if len(plan.modules) > 6 else ''}:\n"
        f"x = checkpoint({attr}, x, use_reentrant=False)   # instead of x = {attr}(x)",
    )


def _amp_fix(tl: Timeline, saved: int) -> Fix:
    device = "cuda" if tl.memory.device.startswith("cuda") else "cpu"
    return Fix(
        "mixed_precision",
        f"Run the forward in bfloat16 autocast: activations are saved in half precision, about "
        f"{format_bytes(saved)} less (weights, gradients and optimizer state stay float32).",
        {"saved_bytes": saved, "dtype": "bfloat16"},
        f"with torch.autocast(device_type=\"{device}\", dtype=torch.bfloat16):\n"
        "    loss = criterion(model(x), y)\nloss.backward()",
    )


def _set_to_none_fix(profile: MemoryProfile) -> Fix:
    return Fix(
        "zero_grad_set_to_none",
        f"The gradients ({format_bytes(profile.gradients_in_forward)}) were still allocated while the "
        "forward ran. Free them before it: call optimizer.zero_grad(set_to_none=True) at the top of "
        "the loop, before the forward, not between the forward and backward().",
        {"saved_bytes": profile.gradients_in_forward},
        "for x, y in loader:\n    optimizer.zero_grad(set_to_none=True)\n    loss = criterion(model(x), y)\n"
        "    loss.backward()\n    optimizer.step()",
    )


def _optimizer_fix(name: str, profile: MemoryProfile, saved: int) -> Fix:
    return Fix(
        "lighter_optimizer",
        f"{name} keeps {format_bytes(profile.optimizer_state)} of state, the largest part of the step "
        f"(two moments per weight). SGD with momentum keeps one ({format_bytes(saved)} less); "
        "torch.optim.Adafactor factors the second moment and keeps far less.",
        {"saved_bytes": saved, "optimizer": "SGD", "current_optimizer": name},
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)\n"
        "# or: optimizer = torch.optim.Adafactor(model.parameters())",
    )
