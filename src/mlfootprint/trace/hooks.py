"""The hooks of a user's model: kept (they can be part of its computation: a pruning mask is a forward pre-hook),
named when one fails on fake tensors, and switched off for one trace when the user asks (``user_hooks=False``).

Only hooks on the traced copy are touched: a module-instance source is a fake deep copy (models/module.py), and
a factory's product is the trace's own. Switching them off clears the copy's hook dictionaries in place and puts
every entry back, in order, when the trace ends.
"""
from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

# module attribute → what the hook is, in the user's words
_MODULE_HOOKS = (("_forward_pre_hooks", "forward pre-hook"), ("_forward_hooks", "forward hook"),
                 ("_backward_pre_hooks", "backward pre-hook"), ("_backward_hooks", "backward hook"))
_TENSOR_HOOKS = (("_backward_hooks", "gradient hook"), ("_post_accumulate_grad_hooks", "post-accumulate-grad hook"))


@dataclass(eq=False)
class UserHook:
    kind: str  # "forward pre-hook", "gradient hook", …
    where: str  # "module 'features.0'" or "parameter 'fc.weight'"
    name: str  # the hook function's qualified name
    owner: Any  # the module or parameter it is registered on (the traced copy's)
    store: Any  # the dict that holds it
    code: types.CodeType | None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r} on {self.where}"


def _code_of(fn: Any) -> types.CodeType | None:
    fn = getattr(fn, "func", fn)  # functools.partial
    code = getattr(fn, "__code__", None)  # functions, lambdas, bound methods
    if code is None:
        code = getattr(getattr(type(fn), "__call__", None), "__code__", None)  # callable objects
    return code


def _name_of(fn: Any) -> str:
    fn = getattr(fn, "func", fn)
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


def user_hooks(model: torch.nn.Module) -> list[UserHook]:
    """Every module and parameter hook on ``model`` (call before mlfootprint adds its own)."""
    found: list[UserHook] = []
    for path, module in model.named_modules():
        where = f"module '{path}'" if path else f"the root module ({type(module).__name__})"
        for attr, kind in _MODULE_HOOKS:
            store = getattr(module, attr, None)
            for fn in (store or {}).values():
                found.append(UserHook(kind, where, _name_of(fn), module, store, _code_of(fn)))
    for name, param in model.named_parameters():
        for attr, kind in _TENSOR_HOOKS:
            store = getattr(param, attr, None)
            for fn in (store or {}).values():
                found.append(UserHook(kind, f"parameter '{name}'", _name_of(fn), param, store, _code_of(fn)))
    return found


def failing_hook(exc: BaseException, hooks: list[UserHook]) -> UserHook | None:
    """The user's hook whose code raised ``exc`` (the innermost one on its traceback), if any."""
    if not hooks:
        return None
    by_code: dict[types.CodeType, list[UserHook]] = {}
    for h in hooks:
        if h.code is not None:
            by_code.setdefault(h.code, []).append(h)
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:  # the exception, then what caused it
        seen.add(id(err))
        found = None
        tb = err.__traceback__
        while tb is not None:
            candidates = by_code.get(tb.tb_frame.f_code)
            if candidates:
                found = _which(candidates, tb.tb_frame)
            tb = tb.tb_next
        if found is not None:
            return found
        err = err.__cause__ or err.__context__
    return None


def _which(candidates: list[UserHook], frame: types.FrameType) -> UserHook:
    """One function registered on several modules: the one whose module is its first argument (the second for a
    method or a callable object, after self)."""
    code = frame.f_code
    args = [frame.f_locals.get(name) for name in code.co_varnames[:min(code.co_argcount, 2)]]
    return next((h for h in candidates if any(h.owner is a for a in args)), candidates[0])


@contextlib.contextmanager
def user_hooks_off(hooks: list[UserHook], off: bool = True) -> Iterator[None]:
    """Inside, the ``hooks`` do not run; on exit each of their dictionaries holds what it held, in order."""
    if not off or not hooks:
        yield
        return
    stores = {id(h.store): h.store for h in hooks}
    saved = {key: list(store.items()) for key, store in stores.items()}
    for store in stores.values():
        store.clear()  # in place: autograd holds the parameter's own dict
    try:
        yield
    finally:
        for key, store in stores.items():
            store.clear()
            store.update(saved[key])
