"""Per-op-class rate curves of a calibrated machine, as prediction reads them.

``mlfootprint hardware calibrate`` (``mlfootprint.measure.opcal``) times each kind of kernel at several sizes
on this machine and saves the curves next to the calibrated profile
(``$XDG_CONFIG_HOME/mlfootprint/predict/this-ops.toml``). The roofline then rates each fp32 operator of the
calibrated device ``this`` from its kind's curve (:func:`kernel_kind`), interpolated log-log at the
operator's own size and flat beyond the measured range (:class:`Curve`). "Bytes moved" are counted as the
trace counts them: every input and output tensor once. The curves describe one machine at one thread count;
they are measurements, labelled as such in every report that uses them.
"""
from __future__ import annotations

import bisect
import math
from pathlib import Path

from ...core.datafiles import load_file, user_data_dirs
from ...core.errors import UserError

GENERATOR = "mlfootprint.predict.opcal"  # written into saved curves files: keep it stable
FILE_NAME = "this-ops.toml"
COMPUTE_KINDS = ("matmul", "conv", "conv_backward", "attention")
BYTE_KINDS = ("batch_norm", "batch_norm_eval", "batch_norm_backward", "layer_norm", "layer_norm_backward", "pool", "pool_backward",
              "memory")
ELEMENT_KINDS = ("transcendental",)
KINDS = COMPUTE_KINDS + BYTE_KINDS + ELEMENT_KINDS

_TRANSCENDENTAL = ("tanh", "exp", "log", "gelu", "silu", "sigmoid", "erf", "sin", "cos", "softmax", "log_softmax",
                   "softplus", "mish")
# Backward functions that only multiply by a saved output need no transcendental function.
_CHEAP_BACKWARD = ("tanh_backward", "sigmoid_backward")


def kernel_kind(op: str, model_flops: int, attention_flops: int, training: bool = True) -> str | None:
    """The curve an operator ('aten.mm.default') is rated by; None: the generic roofline.

    ``training``: whether the traced step trains (batch norm then computes batch statistics; in
    inference it applies its running statistics, a different and cheaper kernel)."""
    name = op.split(".")[1] if op.count(".") >= 2 else op
    if model_flops:
        if attention_flops:
            return "attention"
        if name == "convolution_backward":
            return "conv_backward"
        if "convolution" in name:
            return "conv"
        return "matmul"
    bwd = "_backward" if "backward" in name else ""
    if "batch_norm" in name:
        return "batch_norm" + (bwd or ("" if training else "_eval"))
    if "layer_norm" in name:
        return "layer_norm" + bwd
    if "max_pool" in name:
        return "pool" + bwd
    if name in _CHEAP_BACKWARD:
        return None
    base = name.rstrip("_").replace("_backward_data", "").replace("_backward", "")
    if base.lstrip("_") in _TRANSCENDENTAL:
        return "transcendental"
    return None


def curves_path() -> Path:
    return user_data_dirs("predict")[-1] / FILE_NAME


def load(path: str | Path | None = None) -> dict[str, list[list[float]]] | None:
    target = Path(path) if path is not None else curves_path()
    if not target.is_file():
        return None
    data = load_file(target)
    out: dict[str, list[list[float]]] = {}
    for kind, table in (data.get("curves") or {}).items():
        pts = table.get("points") if isinstance(table, dict) else None
        if kind not in KINDS or not isinstance(pts, list):
            raise UserError(f"{target}: curves.{kind} must be one of {', '.join(KINDS)} with points = [[x, rate], …]")
        clean = sorted((float(x), float(r)) for x, r in pts if x > 0 and r > 0)
        if clean:
            out[kind] = [list(p) for p in clean]
    return out or None


class Curve:
    """Log-log interpolation of a rate against x; flat beyond the measured ends."""

    def __init__(self, points: list[list[float]]) -> None:
        pts = sorted(points)
        self.xs = [math.log(p[0]) for p in pts]
        self.ys = [math.log(p[1]) for p in pts]

    def __call__(self, x: float) -> float:
        if x <= 0:
            return math.exp(self.ys[0])
        lx = math.log(x)
        i = bisect.bisect_left(self.xs, lx)
        if i <= 0:
            return math.exp(self.ys[0])
        if i >= len(self.xs):
            return math.exp(self.ys[-1])
        x0, x1, y0, y1 = self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]
        if x1 == x0:
            return math.exp(max(y0, y1))
        return math.exp(y0 + (y1 - y0) * (lx - x0) / (x1 - x0))
