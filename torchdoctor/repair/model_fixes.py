"""Interventions that change what the model computes, for one re-run: the fix as the user would
write it in their model, simulated with forward hooks on the modules the finding names.

The model is found where the script first calls it: a global forward pre-hook sees every call,
and a call made while no other module is running is a root call (the model, or a loss module). On
a model's first root call the named modules are looked up in it and their hooks installed, so the
first forward already runs with the fix. Everything is removed when the run ends.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from ..patching import swapped

RootCall = Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...] | None]


@contextlib.contextmanager
def root_calls(on_model: Callable[[nn.Module], list[Any]] | None = None,
               on_call: RootCall | None = None) -> Iterator[None]:
    """Watch the script's root calls: `on_model(model)` once per model (a root module with
    parameters) before its first forward, returning the handles it installed; `on_call(model,
    args)` before every root forward of a model, returning new positional arguments or None."""
    depth = [0]
    seen: weakref.WeakSet[nn.Module] = weakref.WeakSet()
    installed: list[Any] = []

    def pre(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        depth[0] += 1
        if depth[0] != 1 or next(module.parameters(), None) is None:
            return None
        if module not in seen:
            seen.add(module)
            if on_model is not None:
                installed.extend(on_model(module))
        return on_call(module, args) if on_call is not None else None

    def post(module: nn.Module, args: Any, output: Any) -> None:
        depth[0] = max(0, depth[0] - 1)

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, always_call=True)]
    try:
        yield
    finally:
        for handle in [*handles, *installed]:
            handle.remove()


def _named(model: nn.Module, names: list[str]) -> list[nn.Module]:
    """The modules `names` point at in `model` (a second model's names carry `label:` in front);
    empty unless every name is found, so a fix meant for another model is not applied here."""
    table = dict(model.named_modules())
    plain = [n.split(":", 1)[-1] for n in names]
    return [table[n] for n in plain] if plain and all(n in table for n in plain) else []


def _on_named(names: list[str], install: Callable[[nn.Module], Any]) -> contextlib.AbstractContextManager[None]:
    return _on_named_each(names, lambda module, name: install(module))


def _on_named_each(names: list[str],
                   install: Callable[[nn.Module, str], Any]) -> contextlib.AbstractContextManager[None]:
    """`install(module, name)` for each named module, in the first model that has them all; the
    handles it returns (None for none) are removed when the run ends."""
    done: list[bool] = []

    def on_model(model: nn.Module) -> list[Any]:
        modules = [] if done else _named(model, names)
        if modules:
            done.append(True)
        handles = [install(m, n) for m, n in zip(modules, names, strict=False)]
        return [h for h in handles if h is not None]

    return root_calls(on_model=on_model)


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return {"ReLU": F.relu, "LeakyReLU": F.leaky_relu, "GELU": F.gelu, "SiLU": F.silu,
            "Tanh": torch.tanh, "ELU": F.elu}.get(name, F.gelu)


def change_activation(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """The named activation modules compute `with` (ReLU, GELU, LeakyReLU...) on their input."""
    new = _activation(str(params.get("with") or params.get("activation")))

    def install(module: nn.Module) -> Any:
        return module.register_forward_hook(lambda m, args, out: new(args[0]))

    return _on_named(list(params["modules"]), install)


def _normalized(x: Any) -> Any:
    """Batch statistics per channel (dim 1), no affine: what a freshly added BatchNorm computes in
    training; a tensor with one value per channel is left as it is."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.numel() // x.shape[1] < 2:
        return x
    return F.batch_norm(x, None, None, training=True)


def add_normalization(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """A parameter-free BatchNorm after each module of `after`, or before each of `modules` /
    `module` (the saturating activation whose input it keeps in range)."""
    if params.get("after"):
        return _on_named(list(params["after"]),
                         lambda m: m.register_forward_hook(lambda mod, args, out: _normalized(out)))
    before = list(params.get("modules") or [params["module"]])
    return _on_named(before, lambda m: m.register_forward_pre_hook(
        lambda mod, args: (_normalized(args[0]), *args[1:]) if args else None))


def remove_module(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """The named module passes its input through (a softmax before a loss that applies its own)."""
    return _on_named([params["module"]], lambda m: m.register_forward_hook(lambda mod, args, out: args[0]))


def add_epsilon(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """`eps` added to the output of `after_module`: the value a sqrt/log/division downstream meets
    is never exactly zero."""
    eps = float(params["eps"])
    return _on_named([params["after_module"]], lambda m: m.register_forward_hook(
        lambda mod, args, out: out + eps if isinstance(out, torch.Tensor) else None))


def _map_floats(args: tuple[Any, ...], change: Callable[[torch.Tensor], torch.Tensor]) -> tuple[Any, ...]:
    return tuple(change(a) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def _batch_inputs(batch: Any, change: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """The batch with its input changed: the first floating tensor of an (x, y, ...) tuple or list,
    of a dict's values, or the batch itself."""
    if isinstance(batch, torch.Tensor):
        return change(batch) if batch.is_floating_point() else batch
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else None
    if isinstance(first, torch.Tensor) and first.is_floating_point():
        return [change(first), *batch[1:]] if isinstance(batch, list) else (change(first), *batch[1:])
    if isinstance(batch, dict):
        key = next((k for k, v in batch.items() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
        if key is not None:
            return {**batch, key: change(batch[key])}
    return batch


@contextlib.contextmanager
def input_transform(change: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """`change` applied to what the model is given, where the fix would go: to each DataLoader
    batch's input (every loader: training and validation see the same data), or, in a script that
    iterates no DataLoader, to the model's floating arguments at its root call."""
    from torch.utils.data.dataloader import _BaseDataLoaderIter

    loader_seen: list[bool] = []

    def wrap(original: Any) -> Callable[[Any], Any]:
        def __next__(it: Any) -> Any:
            loader_seen.append(True)
            return _batch_inputs(original(it), change)
        return __next__

    with swapped(_BaseDataLoaderIter, "__next__", wrap), \
            root_calls(on_call=lambda model, args: None if loader_seen else _map_floats(args, change)):
        yield


def normalize_input(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """The inputs divided by `divide_by` and standardized with the rule's mean and std (per
    channel, along dim 1, when they are lists)."""
    divide = params.get("divide_by")
    mean, std = params["mean"], params["std"]

    def change(x: torch.Tensor) -> torch.Tensor:
        if divide:
            x = x / float(divide)
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device)
        if m.dim() == 1 and x.dim() >= 2 and x.shape[1] == m.numel():
            shape = (1, -1) + (1,) * (x.dim() - 2)
            m, s = m.view(shape), s.view(shape)
        return (x - m) / s

    return input_transform(change)


def clean_input_data(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """NaN and Inf in the inputs replaced by 0 (no host read: `nan_to_num` on every batch)."""
    return input_transform(lambda x: torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))


def augment_data(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """Training forwards (gradients on, the model in `train()`) see each image shifted by up to
    `padding` pixels (zero-padded, a random crop) and, where `flip`, mirrored at random; evaluation
    forwards see the data as it is."""
    pad = int(params.get("padding") or 0)
    flip = bool(params.get("flip", True))

    def change(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return x
        n, _, h, w = x.shape
        if flip:
            mirrored = torch.rand(n, device=x.device) < 0.5
            x = torch.where(mirrored.view(n, 1, 1, 1), x.flip(3), x)
        if pad:
            padded = F.pad(x, (pad, pad, pad, pad))
            dy, dx = torch.randint(0, 2 * pad + 1, (2, n)).tolist()
            x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
        return x

    def on_call(model: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not model.training or not torch.is_grad_enabled():
            return None
        return (change(args[0]), *args[1:]) if args and isinstance(args[0], torch.Tensor) else None

    return root_calls(on_call=on_call)


@contextlib.contextmanager
def add_dropout(params: dict[str, Any]) -> Iterator[None]:
    """Dropout at the rule's p on the input of each module of `before` (training forwards only), or
    the model's own dropout modules raised to `p`."""
    before = list(params.get("before") or [])
    rates = params.get("p")
    if before:
        def install(module: nn.Module, name: str) -> Any:
            p = float(rates.get(name, 0.5)) if isinstance(rates, dict) else float(rates or 0.5)
            return module.register_forward_pre_hook(
                lambda mod, args: (F.dropout(args[0], p, mod.training), *args[1:]) if args else None)

        with _on_named_each(before, install):
            yield
        return
    changed: list[tuple[nn.Module, float]] = []

    def raise_p(module: nn.Module, name: str) -> Any:
        changed.append((module, module.p))
        module.p = float(rates or 0.5)
        return None

    try:
        with _on_named_each(list(params.get("modules") or []), raise_p):
            yield
    finally:
        for module, p in changed:
            module.p = p


@contextlib.contextmanager
def call_eval(params: dict[str, Any]) -> Iterator[None]:
    """`model.eval()` before a forward made with gradients off (an evaluation pass) and
    `model.train()` before the next forward with gradients on: the calls the fix adds around the
    validation loop."""
    switched: weakref.WeakSet[nn.Module] = weakref.WeakSet()

    def on_call(model: nn.Module, args: tuple[Any, ...]) -> None:
        evaluating = not torch.is_grad_enabled() or torch.is_inference_mode_enabled()
        if evaluating and model.training:
            model.eval()
            switched.add(model)
        elif not evaluating and model in switched:
            model.train()
            switched.discard(model)
        return None

    with root_calls(on_call=on_call):
        yield


class _Restore:
    """A handle whose remove() gives a module back the forward it had."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def remove(self) -> None:
        self.module.__dict__.pop("forward", None)


def gradient_checkpointing(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """Each named block's training forward (gradients on, the block in train()) runs under
    `torch.utils.checkpoint` (non-reentrant): its activations are recomputed in backward instead of
    kept, the numbers are the same."""
    from torch.utils.checkpoint import checkpoint

    def install(module: nn.Module, name: str) -> Any:
        original = module.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            if torch.is_grad_enabled() and module.training:
                return checkpoint(original, *args, use_reentrant=False, **kwargs)
            return original(*args, **kwargs)

        module.forward = forward  # type: ignore[method-assign]
        return _Restore(module)

    return _on_named_each(list(params["modules"]), install)
