"""Discovers models and loss modules through PyTorch's global module forward hooks, then keeps
watching only the roots it found.

Only forward hooks are used: global *full backward* hooks break in-place ReLU.
A module called while no other module is running is a root: a model, or a loss.

Any global hook sends every module call of the run down PyTorch's slow path (about 4% of a small
CNN's step on CPU, with empty hooks). So discovery is a phase: once the first steps have shown the
models, their layer order and the losses, the global hooks give way to a watch on those roots
alone, a `__call__` set on their classes (`settle`). The rare forwards that need every layer (a
sampled memory breakdown, sampled activation statistics) put the global hooks back for that one
forward; a forward that raises is traced to its innermost layer through the exception's
traceback.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.modules.module as module_globals
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from . import tracing
from .crash import raising_module

if TYPE_CHECKING:
    from .shared import Handlers

_ABSENT = object()
# PyTorch warns on every call of a torch.compile'd module while a global module hook exists. Those
# hooks are ours, and the probes expect the extra call they cause: the warning is noise to the
# user (it says "global hooks" of a script that has none), and once widened it points into us.
_COMPILE_HOOK_WARNING = re.escape("Using `torch.compile(module)` when there are global hooks on modules")


class ModuleProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.depth = 0
        self.ordering: Any = None  # the model whose layer order this forward shows
        self.handles: list[Any] = []  # the global hooks, while discovering or widened
        self.settled = False
        self.watched: dict[int, torch.nn.Module] = {}  # the roots, once discovery is over
        self.patched: dict[type, Any] = {}  # class -> its own __call__ before (or _ABSENT)
        self.widened: torch.nn.Module | None = None  # the root whose layers this forward watches
        self._filters: list[Any] = []  # the warnings filters install() added, for remove()

    def install(self) -> None:
        # Silence PyTorch's warning where it points into torchdoctor (always ours), and everywhere
        # while the script has no global module hooks of its own (then every global hook is ours).
        warnings.filterwarnings("ignore", _COMPILE_HOOK_WARNING, UserWarning, r"torchdoctor(\.|$)")
        self._filters = [warnings.filters[0]]
        if not module_globals._has_any_global_hook():
            warnings.filterwarnings("ignore", _COMPILE_HOOK_WARNING, UserWarning)
            self._filters.append(warnings.filters[0])
        self._add_global()

    def _add_global(self) -> None:
        self.handles = [
            register_module_forward_pre_hook(self._global_pre),
            # with_kwargs: the replay needs the keyword arguments too. Nothing is attached to the
            # user's modules, so deepcopy(model) and torch.save(model) stay unaffected.
            register_module_forward_hook(self._global_post, with_kwargs=True, always_call=True),
        ]

    def _remove_global(self) -> None:
        for h in self.handles:
            h.remove()
            # PyTorch's handle forgets the with_kwargs flag it registered: drop it ourselves.
            module_globals._global_forward_hooks_with_kwargs.pop(h.id, None)
        self.handles = []

    def remove(self) -> None:
        self._remove_global()
        for entry in self._filters:
            with contextlib.suppress(ValueError):
                warnings.filters.remove(entry)
        self._filters = []
        self._unwatch()
        self.widened = None

    # -- discovery done: the roots alone ------------------------------------------------
    def settle(self, roots: list[torch.nn.Module]) -> None:
        """Replace the global hooks by a watch on `roots` (models and loss modules seen so far).

        The watch is a `__call__` set on the roots' classes, not hooks on the modules: hooks in
        a module's own dicts would travel with `copy.deepcopy(model)` and `torch.save(model)`.
        Other instances of those classes pass straight through it."""
        if self.settled or self.depth != 0:
            return
        self.settled = True
        if any(isinstance(m, torch.jit.ScriptModule) for m in roots):
            return  # TorchScript modules: keep the global hooks
        try:
            for module in roots:
                self._watch_class(type(module))
                self.watched[id(module)] = module
        except Exception:  # a class that refuses the attribute: keep the global hooks
            self._unwatch()
            return
        self._remove_global()

    def watch_root(self, module: torch.nn.Module) -> None:
        """Add a root to the watch once discovery is over (a model a nested watch was given,
        first trained after the first steps). Before, or on the global hooks for good (TorchScript,
        a class that refused the watch), the global hooks find it on their own."""
        if not self.settled or not self.watched or id(module) in self.watched:
            return
        self._watch_class(type(module))
        self.watched[id(module)] = module

    def _watch_class(self, cls: type) -> None:
        if cls in self.patched:
            return
        current = cls.__call__
        original = getattr(current, "__torchdoctor_original__", current)
        probe = self

        def __call__(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            if id(module) not in probe.watched or probe._skip():
                return original(module, *args, **kwargs)
            return probe._call_root(original, module, args, kwargs)

        __call__.__torchdoctor_original__ = original  # type: ignore[attr-defined]
        self.patched[cls] = cls.__dict__.get("__call__", _ABSENT)
        cls.__call__ = __call__  # type: ignore[method-assign]

    def _unwatch(self) -> None:
        for cls, own in self.patched.items():
            if own is _ABSENT:
                with contextlib.suppress(AttributeError):
                    delattr(cls, "__call__")
            else:
                cls.__call__ = own  # type: ignore[method-assign]
        self.patched = {}
        self.watched = {}

    def _call_root(self, original: Any, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        self._pre(module, args)
        widened = False
        if self.depth == 1 and self.recorder.shared.measuring and not self.handles:
            self.widened, widened = module, True  # this forward's layers are measured: watch them all
            self._add_global()
        try:
            output = original(module, *args, **kwargs)
        except Exception as exc:
            self._note_raised(module, exc)
            self._post(module, args, None)  # one value after args: the forward raised
            raise
        except BaseException:  # Ctrl-C: no finding, but leave the bookkeeping level
            self.depth = max(0, self.depth - 1)
            raise
        finally:
            if widened:
                self.widened = None
                self._remove_global()
        self._post(module, args, kwargs, output)
        return output

    def _note_raised(self, root: torch.nn.Module, exc: BaseException) -> None:
        """The layer that raised, from the traceback: only the root was watched."""
        rec = self.recorder
        if rec.shared.failed_in is not None:
            return  # widened: the layer's own hook has already said so
        try:
            names = rec.module_names_of(root)
            found = raising_module(exc, names) if names is not None else None
            if found is not None and found[0] is not root:
                rec.on_module_failed(*found)
        except Exception as error:
            rec.internal_error(f"module failure lookup: {type(error).__name__}: {error}", error)

    # -- every module (global hooks) ---------------------------------------------------
    def _global_pre(self, module: torch.nn.Module, args: tuple) -> None:
        if module is not self.widened:  # a widened root's own hooks open and close its forward
            self._pre(module, args)
        return None

    def _global_post(self, module: torch.nn.Module, args: tuple, *rest: Any) -> None:
        if module is not self.widened:
            self._post(module, args, *rest)
        return None

    def _skip(self) -> bool:
        shared = self.recorder.shared
        # Forwards re-run inside backward() (activation checkpointing) are not new calls.
        return bool(shared.replaying or shared.in_backward or tracing())

    def _pre(self, module: torch.nn.Module, args: tuple) -> None:
        rec = self.recorder
        if self._skip():
            return None
        try:
            if self.depth == 0:
                state = rec.on_root_call(module, args)
                if state is not None and not state.order_done:
                    self.ordering = state
            else:
                if self.ordering is not None:
                    self.ordering.forward_order.append(id(module))
                capture = rec.shared.meter.capture
                if capture is not None:
                    capture.enter(module, args)
        except Exception as exc:  # never let our bookkeeping fail the user's forward
            rec.internal_error(f"module pre-hook: {type(exc).__name__}: {exc}", exc)
        self.depth += 1
        return None

    def _post(self, module: torch.nn.Module, args: tuple, *rest: Any) -> None:
        # (kwargs, output) normally; just (output) when PyTorch calls always_call hooks after the
        # forward raised, where it ignores with_kwargs.
        rec = self.recorder
        if self._skip():
            return None
        self.depth = max(0, self.depth - 1)
        failed = len(rest) != 2
        if failed:
            rec.on_module_failed(module, args)
        if self.depth == 0:
            self.ordering = None
            rec.on_root_exit(module, failed)
            if not failed:
                rec.on_root_done(module, args, rest[0], rest[1])
        else:
            capture = rec.shared.meter.capture
            if capture is not None:
                capture.exit()
            if rec.shared.sampling_activations is not None and not failed:
                rec.on_activation(module, rest[1])
        return None

    def reset_depth(self) -> None:
        """A KeyboardInterrupt inside a forward skips the post hooks; steps resynchronise."""
        self.depth = 0
        self.ordering = None
        if self.widened is not None:
            self.widened = None
            self._remove_global()
        meter = self.recorder.shared.meter
        if meter.capture is not None:
            meter.end_forward()
