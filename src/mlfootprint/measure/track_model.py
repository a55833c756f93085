"""The model side of ``track``: the shapes of the first training forward, and a trace of the user's model.

The tracker never touches the user's model: a forward pre-hook records the shapes (not the values) of the
first training forward's inputs, and the model is traced once, on a fake copy, with inputs of those shapes.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ..analysis.count.flops import FlopSummary, flop_summary
from ..core.errors import UserError
from ..models.spec import ModelSpec
from ..trace.run import trace
from ..workload import Workload


def unwrap(model: Any) -> Any:
    """The module inside DDP / DataParallel / torch.compile wrappers."""
    seen = 0
    while model is not None and seen < 5:
        seen += 1
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if isinstance(inner, torch.nn.Module):
            model = inner
            continue
        if type(model).__name__ in ("DistributedDataParallel", "DataParallel") and isinstance(
                getattr(model, "module", None), torch.nn.Module):
            model = model.module
            continue
        break
    return model


def model_device(model: Any) -> torch.device | None:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


def param_precision(model: Any) -> str:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            if p.dtype.is_floating_point:
                return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(p.dtype, "fp32")
    return "fp32"


def optimizer_name(optimizer: Any) -> str:
    if optimizer is None:
        return "adamw"
    if isinstance(optimizer, str):
        return optimizer
    name = type(optimizer).__name__.lower()
    if name == "sgd":
        momentum = any(g.get("momentum") for g in getattr(optimizer, "param_groups", []))
        return "sgd-momentum" if momentum else "sgd"
    return {"adam": "adam", "adamw": "adamw", "adafactor": "adafactor", "lion": "lion"}.get(name, "adamw")


class InputShapes:
    """The shape of a value passed to forward: tensors by shape/dtype/device, simple values as they are."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any) -> None:
        self.kind = kind
        self.value = value

    @classmethod
    def of(cls, obj: Any) -> InputShapes:
        if isinstance(obj, torch.Tensor):
            return cls("tensor", (tuple(obj.shape), obj.dtype, obj.device, obj.requires_grad))
        if isinstance(obj, (list, tuple)):
            return cls("list" if isinstance(obj, list) else "tuple", [cls.of(o) for o in obj])
        if isinstance(obj, dict):
            return cls("dict", {k: cls.of(v) for k, v in obj.items()})
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return cls("value", obj)
        return cls("value", None)  # caches and other objects are not part of the shape

    def make(self) -> Any:
        if self.kind == "tensor":
            shape, dtype, device, grad = self.value
            t = torch.empty(shape, dtype=dtype, device=device) if dtype.is_floating_point else \
                torch.zeros(shape, dtype=dtype, device=device)
            return t.requires_grad_(grad) if grad and dtype.is_floating_point else t
        if self.kind in ("list", "tuple"):
            made = [s.make() for s in self.value]
            return made if self.kind == "list" else tuple(made)
        if self.kind == "dict":
            return {k: s.make() for k, s in self.value.items()}
        return self.value

    def first_dim(self) -> int | None:
        if self.kind == "tensor":
            return self.value[0][0] if self.value[0] else None
        items = self.value.values() if self.kind == "dict" else (self.value if self.kind in ("list", "tuple") else [])
        for s in items:
            d = s.first_dim()
            if d is not None:
                return d
        return None


class _Replay(torch.nn.Module):
    """Calls the (fake) copy of the user's model with inputs of the recorded shapes."""

    def __init__(self, inner: torch.nn.Module, args: InputShapes, kwargs: InputShapes) -> None:
        super().__init__()
        self.inner = inner
        self._args = args
        self._kwargs = kwargs

    def forward(self) -> Any:
        return self.inner(*self._args.make(), **self._kwargs.make())


def trace_flops(name: str, inner: torch.nn.Module, args: InputShapes, kwargs: InputShapes,
                wl: Workload) -> tuple[FlopSummary, list[str]]:
    """FLOPs of one forward+backward of ``inner`` with inputs of the recorded shapes, traced on a fake copy."""
    notes: list[str] = []

    def traced(kw: InputShapes) -> Any:
        spec = ModelSpec(name=name, source="factory", origin=f"{type(inner).__module__}.{type(inner).__name__}",
                         factory=lambda: _Replay(copy.deepcopy(inner), args, kw), inputs_factory=lambda: ())
        return trace(spec, wl)

    try:
        tr = traced(kwargs)
    except UserError:
        # An attention mask's values are unknown on fake tensors and some models branch on them;
        # the FLOPs of masked and unmasked attention are the same: trace without it.
        if "attention_mask" not in kwargs.value:
            raise
        tr = traced(InputShapes("dict", {k: v for k, v in kwargs.value.items() if k != "attention_mask"}))
        notes.append("traced without the attention_mask argument (its values are unknown on fake tensors); "
                     "attention FLOPs do not depend on it")
    return flop_summary(tr), notes
