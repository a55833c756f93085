"""A user's own nn.Module instance as a model source: traced through fake copies, never touched."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch._guards import detect_fake_mode

from ..core.errors import UserError
from .factory import load_callable
from .inputs import InputSpec
from .spec import ModelSpec


def _copy_tensor_hooks(source: torch.Tensor, twin: torch.Tensor) -> None:
    """The user's gradient hooks on a parameter, registered on its fake twin too (read, never changed)."""
    if not twin.requires_grad:
        return
    for hook in list((getattr(source, "_backward_hooks", None) or {}).values()):
        twin.register_hook(hook)
    for hook in list((getattr(source, "_post_accumulate_grad_hooks", None) or {}).values()):
        twin.register_post_accumulate_grad_hook(hook)


def spec_from_module(user_model: torch.nn.Module, inputs: Sequence[Any] = (), inputs_ref: str | None = None) -> ModelSpec:
    """A ModelSpec whose factory deep-copies ``user_model`` into fake tensors at build time.

    The copy is made inside the trace's FakeTensorMode: deepcopy's memo is seeded with a fake twin of every
    parameter and buffer (same metadata, no data), so only the module structure is copied and the user's
    tensors are neither read nor moved. Tensor ``inputs`` give the input shapes (their values are not read);
    ``inputs_ref`` ("file.py:callable") makes them instead, as for a factory.
    """
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if inputs_ref and tensors:
        raise UserError("give the model's inputs as tensors (--input) or as a callable (--inputs), not both")

    def factory() -> torch.nn.Module:
        mode = detect_fake_mode()
        memo: dict[int, Any] = {}
        for t in list(user_model.parameters()) + list(user_model.buffers()):
            if id(t) in memo:
                continue
            twin = mode.from_tensor(t) if mode is not None else t.detach().clone()
            if isinstance(t, torch.nn.Parameter):
                twin = torch.nn.Parameter(twin, requires_grad=t.requires_grad)
                _copy_tensor_hooks(t, twin)
            memo[id(t)] = twin
        # Plain tensor attributes (torch.nn.utils.prune keeps `weight` = weight_orig × mask, a non-leaf that
        # deepcopy refuses): a detached fake twin; the pruning pre-hook recomputes it in the traced forward.
        for m in user_model.modules():
            for v in vars(m).values():
                if isinstance(v, torch.Tensor) and id(v) not in memo:
                    memo[id(v)] = mode.from_tensor(v.detach()) if mode is not None else v.detach().clone()
        return copy.deepcopy(user_model, memo)

    def make_inputs() -> tuple[torch.Tensor, ...]:
        return tuple(torch.empty_like(t) if t.dtype.is_floating_point else torch.zeros_like(t) for t in tensors)

    specs = tuple(InputSpec(tuple(t.shape), t.dtype) for t in tensors)
    specs += tuple(i for i in inputs if isinstance(i, InputSpec))
    cls = type(user_model)
    # A module instance is traced like a factory's product (a fresh fake copy per trace).
    inputs_factory = load_callable(inputs_ref, "inputs callable") if inputs_ref else (make_inputs if tensors else None)
    return ModelSpec(name=cls.__name__, source="factory", origin=f"{cls.__module__}.{cls.__name__}",
                     factory=factory, input_specs=specs, inputs_factory=inputs_factory)
