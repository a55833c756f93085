"""What a GPU's batch-norm and convolution kernels take, from measured calls (``data/gpu_kernels.toml``).

PyTorch's CUDA batch norm reduces each channel in its own thread blocks, so its speed depends on the channels
and the elements per channel far more than its bytes say; cuDNN's convolutions reach 0.02–0.6 of the peak by
shape, and in NCHW they add layout transposes. A call on a member GPU takes the time of the nearest measured
call of its layout and dtype (nearest in the log2 of each size the table lists); other devices keep the
roofline.

    batch_norm_seconds(get_device("h200"), ("batch_norm", "nchw", 64, 802816, 102760448, "bfloat16"), False)
    conv_seconds(get_device("h200"), ("conv", "nchw", 64, 64, 3, 3136, "bfloat16"), 1.85e11, backward=False)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ...core.datafiles import SourcedConstants

KERNELS = SourcedConstants("analysis.predict", "gpu_kernels.toml", "gpu_kernels")
CLASSES = ("h100",)
#: Input dtypes measured under another name: fp16 under autocast takes bf16's kernels.
_DTYPE_AS = {"float16": "bfloat16"}
_16BIT = ("bfloat16", "float16")


@dataclass(frozen=True)
class MeasuredCall:
    layout: str
    dtype: str
    sizes: tuple[int, ...]  # batch norm: (channels, elements per channel); conv: (C_in, C_out, kernel, H·W)
    forward: float  # batch norm: input bytes per second; conv: FLOP/s
    backward: float


@lru_cache(maxsize=None)
def _calls(cls: str, table: str) -> tuple[MeasuredCall, ...]:
    if table == "batch_norm":
        return tuple(MeasuredCall(str(lay), str(dt), (int(c), int(n)), float(f), float(b))
                     for lay, dt, c, n, f, b in KERNELS.value(cls, "batch_norm"))
    return tuple(MeasuredCall(str(lay), "bfloat16", (int(ci), int(co), int(k), int(hw)), float(f), float(b))
                 for lay, ci, co, k, hw, f, b in KERNELS.value(cls, "conv2d"))


def _class_of(device: Any) -> str | None:
    for cls in CLASSES:
        if getattr(device, "id", None) in KERNELS.value(cls, "members"):
            return cls
    return None


def _nearest(device: Any, table: str, layout: str, dtype: str, sizes: tuple[int, ...]) -> MeasuredCall | None:
    cls = _class_of(device)
    if cls is None or any(s <= 0 for s in sizes):
        return None
    dtype = _DTYPE_AS.get(dtype, dtype)
    same = [c for c in _calls(cls, table) if c.layout == layout and c.dtype == dtype]
    if not same:
        return None
    return min(same, key=lambda c: sum(abs(math.log2(a / b)) for a, b in zip(sizes, c.sizes)))


def nearest_point(device: Any, hint: tuple) -> MeasuredCall | None:
    """The measured batch-norm call nearest ``hint`` (formulas/elementwise.py batch_norm_hint), or None."""
    if len(hint) != 6 or hint[0] != "batch_norm":
        return None
    _, layout, channels, per_channel, _, dtype = hint
    return _nearest(device, "batch_norm", layout, dtype, (channels, per_channel))


def batch_norm_seconds(device: Any, hint: tuple, backward: bool) -> float | None:
    """Seconds of one batch-norm kernel call (forward, or ``backward``) described by ``hint``; None: no table."""
    p = nearest_point(device, hint)
    if p is None:
        return None
    return float(hint[4]) / (p.backward if backward else p.forward)


def nearest_conv(device: Any, hint: tuple, layout: str | None = None) -> MeasuredCall | None:
    """The measured convolution nearest ``hint`` (formulas/conv.py conv_hint), in ``layout`` when given (the
    compiled stack's channels_last), or None: another device, an fp32 or unmeasured convolution."""
    if len(hint) != 7 or hint[0] != "conv" or hint[6] not in _16BIT:
        return None
    _, own_layout, cin, cout, k, hw, dtype = hint
    return _nearest(device, "conv2d", layout or own_layout, dtype, (cin, cout, k, hw))


def conv_seconds(device: Any, hint: tuple, flops: float, backward: bool, layout: str | None = None) -> float | None:
    """Seconds of one convolution call of ``flops`` described by ``hint``; None: no table."""
    p = nearest_conv(device, hint, layout)
    if p is None:
        return None
    return flops / (p.backward if backward else p.forward)


def source(table: str) -> str:
    return KERNELS.source("h100", table)
