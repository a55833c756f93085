"""Elementwise, normalization, softmax, reduction and loss operators → ``flops.other``.

Conventions (stated in every report):
  * a pointwise operator costs 1 FLOP per floating-point output element, except
    the compound ones listed in PER_ELEMENT (addcmul = a + v·b·c: 3, …);
  * a reduction costs 1 FLOP per floating-point input element;
  * integer and boolean results (masks, indices, comparisons) are not
    floating-point work: 0 FLOPs.
These are counting conventions for ``other``, not hardware instruction counts.
"""
from __future__ import annotations

from typing import Any

import torch

from .registry import ZERO, Cost, aten, formula, is_float, numel

# Compound pointwise operators: FLOPs per output element.
PER_ELEMENT: dict[str, int] = {
    "addcmul": 3, "addcdiv": 3, "lerp": 3,
    "hardswish": 4, "gelu": 8, "gelu_backward": 12, "silu": 4, "silu_backward": 6,
    "sigmoid": 4, "sigmoid_backward": 2, "tanh_backward": 2, "softplus": 4,
    "mish": 8, "elu": 3, "log_sigmoid_forward": 4, "hardsigmoid": 3,
    # softplus'(x) = sigmoid(beta·x): beta·x, exp, 1 + e, divide, times the incoming gradient
    "softplus_backward": 5,
    # polar(r, θ) = r·cos θ + i·r·sin θ: cos, sin and two multiplies per complex output
    "polar": 4,
}

# Normalizations: FLOPs per input element (mean, centre, square, sum, rsqrt·mul; affine adds 2).
NORM_FWD = 5
NORM_AFFINE = 2
NORM_BWD_FACTOR = 2  # backward ≈ twice the forward's elementwise work


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        out: list[torch.Tensor] = []
        for y in x:
            out.extend(_tensors(y))
        return out
    return []


def float_numel(x: Any) -> int:
    return sum(t.numel() for t in _tensors(x) if is_float(t))


def pointwise_cost(func, args, kwargs, out) -> Cost:
    name = func.overloadpacket.__name__.rstrip("_")
    per = PER_ELEMENT.get(name, 1)
    target = out if out is not None else args[0]
    return Cost(other=per * float_numel(target))


def reduction_cost(func, args, kwargs, out) -> Cost:
    return Cost(other=float_numel(args[0]))


def foreach_cost(func, args, kwargs, out) -> Cost:
    """_foreach_<op>(list, …): the base op's per-element cost over every tensor of the list."""
    base = func.overloadpacket.__name__[len("_foreach_"):].rstrip("_")
    per = PER_ELEMENT.get(base, 1)
    if base in ("copy", "zero", "fill"):
        return ZERO
    return Cost(other=per * float_numel(args[0]))


@formula([aten._softmax, aten._log_softmax, aten._safe_softmax])
def softmax_cost(func, args, kwargs, out) -> Cost:
    # max, subtract, exp, sum, divide (or log): 5 per element.
    return Cost(other=5 * float_numel(args[0]))


@formula([aten._softmax_backward_data, aten._log_softmax_backward_data])
def softmax_backward_cost(func, args, kwargs, out) -> Cost:
    # grad·y, row sum, subtract, multiply: 4 per element.
    return Cost(other=4 * float_numel(args[0]))


_BATCH_NORMS = (aten.native_batch_norm, aten._native_batch_norm_legit, aten._native_batch_norm_legit_no_training,
                aten._native_batch_norm_legit_functional, aten.native_batch_norm_backward)


def batch_norm_hint(func, x) -> tuple:
    """("batch_norm", layout, channels, elements per channel, input bytes, dtype) of a batch norm over ``x``
    (N, C, ...): what a GPU's batch-norm kernels run at depends on them (analysis/predict/data/gpu_kernels.toml)."""
    if func.overloadpacket not in _BATCH_NORMS or not isinstance(x, torch.Tensor) or x.dim() < 2:
        return ()
    layout = "channels_last" if x.dim() == 4 and not x.is_contiguous() and \
        x.is_contiguous(memory_format=torch.channels_last) else "nchw"
    c = int(x.shape[1])
    return ("batch_norm", layout, c, int(x.numel()) // max(c, 1), int(x.numel()) * x.element_size(),
            str(x.dtype).replace("torch.", ""))


@formula([aten.native_layer_norm, aten.native_group_norm, aten.native_batch_norm,
          aten._native_batch_norm_legit, aten._native_batch_norm_legit_no_training,
          aten._native_batch_norm_legit_functional, aten._fused_rms_norm])
def norm_cost(func, args, kwargs, out) -> Cost:
    x = args[0]
    weight = args[2] if func.overloadpacket in (aten.native_layer_norm,) and len(args) > 2 else (args[1] if len(args) > 1 else None)
    affine = isinstance(weight, torch.Tensor)
    return Cost(other=(NORM_FWD + (NORM_AFFINE if affine else 0)) * float_numel(x), hint=batch_norm_hint(func, x))


@formula([aten.native_layer_norm_backward, aten.native_group_norm_backward, aten.native_batch_norm_backward,
          aten._fused_rms_norm_backward])
def norm_backward_cost(func, args, kwargs, out) -> Cost:
    # native_batch_norm_backward(grad_out, input, ...): the hint describes the normalized input
    return Cost(other=NORM_BWD_FACTOR * (NORM_FWD + NORM_AFFINE) * float_numel(args[0]),
                hint=batch_norm_hint(func, args[1]) if len(args) > 1 else ())


@formula([aten.native_dropout])
def dropout_cost(func, args, kwargs, out) -> Cost:
    # draw a mask, multiply, scale: 2 per element (random generation itself not counted).
    return Cost(other=2 * float_numel(args[0]))


@formula([aten.nll_loss_forward, aten.nll_loss2d_forward])
def nll_cost(func, args, kwargs, out) -> Cost:
    # gather one log-probability per target and sum them.
    return Cost(other=2 * numel(args[1]))


@formula([aten.nll_loss_backward, aten.nll_loss2d_backward])
def nll_backward_cost(func, args, kwargs, out) -> Cost:
    return Cost(other=numel(args[2]))


@formula([aten.embedding_dense_backward])
def embedding_backward_cost(func, args, kwargs, out) -> Cost:
    # scatter-add of grad rows into the weight gradient: one add per grad element.
    return Cost(other=float_numel(args[0]))


@formula([aten.hardtanh_backward])
def hardtanh_backward_cost(func, args, kwargs, out) -> Cost:
    # ReLU6 / hardtanh gradient: the incoming gradient where min < x < max, else 0: one select per element
    # (as threshold_backward, which is tagged pointwise).
    return Cost(other=float_numel(args[0]))


@formula([aten.log_sigmoid_forward, aten.log_sigmoid_backward])
def log_sigmoid_cost(func, args, kwargs, out) -> Cost:
    # forward: log σ(x) = min(x, 0) − log1p(exp(−|x|)): abs, exp, log1p, subtract → 4 per element (the
    # PER_ELEMENT convention); it returns (output, buffer) and lacks the pointwise tag, hence this entry.
    # backward: g·(1 − σ(x)) with σ from the saved buffer: subtract, multiply and the sign select → 3.
    if func.overloadpacket is aten.log_sigmoid_forward:
        return Cost(other=PER_ELEMENT["log_sigmoid_forward"] * float_numel(args[0]))
    return Cost(other=3 * float_numel(args[0]))


@formula([aten.glu, aten.glu_backward])
def glu_cost(func, args, kwargs, out) -> Cost:
    # glu(x) = a·σ(b) over the two halves of x: σ (4, the PER_ELEMENT sigmoid) and a product → 5 per output
    # element. backward, per element of the output gradient g: σ(b) again (4), g·σ(b) (1) and
    # g·a·σ(b)·(1 − σ(b)) (3) → 8.
    if func.overloadpacket is aten.glu:
        return Cost(other=(PER_ELEMENT["sigmoid"] + 1) * float_numel(out))
    return Cost(other=8 * float_numel(args[0]))


def _window(value: Any, dims: int) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return [int(v) for v in (values * dims if len(values) == 1 else values)]


@formula([aten.avg_pool1d, aten.avg_pool2d, aten.avg_pool3d])
def avg_pool_cost(func, args, kwargs, out) -> Cost:
    # each output element sums its k₁·…·k_d window (k−1 adds) and divides once: k₁·…·k_d per output element.
    # (Padding positions excluded by count_include_pad=False still cost the same add-or-skip.)
    dims = {aten.avg_pool1d: 1, aten.avg_pool2d: 2, aten.avg_pool3d: 3}[func.overloadpacket]
    window = 1
    for k in _window(args[1], dims):
        window *= k
    return Cost(other=window * float_numel(out))


@formula([aten.avg_pool2d_backward, aten.avg_pool3d_backward])
def avg_pool_backward_cost(func, args, kwargs, out) -> Cost:
    # each output gradient is divided by the window size and added into its k₁·…·k_d inputs:
    # k₁·…·k_d adds (the divide folded into the first) per grad_output element.
    dims = 2 if func.overloadpacket is aten.avg_pool2d_backward else 3
    window = 1
    for k in _window(args[2], dims):
        window *= k
    return Cost(other=window * float_numel(args[0]))


@formula([aten.upsample_bilinear2d, aten._upsample_bilinear2d_aa, aten.upsample_linear1d, aten.upsample_trilinear3d])
def upsample_linear_cost(func, args, kwargs, out) -> Cost:
    # interpolation from 2^d neighbours: 2^d weighted products and 2^d − 1 adds per output element
    # (linear 3, bilinear 7, trilinear 15); the weights depend on the output position only.
    neighbours = {aten.upsample_linear1d: 2, aten.upsample_trilinear3d: 8}.get(func.overloadpacket, 4)
    return Cost(other=(2 * neighbours - 1) * float_numel(out))


@formula([aten.upsample_bilinear2d_backward, aten._upsample_bilinear2d_aa_backward, aten.upsample_linear1d_backward,
          aten.upsample_trilinear3d_backward])
def upsample_linear_backward_cost(func, args, kwargs, out) -> Cost:
    # each output gradient is scattered to its 2^d neighbours: a product and an add per neighbour.
    neighbours = {aten.upsample_linear1d_backward: 2, aten.upsample_trilinear3d_backward: 8}.get(func.overloadpacket, 4)
    return Cost(other=2 * neighbours * float_numel(args[0]))


@formula([aten.floor_divide, aten.remainder, aten.fmod, aten.true_divide, aten.xlogy])
def untagged_pointwise_cost(func, args, kwargs, out) -> Cost:
    # pointwise arithmetic whose schema lacks the pointwise tag; integer results are 0 FLOPs
    return pointwise_cost(func, args, kwargs, out)


@formula([aten.index_add, aten.scatter_add, aten.scatter_reduce, aten.index_put, aten.index_put_, aten._index_put_impl_])
def accumulate_cost(func, args, kwargs, out) -> Cost:
    name = func.overloadpacket.__name__
    if name.startswith("index_put") or name.startswith("_index_put"):
        accumulate = bool(args[3]) if len(args) > 3 else bool(kwargs.get("accumulate", False))
        return Cost(other=float_numel(args[2])) if accumulate else ZERO
    src = args[3] if len(args) > 3 else kwargs.get("source", kwargs.get("src"))
    return Cost(other=float_numel(src))


@formula([aten.cumsum, aten.cumprod, aten.logcumsumexp])
def scan_cost(func, args, kwargs, out) -> Cost:
    return Cost(other=float_numel(args[0]))


@formula([aten._fused_adam, aten._fused_adamw])
def fused_adam_cost(func, args, kwargs, out) -> Cost:
    # per element: two moment updates (lerp-like, 3 each), bias corrections, sqrt, divide,
    # weight decay and update: ~ 12 FLOPs.
    return Cost(other=12 * float_numel(args[0]))


@formula([aten._fused_sgd])
def fused_sgd_cost(func, args, kwargs, out) -> Cost:
    return Cost(other=3 * float_numel(args[0]))


@formula([aten.softplus_backward, aten.polar])
def untagged_compound_pointwise_cost(func, args, kwargs, out) -> Cost:
    # compound pointwise operators whose schema lacks the pointwise tag: PER_ELEMENT FLOPs per output element
    return pointwise_cost(func, args, kwargs, out)


@formula(aten._weight_norm_interface)
def weight_norm_cost(func, args, kwargs, out) -> Cost:
    # w = v · g / ‖v‖ (norm over every dim but `dim`): square and add per element of v (2), a square root and
    # the division g/‖v‖ per norm (2), the scaling multiply per element of v (1) → 3·numel(v) + 2·numel(g).
    v, g = args[0], args[1]
    return Cost(other=3 * float_numel(v) + 2 * float_numel(g))


@formula(aten._weight_norm_interface_backward)
def weight_norm_backward_cost(func, args, kwargs, out) -> Cost:
    # (grad_w, v, g, norms, dim): grad_g = Σ grad_w·v / ‖v‖ — a multiply and add per element of v (2), a divide per
    # norm (1); grad_v = (g/‖v‖)·(grad_w − v·grad_g/‖v‖) — multiply, subtract, multiply per element (3) and two
    # per-norm scalars (2) → 5·numel(v) + 3·numel(g).
    v, g = args[1], args[2]
    return Cost(other=5 * float_numel(v) + 3 * float_numel(g))
