"""Which models the run trains: found on their first call, named as `named_modules()` names them,
and their layers recorded in forward order, so findings can say "features.3 (Conv2d)"."""

from __future__ import annotations

import linecache
import os
import re
import sys
import types
from dataclasses import dataclass, field

import torch

from ..layers import EMBEDDING_TYPES, NORMALIZATION_TYPES
from ..probes import tracing
from ..timeline import Event, LayerInfo, ModelInfo, Timeline

# Module discovery (global hooks on every module call) ends after this many steps; from then on
# only the roots found are hooked (probes/modules.py).
SETTLE_AFTER = 3
MAX_LOSS_MODULES = 16


def is_loss_module(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.modules.loss._Loss)


def layer_kind(module: torch.nn.Module) -> str:
    name = type(module).__name__
    if name in NORMALIZATION_TYPES:
        return "norm"
    if name in EMBEDDING_TYPES:
        return "embedding"
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
        return "weight"
    return "other"


def compiled_original(module: torch.nn.Module) -> torch.nn.Module | None:
    """The model inside a torch.compile wrapper (OptimizedModule), if `module` is one. Asked at
    every training forward: the type is looked at first, because a module without the attribute
    answers `getattr` by raising inside `Module.__getattr__` (2 us, twice a step)."""
    if type(module).__name__ != "OptimizedModule":
        return None
    inner = getattr(module, "_orig_mod", None)
    return inner if isinstance(inner, torch.nn.Module) else None


def input_shape(args: tuple) -> list[int] | None:
    """The shape of a forward's first input: a tensor's, or a detector's list of images' first."""
    first = args[0] if args else None
    if isinstance(first, (list, tuple)) and first and isinstance(first[0], torch.Tensor):
        first = first[0]
    return list(first.shape) if isinstance(first, torch.Tensor) else None


OWN_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


LOSS_LIKE = re.compile(r"loss|criterion|crit$", re.IGNORECASE)
CALLEE = re.compile(r"(?<![\w.)\]])((?:self\.)?[A-Za-z_]\w*)\s*\(")


def user_frame(depth: int = 40) -> types.FrameType | None:
    """The first frame outside torch and torchdoctor (the user's code that made this call), within
    `depth` frames; None when there is none."""
    try:
        frame = sys._getframe(2)
    except ValueError:
        return None
    while frame is not None and depth > 0:
        depth -= 1
        filename = frame.f_code.co_filename
        if not filename.startswith(OWN_DIRS) and not filename.startswith("<frozen"):
            return frame
        frame = frame.f_back
    return None


def script_name(module: torch.nn.Module, depth: int = 40) -> str | None:
    """The name the script calls a model by (`netG` in `netG(noise)`, `self.generator(z)`), from
    the first frame outside torch and torchdoctor; read once, when the model is discovered.

    A function's locals are never read through `frame.f_locals`: on Python < 3.13 that leaves a
    snapshot of them on the frame, holding every local (the epoch's DataLoader) until the
    function returns. At module level its names are its globals, checked by identity; in a
    function the call on the frame's line names it, when that line calls one local or attribute."""
    frame = user_frame(depth)
    if frame is None:
        return None
    if frame.f_code.co_name == "<module>":
        return next((name for name, value in frame.f_globals.items() if value is module), None)
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    local = set(frame.f_code.co_varnames) | set(frame.f_code.co_cellvars) | set(frame.f_code.co_freevars)
    names = []
    for callee in CALLEE.findall(line):
        if LOSS_LIKE.search(callee):
            continue  # `criterion(netD(real), label)`: the criterion is no model
        if callee.startswith("self."):
            names.append(callee[5:])
        elif callee in local:
            names.append(callee)
        elif frame.f_globals.get(callee) is module:
            return callee
    return names[0] if len(names) == 1 else None


def training_forward(module: torch.nn.Module) -> bool:
    return (module.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
            and not tracing())


@dataclass
class RootState:
    """A discovered model: its names, and the forward order of its modules."""

    module: torch.nn.Module
    prefix: str
    module_names: dict[int, str]
    param_names: dict[int, str]
    forward_order: list[int] = field(default_factory=list)  # ids, first forward only
    order_done: bool = False
    info: ModelInfo | None = None
    label: str = ""  # what the script calls it (ModelInfo.label)


class Models:
    def __init__(self, timeline: Timeline, explicit: list[torch.nn.Module] | None = None) -> None:
        self.timeline = timeline
        self.explicit = {id(m) for m in explicit} if explicit else None
        self.roots: dict[int, RootState] = {}
        self.param_layer: dict[int, int] = {}  # id(param) -> index in timeline.layers
        self.loss_modules: dict[int, torch.nn.Module] = {}  # loss modules called as roots, to keep watching
        for m in explicit or []:
            self.discover(m, 0)

    def name_of(self, module: torch.nn.Module) -> str:
        for state in self.roots.values():
            name = state.module_names.get(id(module))
            if name is not None:
                return name
        return type(module).__name__

    def names_of(self, root: torch.nn.Module) -> dict[int, str] | None:
        """The module names of a watched root (a crash is traced to its layer with them)."""
        state = self.roots.get(id(root))
        return state.module_names if state is not None else None

    def param_name(self, param: torch.nn.Parameter) -> str:
        for state in self.roots.values():
            name = state.param_names.get(id(param))
            if name is not None:
                return name
        return self.timeline.layers[self.param_layer[id(param)]].name

    def owner_of(self, module: torch.nn.Module) -> RootState | None:
        for state in self.roots.values():
            if id(module) in state.module_names:
                return state
        return None

    def discover(self, module: torch.nn.Module, step: int) -> RootState:
        inner = compiled_original(module)
        if inner is not None:  # torch.compile(model): name the layers as the model names them
            self._note_compiled(inner, step)
        named = inner if inner is not None else module
        # A second model's modules are named after what the script calls it: `netG:main.6`.
        label = self._unique(script_name(module) or type(named).__name__)
        prefix = "" if not self.roots else f"{label}:"
        own = type(named).__name__ if not self.roots else label
        names = {id(m): (prefix + n if n else own) for n, m in named.named_modules()}
        names[id(module)] = names[id(named)]
        params = {id(p): prefix + n for n, p in named.named_parameters()}
        state = RootState(module, prefix, names, params, label=label)
        self.roots[id(module)] = state
        if self.timeline.run.device == "cpu":
            first = next(module.parameters(), None)
            if first is not None:
                self.timeline.run.device = str(first.device)
        return state

    def _unique(self, label: str) -> str:
        taken = {state.label for state in self.roots.values()}
        if label not in taken:
            return label
        n = 2
        while f"{label}#{n}" in taken:
            n += 1
        return f"{label}#{n}"

    def label_of_param(self, param_id: int) -> str | None:
        """The label of the model a parameter belongs to."""
        for state in self.roots.values():
            if param_id in state.param_names:
                return state.label
        return None

    def _note_compiled(self, inner: torch.nn.Module, step: int) -> None:
        if not self.timeline.events_of("compiled"):
            self.timeline.events.append(Event("compiled", step, None, {
                "model": type(inner).__name__,
                "not_observed": "inside compiled code: the forward order of its layers and the activation "
                                "memory per module (gradients, losses, NaN origins and memory totals are)",
            }))

    def root_state(self, module: torch.nn.Module, step: int) -> RootState | None:
        """The model `module` is (discovered on first sight), or None when it is not one to watch."""
        key = id(module)
        state = self.roots.get(key)
        if state is None:
            if self.explicit is not None and key not in self.explicit:
                return None
            if next(module.parameters(), None) is None:
                return None
            owner = self.owner_of(module)
            if owner is not None:  # a submodule of a known model, called on its own
                state = RootState(module, owner.prefix, owner.module_names, owner.param_names, order_done=True,
                                  label=owner.label)
                self.roots[key] = state
            else:
                state = self.discover(module, step)
        return state

    def note_loss_module(self, module: torch.nn.Module) -> None:
        if len(self.loss_modules) < MAX_LOSS_MODULES:
            self.loss_modules.setdefault(id(module), module)

    def finish(self, state: RootState, args: tuple = ()) -> None:
        """Once the first forward has shown the order, record the model and its layers."""
        module = state.module
        seen: dict[int, int] = {id(module): -1}  # the root is entered first (its own params: a cls token)
        for k, i in enumerate(state.forward_order):
            seen.setdefault(i, k)  # a module called twice (a shared ReLU) sits where it was first called
        named = list(module.named_modules())
        ordered = sorted(named, key=lambda nm: seen.get(id(nm[1]), len(seen)))
        types = {state.module_names[id(m)]: type(m).__name__ for _, m in ordered}
        params = list(module.parameters())
        state.info = ModelInfo(
            name=type(module).__name__,
            module_types=types,
            num_params=sum(p.numel() for p in params),
            trainable_params=sum(p.numel() for p in params if p.requires_grad),
            input_shape=input_shape(args),
            label=state.label,
        )
        self.timeline.models.append(state.info)
        for _, sub in ordered:
            own = [(n, p) for n, p in sub.named_parameters(recurse=False)]
            if not own:
                continue
            index = len(self.timeline.layers)
            self.timeline.layers.append(
                LayerInfo(
                    name=state.module_names[id(sub)],
                    type=type(sub).__name__,
                    params=[state.param_names.get(id(p), n) for n, p in own],
                    numel=sum(p.numel() for _, p in own),
                    kind=layer_kind(sub),
                    model=state.label,
                )
            )
            for _, p in own:
                self.param_layer.setdefault(id(p), index)
        state.order_done = True

    def layer_of(self, param: torch.nn.Parameter, name: str) -> int:
        """The layer index of a parameter; one no model owns gets a layer of its own, `name`."""
        index = self.param_layer.get(id(param))
        if index is None:
            index = len(self.timeline.layers)
            self.timeline.layers.append(LayerInfo(name, "Parameter", [name], param.numel(), "other"))
            self.param_layer[id(param)] = index
        return index

    def settled_roots(self, step: int, measuring: bool) -> list[torch.nn.Module] | None:
        """The roots to keep watching once discovery is over, or None while it is not: the first
        SETTLE_AFTER steps have run, every model has shown its layer order, and no forward is
        being measured."""
        if step < SETTLE_AFTER or not self.roots or measuring:
            return None
        if not all(state.order_done for state in self.roots.values()):
            return None
        return [state.module for state in self.roots.values()] + list(self.loss_modules.values())

    def trainable(self) -> list[tuple[RootState, torch.nn.Parameter]]:
        """Every parameter that requires a gradient, once, with the model it belongs to."""
        seen: set[int] = set()
        out = []
        for root in self.roots.values():
            for p in root.module.parameters():
                if id(p) in seen or not p.requires_grad:
                    continue
                seen.add(id(p))
                out.append((root, p))
        return out

    def clear(self) -> None:
        self.roots.clear()
