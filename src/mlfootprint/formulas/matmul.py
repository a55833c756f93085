"""Matrix products. An (m×k)·(k×n) product is m·n·k multiply–adds = 2·m·n·k FLOPs.

Bias additions fused into addmm/baddbmm are elementwise work: they go to
``other`` (m·n FLOPs), keeping model FLOPs equal to the analytic 2·m·n·k.
"""
from __future__ import annotations

import torch

from .registry import Cost, aten, formula, numel, prod

# cuBLAS's tensor-core GEMM kernels need every matrix's leading dimension to be a multiple of 16 bytes: 8
# elements of a 16-bit type (NVIDIA, Matrix Multiplication Background User's Guide, "Tensor Core
# Requirements"; PyTorch's Inductor pads matrix products to the same 8, torch/_inductor/fx_passes/pad_mm.py
# get_alignment_size_dtype). Otherwise cuBLAS falls back to kernels that run at a fraction of the rate
# (analysis/predict/data/gemm.toml, unaligned_points). fp32 and fp8 products are not flagged: their rates
# have no unaligned table.
_ALIGN_16BIT = 8
_16BIT = (torch.bfloat16, torch.float16)


def misaligned(*mats) -> bool:
    """True when a 16-bit matrix among ``mats`` (operands and result, batched or not) has a leading dimension
    (the stride of its non-unit-stride dimension) that is not a multiple of 8 elements."""
    for t in mats:
        if not isinstance(t, torch.Tensor) or t.dim() < 2 or t.dtype not in _16BIT:
            continue
        rows, cols = t.shape[-2], t.shape[-1]
        s0, s1 = t.stride()[-2], t.stride()[-1]
        if s1 == 1 and rows > 1:
            ld = s0
        elif s0 == 1 and cols > 1:
            ld = s1
        else:
            continue  # a vector, or a layout cuBLAS is not handed as is
        if ld % _ALIGN_16BIT:
            return True
    return False


@formula([aten.mm, aten._scaled_mm])
def mm_cost(func, args, kwargs, out) -> Cost:
    a, b = args[0], args[1]
    m, k = a.shape
    n = b.shape[1]
    return Cost(model=2 * m * n * k, unaligned=misaligned(a, b, out))


@formula([aten.addmm, aten.addmm_])
def addmm_cost(func, args, kwargs, out) -> Cost:
    # addmm(bias, a, b): the product plus a broadcast bias add (beta·bias + alpha·a@b).
    a, b = args[1], args[2]
    m, k = a.shape
    n = b.shape[1]
    return Cost(model=2 * m * n * k, other=m * n, unaligned=misaligned(a, b, out))


@formula(aten.bmm)
def bmm_cost(func, args, kwargs, out) -> Cost:
    a, b = args[0], args[1]
    batch, m, k = a.shape
    n = b.shape[-1]
    return Cost(model=2 * batch * m * n * k, unaligned=misaligned(a, b, out))


@formula([aten.baddbmm, aten.baddbmm_])
def baddbmm_cost(func, args, kwargs, out) -> Cost:
    a, b = args[1], args[2]
    batch, m, k = a.shape
    n = b.shape[-1]
    return Cost(model=2 * batch * m * n * k, other=batch * m * n, unaligned=misaligned(a, b, out))


@formula([aten.mv, aten.addmv])
def mv_cost(func, args, kwargs, out) -> Cost:
    mat = args[0] if args[0].dim() == 2 else args[1]
    m, k = mat.shape
    return Cost(model=2 * m * k)


@formula([aten.dot, aten.vdot])
def dot_cost(func, args, kwargs, out) -> Cost:
    return Cost(model=2 * numel(args[0]))


def grouped_products(a_shape, b_shape) -> int:
    """FLOPs of a grouped GEMM (MoE experts), by operand layout:
    (S, K) × (E, K, N), rows routed to groups: each row meets one group's weight → 2·S·K·N;
    (M, S) × (S, N), the reduction dim split into groups (weight gradients)  → 2·M·S·N;
    (E, M, K) × (E, K, N), plain batched                                      → 2·E·M·K·N;
    (E, M, K) × (K, N), groups on the left only                               → 2·E·M·K·N."""
    if len(a_shape) == 2 and len(b_shape) == 3:
        s, k = a_shape
        return 2 * s * k * b_shape[2]
    if len(a_shape) == 2 and len(b_shape) == 2:
        m, s = a_shape
        return 2 * m * s * b_shape[1]
    if len(a_shape) == 3:
        e, m, k = a_shape
        return 2 * e * m * k * b_shape[-1]
    raise ValueError(f"unexpected grouped_mm operands {a_shape} × {b_shape}")


@formula(aten._grouped_mm)
def grouped_mm_cost(func, args, kwargs, out) -> Cost:
    return Cost(model=grouped_products(tuple(args[0].shape), tuple(args[1].shape)))


@formula("transformers::_grouped_mm_fallback")
def hf_grouped_mm_cost(func, args, kwargs, out) -> Cost:
    # transformers' CPU grouped GEMM: input (S, K) × weight (E, K, N) routed by offsets → (S, N).
    a = args[0]
    return Cost(model=2 * numel(out) * a.shape[-1])


@formula("transformers::_grouped_mm_fallback_backward")
def hf_grouped_mm_backward_cost(func, args, kwargs, out) -> Cost:
    # grad_input (S, K) = grad (S, N) · Wᵀ and grad_weight (E, K, N) summed from Xᵀ·grad: 2·S·K·N each.
    grad, x = args[0], args[1]
    s, n = grad.shape
    k = x.shape[-1]
    outputs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if o is not None]
    return Cost(model=2 * s * n * k * len(outputs))


@formula([aten.addbmm, aten.addbmm_])
def addbmm_cost(func, args, kwargs, out) -> Cost:
    # addbmm(input (n, p), batch1 (b, n, m), batch2 (b, m, p)) = beta·input + alpha·Σ_b batch1[b]·batch2[b]:
    # the b products and their sum are one dot product of length b·m per output element → 2·b·n·m·p;
    # the add of the (broadcast) input is elementwise → n·p.
    b1, b2 = args[1], args[2]
    batch, n, m = b1.shape
    p = b2.shape[-1]
    return Cost(model=2 * batch * n * m * p, other=n * p)


@formula(aten._int_mm)
def int_mm_cost(func, args, kwargs, out) -> Cost:
    # int8 (m×k)·(k×n) → int32: m·n·k integer multiply–adds = 2·m·n·k operations, matrix-class work like
    # mm (its MFU peak is the device's int8 figure).
    a, b = args[0], args[1]
    m, k = a.shape
    return Cost(model=2 * m * k * b.shape[1])


def _expanded(shape, dims) -> list[int]:
    out = list(shape)
    for d in sorted(dims):
        out.insert(d, 1)
    return out


@formula(aten._trilinear)
def trilinear_cost(func, args, kwargs, out) -> Cost:
    # _trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim): each input unsqueezed at its expand dims, then
    # Σ_sumdim i1·i2·i3. ATen multiplies i1 by i2 first, summing at once the summed dims that i3 lacks (size 1),
    # then multiplies that by i3 summing the rest. Each product costs one multiply–add per element of the
    # broadcast of its operands. nn.Bilinear (B, I) × W (O, I, J) × (B, J): B·O·I·J + B·O·J multiply–adds.
    i1, i2, i3 = args[0], args[1], args[2]
    s1, s2, s3 = _expanded(i1.shape, args[3]), _expanded(i2.shape, args[4]), _expanded(i3.shape, args[5])
    sumdim = set(args[6])
    s12 = [max(a, b) for a, b in zip(s1, s2)]
    first = prod(s12)
    reduced = [1 if (d in sumdim and s3[d] == 1) else s for d, s in enumerate(s12)]
    second = prod(max(a, b) for a, b in zip(reduced, s3))
    return Cost(model=2 * (first + second))


@formula(aten.linear)
def linear_cost(func, args, kwargs, out) -> Cost:
    # aten.linear reaches the dispatcher only for nested (packed) inputs — dense ones decompose into mm/addmm:
    # 2·tokens·in·out over the real tokens (numel of the nested values / in), plus the bias add per output.
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    tokens = x.numel() // w.shape[1]
    return Cost(model=2 * tokens * w.shape[1] * w.shape[0], other=tokens * w.shape[0] if bias is not None else 0)
