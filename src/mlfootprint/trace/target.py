"""The target device's kernels, emulated on the CPU's fake tensors.

The trace runs on fake CPU tensors (the CPU-only torch aborts the process when operators run on fake CUDA
tensors), so left alone it follows the CPU's kernel choices. Those choices change memory: on the CPU,
scaled-dot-product attention with dropout takes the math path and keeps the T×T probabilities, and dropout
keeps its mask in the activation dtype. The device the user names (``--hardware``; this machine's CPU when
none is named) decides which kernels the trace emulates:

* ``cuda`` (a GPU target): :class:`CudaKernels`, a ``TorchFunctionMode``, reroutes
  ``scaled_dot_product_attention`` to the fused kernel CUDA would pick (``aten._scaled_dot_product_flash_attention``
  or ``…_efficient_attention``, whose fake implementations run on CPU fake tensors): output, logsumexp and
  the RNG seed/offset are kept, no T×T tensor, with or without dropout. Their FLOP formulas count the
  backward's recomputed Q·Kᵀ as hardware FLOPs, not model FLOPs (formulas/attention.py). Dropout runs as
  CUDA's fused ``native_dropout`` with a one-byte (bool) mask. Optimizers take CUDA's default foreach
  implementation (its whole-model temporaries).
* ``cpu``: the CPU's own kernels, unchanged.

``torch.nn.functional`` is never patched: the mode sees the calls through PyTorch's ``__torch_function__``
protocol, only while the trace runs.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..core.datafiles import SourcedConstants
from ..hardware.catalog import get_device
from ..workload import Workload

CONSTANTS = SourcedConstants("trace", "kernels.toml", "trace")
KERNELS = ("cpu", "cuda")

aten = torch.ops.aten


@dataclass(frozen=True)
class Target:
    """Whose kernels the trace emulates: ``kernels`` is ``cpu`` or ``cuda``; ``device`` the catalog id named."""

    kernels: str
    device: str | None
    reason: str

    @property
    def gpu(self) -> bool:
        return self.kernels == "cuda"


def target_of(wl: Workload) -> Target:
    """The target of a workload: its ``hardware``'s kind decides; none named means this machine's CPU."""
    if not wl.hardware:
        return Target("cpu", None, "no target device named: the trace follows this machine's CPU kernels")
    dev = get_device(wl.hardware)
    kernels = str(CONSTANTS.value("targets", dev.kind))
    if kernels == "cuda":
        why = (f"--hardware {dev.id} is a {dev.kind}: the trace emulates CUDA's kernels (fused SDPA without T×T "
               "tensors, one-byte dropout masks, foreach optimizers)")
    else:
        why = f"--hardware {dev.id} is a {dev.kind}: the trace follows the CPU's kernels"
    return Target(kernels, dev.id, why)


def _float(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype.is_floating_point


class _Fp8Linear(torch.autograd.Function):
    """A linear layer as Transformer Engine trains it in FP8 (data file ``[fp8]``): the GEMMs as in 16 bits (same
    FLOPs), but what backward keeps is the FP8 (one byte) cast of the input and of the weight."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> torch.Tensor:
        w = weight.t() if transposed else weight  # addmm's weight is in×out (GPT-2's Conv1D)
        out = F.linear(x, w, bias)
        fp8 = getattr(torch, str(CONSTANTS.value("fp8", "forward_dtype")))
        ctx.save_for_backward(x.to(fp8), weight.to(fp8))
        ctx.meta = (out.dtype, weight.dtype, bias is not None, transposed)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x8, w8 = ctx.saved_tensors
        dtype, wdtype, has_bias, transposed = ctx.meta
        x, w = x8.to(dtype), w8.to(dtype)
        g = grad.to(dtype)
        w_oi = w.t() if transposed else w
        grad_x = g.matmul(w_oi)
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_w = (x2.t().mm(g2) if transposed else g2.t().mm(x2)).to(wdtype)
        grad_b = g2.sum(0).to(wdtype) if has_bias else None
        return grad_x, grad_w, grad_b, None


class CudaKernels(TorchFunctionMode):
    """Emulates CUDA's kernel choices for SDPA and dropout on fake CPU tensors (see the module docstring);
    with ``fp8``, linear layers as Transformer Engine's FP8 training runs them (:class:`_Fp8Linear`).

    ``used`` counts the kernels it chose (``flash``, ``efficient``, ``math``, ``dropout``, ``fp8``) for the report.
    """

    def __init__(self, fp8: bool = False) -> None:
        super().__init__()
        self.fp8 = fp8
        self.used: Counter[str] = Counter()
        self._flash_dtypes = {getattr(torch, d) for d in CONSTANTS.value("sdpa", "flash_dtypes")}
        self._eff_dtypes = {getattr(torch, d) for d in CONSTANTS.value("sdpa", "efficient_dtypes")}
        self._flash_max = int(CONSTANTS.value("sdpa", "flash_max_head_dim"))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._sdpa(func, *args, **kwargs)
        if func is F.dropout:
            return self._dropout(func, args, kwargs, *args, **kwargs)
        if func is torch.dropout:
            return self._torch_dropout(func, args, kwargs, *args, **kwargs)
        if self.fp8 and func is F.linear:
            return self._linear(func, args, kwargs, *args, **kwargs)
        if self.fp8 and func is torch.addmm:
            return self._addmm(func, args, kwargs, *args, **kwargs)
        if (func is torch.Tensor.backward and len(args) == 1 and args[0].dim() == 0
                and not any(v for v in kwargs.values())):
            return self._backward(args[0])
        return func(*args, **kwargs)

    def _backward(self, loss: torch.Tensor) -> None:
        # A mode's handler runs with the mode popped, so the backward, and the forward that activation
        # checkpointing recomputes inside it, would run with the CPU's kernels (and checkpointing would see
        # different saved tensors). Run autograd's engine directly, with this mode pushed again.
        with self:
            torch.autograd.graph._engine_run_backward((loss,), (torch.ones_like(loss),), False, False, (),
                                                      allow_unreachable=True, accumulate_grad=True)

    # -- dropout: CUDA's fused kernel keeps a bool mask ------------------------------------------------
    def _dropout(self, func, args, kwargs, input, p=0.5, training=True, inplace=False):
        # at::dropout takes native_dropout on CUDA when 0 < p < 1 (is_fused_kernel_acceptable); the in-place
        # variant does not, so it is left as it is.
        if training and not inplace and 0 < p < 1 and _float(input) and input.numel():
            self.used["dropout"] += 1
            return torch.native_dropout(input, p, True)[0]
        return func(*args, **kwargs)

    def _torch_dropout(self, func, args, kwargs, input, p, train):
        if train and 0 < p < 1 and _float(input) and input.numel():
            self.used["dropout"] += 1
            return torch.native_dropout(input, p, True)[0]
        return func(*args, **kwargs)

    # -- FP8 linear layers (Transformer Engine) -------------------------------------------------------------
    def _autocast_dtype(self) -> torch.dtype | None:
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None

    def _fp8_ok(self, x: Any, weight: Any) -> bool:
        return (_float(x) and isinstance(weight, torch.nn.Parameter) and weight.requires_grad and weight.dim() == 2
                and torch.is_grad_enabled())

    def _linear(self, func, args, kwargs, input, weight, bias=None):
        if not self._fp8_ok(input, weight):
            return func(*args, **kwargs)
        self.used["fp8"] += 1
        return _Fp8Linear.apply(input, weight, bias, False)

    def _addmm(self, func, args, kwargs, input, mat1, mat2, *, beta=1, alpha=1, out=None):
        if out is not None or beta != 1 or alpha != 1 or not self._fp8_ok(mat1, mat2) or mat1.dim() != 2:
            return func(*args, **kwargs)
        self.used["fp8"] += 1
        return _Fp8Linear.apply(mat1, mat2, input, True)

    # -- SDPA: the fused kernel CUDA would pick ---------------------------------------------------------
    def _sdpa(self, func, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
              enable_gqa=False):
        q, k, v = query, key, value
        if torch.is_autocast_enabled("cpu"):
            # scaled_dot_product_attention is on autocast's lower-precision list; the fused op is not
            dt = torch.get_autocast_dtype("cpu")
            q, k, v = (t.to(dt) if t.dtype == torch.float32 else t for t in (q, k, v))
        kernel = self._choose(q, k, v, attn_mask, enable_gqa)
        self.used[kernel] += 1
        if kernel == "flash":
            return aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
        if kernel == "efficient":
            bias = attn_mask
            if bias is not None:
                if bias.dtype == torch.bool:
                    # sdpa's convert_boolean_attn_mask: an additive float mask of the query dtype
                    bias = torch.zeros(bias.shape, dtype=q.dtype).masked_fill_(bias.logical_not(), float("-inf"))
                elif bias.dtype != q.dtype:
                    bias = bias.to(q.dtype)
                b, h, lq, s = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
                while bias.dim() < 4:
                    bias = bias.unsqueeze(0)
                bias = bias.expand(b, h, lq, s)
            lse = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
            return aten._scaled_dot_product_efficient_attention(q, k, v, bias, lse, dropout_p, is_causal,
                                                                scale=scale)[0]
        return func(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                    enable_gqa=enable_gqa)

    def _choose(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any, gqa: bool) -> str:
        """flash, efficient or math, by CUDA's rules (data file ``[sdpa]``)."""
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4 or not (q.dtype == k.dtype == v.dtype):
            return "math"
        if q.shape[-1] != k.shape[-1] or (mask is not None and mask.dim() > 4):
            return "math"
        same_heads = q.shape[1] == k.shape[1] == v.shape[1]
        grouped = gqa and k.shape[1] == v.shape[1] and q.shape[1] % k.shape[1] == 0
        if (mask is None and q.dtype in self._flash_dtypes and q.shape[-1] <= self._flash_max
                and v.shape[-1] == q.shape[-1] and (same_heads or grouped)):
            return "flash"
        if q.dtype in self._eff_dtypes and same_heads:
            return "efficient"
        return "math"

    def summary(self) -> str:
        """One line for the report: which kernels the emulation chose, and how often."""
        return kernel_summary(self.used)


def kernel_summary(used: dict[str, int]) -> str:
    """The report's line for kernel-choice counts (``CudaKernels.used``)."""
    parts = []
    for name, label in (("flash", "flash attention"), ("efficient", "memory-efficient attention"),
                        ("math", "math-path attention (no fused kernel fits)"),
                        ("dropout", "fused dropout (bool mask)"),
                        ("fp8", "FP8 linear layers (Transformer Engine: FP8 input and weight kept for backward)")):
        if used.get(name):
            parts.append(f"{label} ×{used[name]}")
    return ", ".join(parts)


def cuda_optimizer_foreach() -> bool:
    """Whether torch.optim on CUDA defaults to the foreach implementation (data file ``[optimizer]``)."""
    return bool(CONSTANTS.value("optimizer", "cuda_foreach"))
