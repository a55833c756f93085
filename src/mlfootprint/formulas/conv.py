"""Convolutions, 1-d to 3-d, grouped, depthwise and transposed, forward and backward.

For a regular convolution each output element (N·C_out·∏out_spatial) is a dot
product of length (C_in/groups)·∏kernel, so FLOPs = 2·N·∏out_spatial·numel(W)
with W of shape (C_out, C_in/groups, *kernel). A transposed convolution scatters
each *input* element through its kernel slice: FLOPs = 2·N·∏in_spatial·numel(W)
with W of shape (C_in, C_out/groups, *kernel). Depthwise is groups = C_in.
"""
from __future__ import annotations

import torch

from .registry import Cost, aten, formula, prod


def conv_hint(x, w, transposed: bool, groups: int) -> tuple:
    """("conv", layout, C_in, C_out, kernel, input height·width, dtype) of a dense 2-d convolution, what a GPU's
    measured convolution rates are looked up by (analysis/predict/data/gpu_kernels.toml conv2d); () for the rest."""
    if transposed or groups != 1 or not isinstance(x, torch.Tensor) or x.dim() != 4 or w.dim() != 4:
        return ()
    layout = "channels_last" if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last) \
        else "nchw"
    return ("conv", layout, int(x.shape[1]), int(w.shape[0]), int(w.shape[-1]), int(x.shape[2] * x.shape[3]),
            str(x.dtype).replace("torch.", ""))


def _conv_flops(x_shape, w_shape, out_shape, transposed: bool) -> int:
    n = x_shape[0]
    spatial = x_shape[2:] if transposed else out_shape[2:]
    return 2 * n * prod(spatial) * prod(w_shape)


@formula([aten.convolution, aten._convolution, aten.cudnn_convolution, aten.cudnn_convolution_transpose,
          aten.mkldnn_convolution, aten.conv1d, aten.conv2d, aten.conv3d])
def conv_cost(func, args, kwargs, out) -> Cost:
    a = bind_conv(args, kwargs)
    transposed = bool(a.get("transposed", False))
    bias = a.get("bias")
    return Cost(model=_conv_flops(args[0].shape, args[1].shape, out.shape, transposed),
                other=out.numel() if bias is not None else 0,
                hint=conv_hint(args[0], args[1], transposed, int(a.get("groups", 1) or 1)))


def bind_conv(args, kwargs) -> dict:
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed", "output_padding", "groups")
    d = dict(zip(names, args))
    d.update(kwargs)
    return d


@formula(aten.convolution_backward)
def conv_backward_cost(func, args, kwargs, out) -> Cost:
    # convolution_backward(grad_out, input, weight, bias_sizes, stride, padding, dilation,
    #                      transposed, output_padding, groups, output_mask)
    grad_out, x, w = args[0], args[1], args[2]
    transposed = bool(args[7])
    mask = args[10]
    per_product = _conv_flops(x.shape, w.shape, grad_out.shape, transposed)
    flops = 0
    if mask[0]:  # grad_input: the transposed operation, same multiply–adds
        flops += per_product
    if mask[1]:  # grad_weight: correlation of input with grad_out, same multiply–adds
        flops += per_product
    # mask[2] (grad_bias) is a sum of grad_out over all but the channel dim: reduction work.
    other = grad_out.numel() if len(mask) > 2 and mask[2] else 0
    return Cost(model=flops, other=other, hint=conv_hint(x, w, transposed, int(args[9])))



@formula(aten.conv_tbc)
def conv_tbc_cost(func, args, kwargs, out) -> Cost:
    # conv_tbc(input (T, B, C_in), weight (K, C_in, C_out), bias, pad) → (T_out, B, C_out). ATen's kernel starts
    # from the bias (a copy) and adds, per kernel tap k, one (t_k·B × C_in)·(C_in × C_out) product over the t_k
    # output steps whose input step is not padding: t_k = min(T + pad − k, T_out) − max(0, pad − k).
    # FLOPs = 2·B·C_in·C_out·Σ_k t_k (its backward decomposes into the same addmm_ products, counted as such).
    x, w, pad = args[0], args[1], int(args[3]) if len(args) > 3 else int(kwargs.get("pad", 0))
    t_in, b = x.shape[0], x.shape[1]
    k_taps, c_in, c_out = w.shape
    t_out = out.shape[0]
    rows = sum(max(0, min(t_in + pad - k, t_out) - max(0, pad - k)) for k in range(k_taps))
    return Cost(model=2 * rows * b * c_in * c_out)
