"""One registry of per-operator FLOP formulas.

A formula is a small pure function of the operator's arguments (fake tensors:
only shapes, dtypes and flags are read) that returns a :class:`Cost`. Each is
registered with :func:`formula` for one or more ATen overloads or packets.

Classes of work (DESIGN.md conventions):
  * ``model``  — matrix-class work: matmul, convolution, attention products,
    recurrent matmuls. This is the MFU numerator.
  * ``other``  — elementwise, normalization, softmax, reductions, losses,
    optimizer arithmetic. Counted, reported apart, never in MFU.
  * ``none``   — data movement only (views, copies, indexing, creation): 0 FLOPs
    by definition, bytes still counted.
Within ``model``, two parts are named: ``attention`` (score and value products;
the causal-halved figure halves the causal part) and ``scan`` (the products of a
state-space scan — Mamba's selective scan — which are never attention and never
halved).
An arithmetic operator with no formula is *unsupported*: the trace lists it
with its call count, never silently as 0.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

aten = torch.ops.aten

MODEL = "model"
OTHER = "other"
NONE = "none"


@dataclass(frozen=True)
class Cost:
    model: int = 0  # matrix-class FLOPs (the MFU numerator)
    other: int = 0  # elementwise / normalization / softmax / reduction FLOPs
    attention: int = 0  # the part of `model` that is attention score/value products
    causal: bool | None = None  # attention known to be causal (the op's is_causal flag)
    recompute: int = 0  # extra hardware FLOPs a fused kernel recomputes (HFU, not MFU)
    scan: int = 0  # the part of `model` that is a state-space scan's products (never attention, never halved)
    upper_bound: bool = False  # the figure is an upper bound (values the formula needs were not readable)
    # a 16-bit matrix product with an operand or result whose leading dimension is not a multiple of 8 elements
    # (16 bytes): cuBLAS cannot run its aligned tensor-core kernels on it (formulas/matmul.py, misaligned)
    unaligned: bool = False
    # what a kernel-specific rate table needs to know of the call: a batch norm's (formulas/elementwise.py
    # batch_norm_hint), a convolution's (formulas/conv.py conv_hint), an attention call's ("attention", L, S, E)
    hint: tuple = ()

    @property
    def klass(self) -> str:
        return MODEL if self.model else (OTHER if self.other else NONE)


ZERO = Cost()


Formula = Callable[[Any, tuple[Any, ...], dict[str, Any], Any], Cost]  # (func, args, kwargs, out)

_BY_OVERLOAD: dict[Any, Formula] = {}
_BY_PACKET: dict[Any, Formula] = {}
_BY_NAME: dict[str, Formula] = {}


def formula(targets: Any | Iterable[Any]) -> Callable[[Formula], Formula]:
    """Register `fn` for ATen overloads (aten.mm.default), packets (aten.mm) or qualified names ('ns::op')."""
    if not isinstance(targets, (list, tuple)):
        targets = [targets]

    def deco(fn: Formula) -> Formula:
        for t in targets:
            if isinstance(t, str):
                _BY_NAME[t] = fn
            elif isinstance(t, torch._ops.OpOverloadPacket):
                _BY_PACKET[t] = fn
            else:
                _BY_OVERLOAD[t] = fn
        return fn

    return deco


def lookup(func: Any) -> Formula | None:
    fn = _BY_OVERLOAD.get(func)
    if fn is not None:
        return fn
    packet = getattr(func, "overloadpacket", None)
    fn = _BY_PACKET.get(packet)
    if fn is not None:
        return fn
    name = getattr(func, "name", None)
    if callable(name):
        qual = name()  # 'aten::mm' or 'transformers::_grouped_mm_fallback'
        fn = _BY_NAME.get(qual)
        if fn is None and "." in qual:
            fn = _BY_NAME.get(qual.split(".")[0])
        return fn
    return None


def registered_names() -> list[str]:
    names = [str(k) for k in _BY_OVERLOAD] + [str(k) for k in _BY_PACKET] + list(_BY_NAME)
    return sorted(set(names))


# -- helpers used by the formula modules ---------------------------------------

def numel(t: Any) -> int:
    if isinstance(t, torch.Tensor):
        return t.numel()
    return 0


def prod(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def bind(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Name the operator's arguments by its schema: {'query': q, 'is_causal': True, …}."""
    out: dict[str, Any] = {}
    schema = getattr(func, "_schema", None)
    if schema is None:
        return dict(kwargs)
    for i, arg in enumerate(schema.arguments):
        if i < len(args):
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def is_float(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and (t.dtype.is_floating_point or t.dtype.is_complex)
