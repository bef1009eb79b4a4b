"""Which fix `torchdoctor fix` can apply from outside the code, and how: one intervention per fix
action, each a context manager that installs its change to PyTorch (a wrapped constructor, a
global hook) on entry and removes it on exit, whatever the run did. Nothing touches the user's
file; the change lives for one run of the script in this process.

An action is applied only when the finding gave the numbers it needs: a `fix_loss_input` that
names the module to drop can be applied, one that means "compute the loss from logits" in the
user's own function cannot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from . import loop_fixes, model_fixes, optimizer_fixes

Intervention = Callable[[dict[str, Any]], contextlib.AbstractContextManager[None]]

# action -> the intervention, and the params it needs (all of one of the alternatives).
SUPPORTED: dict[str, tuple[Intervention, tuple[tuple[str, ...], ...]]] = {
    "lower_learning_rate": (optimizer_fixes.set_learning_rate, (("lr",),)),
    "raise_learning_rate": (optimizer_fixes.set_learning_rate, (("lr",),)),
    "clip_gradients": (optimizer_fixes.clip_gradients, (("max_norm",),)),
    "add_weight_decay": (optimizer_fixes.add_weight_decay, (("weight_decay",),)),
    "call_zero_grad": (optimizer_fixes.call_zero_grad, ((),)),
    "skip_nonfinite_steps": (optimizer_fixes.skip_nonfinite_steps, ((),)),
    "optimize_all_parameters": (optimizer_fixes.optimize_all_parameters, ((),)),
    "change_activation": (model_fixes.change_activation, (("modules", "with"), ("modules", "activation"))),
    "add_normalization": (model_fixes.add_normalization, (("after",), ("modules",), ("module",))),
    "fix_loss_input": (model_fixes.remove_module, (("module",),)),
    "add_epsilon": (model_fixes.add_epsilon, (("eps", "after_module"),)),
    "normalize_input": (model_fixes.normalize_input, (("mean", "std"),)),
    "clean_input_data": (model_fixes.clean_input_data, ((),)),
    "call_eval": (model_fixes.call_eval, ((),)),
    "augment_data": (model_fixes.augment_data, (("padding",),)),
    "gradient_checkpointing": (model_fixes.gradient_checkpointing, (("modules",),)),
    "add_dropout": (model_fixes.add_dropout, (("before",), ("modules",))),
    "more_dataloader_workers": (loop_fixes.more_dataloader_workers, (("num_workers",),)),
    "reduce_batch_size": (loop_fixes.reduce_batch_size, (("batch_size",),)),
    "detach_logged_tensors": (loop_fixes.detach_logged_tensors, ((),)),
    "early_stopping": (loop_fixes.early_stopping, (("step",),)),
}


def supported(action: str, params: dict[str, Any]) -> bool:
    """Whether `torchdoctor fix` can apply this fix from outside: a known action, its numbers there."""
    entry = SUPPORTED.get(action)
    return entry is not None and any(all(params.get(name) is not None for name in needs) for needs in entry[1])


def intervention(action: str, params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """The context manager applying `action` with `params` for one run; KeyError when unsupported."""
    return SUPPORTED[action][0](params)
