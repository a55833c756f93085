"""The target device's kernels, emulated on the CPU's fake tensors (the target itself: ``target.py``).

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
  implementation (its whole-model temporaries). Mixed precision follows CUDA autocast's operator lists
  (:class:`CudaAutocast`), not the CPU's. Recurrent layers run as cuDNN's one call over all layers and steps
  (``aten._cudnn_rnn``, ``gpu_rnn.py``) with the reserve space it keeps for backward, measured on an H200; oneDNN's
  LSTM workspace is not booked.
* ``cpu``: the CPU's own kernels, unchanged.

``torch.nn.functional`` is never patched: the mode sees the calls through PyTorch's ``__torch_function__``
protocol, only while the trace runs.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .cpu_rnn import LSTM_MODE
from .gpu_rnn import register_cudnn_rnn_backward_meta
from .target import CONSTANTS

aten = torch.ops.aten
# torch._VF's recurrent layers (what nn.LSTM / nn.GRU / nn.RNN call) → ATen's rnn mode code
_VF_RNN_MODES = {torch._VF.rnn_relu: 0, torch._VF.rnn_tanh: 1, torch._VF.lstm: LSTM_MODE, torch._VF.gru: 3}


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
        if func in _VF_RNN_MODES and len(args) >= 3 and isinstance(args[2], (list, tuple)) and not kwargs:
            return self._cudnn_rnn(func, *args)
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

    # -- recurrent layers: cuDNN's one call over all layers and steps ------------------------------------------
    def _cudnn_rnn(self, func, input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                   batch_first):
        mode = _VF_RNN_MODES[func]
        per = 4 if has_biases else 2  # w_ih, w_hh (+ b_ih, b_hh) per layer and direction; more: projections
        if (len(params) != per * num_layers * (2 if bidirectional else 1) or input.dim() != 3 or not _float(input)
                or not input.numel()):
            return func(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        register_cudnn_rnn_backward_meta()
        self.used["cudnn_rnn"] += 1
        h0, c0 = (hx[0], hx[1]) if mode == LSTM_MODE else (hx, None)
        # weight_buf: cuDNN's flat copy of the weights; the module's own parameters are that buffer on CUDA (and under
        # autocast the casts below stand for its 16-bit copy), so it adds nothing here.
        output, hy, cy = aten._cudnn_rnn(input, list(params), per, input.new_empty((0,)), h0, c0, mode,
                                         int(h0.shape[-1]), 0, num_layers, batch_first, float(dropout), bool(train),
                                         bool(bidirectional), [], None)[:3]
        return (output, hy, cy) if mode == LSTM_MODE else (output, hy)

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
                        ("cudnn_rnn", "cuDNN recurrent layers (reserve space kept for backward)"),
                        ("fp8", "FP8 linear layers (Transformer Engine: FP8 input and weight kept for backward)")):
        if used.get(name):
            parts.append(f"{label} ×{used[name]}")
    return ", ".join(parts)


def cuda_optimizer_foreach() -> bool:
    """Whether torch.optim on CUDA defaults to the foreach implementation (data file ``[optimizer]``)."""
    return bool(CONSTANTS.value("optimizer", "cuda_foreach"))


# -- CUDA's autocast policy on the CPU's autocast key ----------------------------------------------------------
AUTOCAST_POLICIES = ("lower_precision_fp", "fp32", "fp32_set_opt_dtype", "fp32_append_dtype", "promote", "banned")
_BANNED_MESSAGE = ("torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast on CUDA; "
                   "use binary_cross_entropy_with_logits / BCEWithLogitsLoss (CUDA autocast refuses this operator)")


def _overload(name: str) -> Any:
    """The OpOverload ``aten.<name>`` ("softmax.int", "exp"), or None where this torch build has no such overload."""
    packet_name, _, overload = name.partition(".")
    packet = getattr(aten, packet_name, None)
    return getattr(packet, overload or "default", None) if packet is not None else None


def cuda_autocast_policies() -> dict[str, str]:
    """CUDA autocast's policy of every operator on its lists (data file ``[autocast]``), by ATen overload name."""
    policies = {name: "lower_precision_fp" for name in CONSTANTS.value("autocast", "cuda_rnn_stand_ins")}
    for policy in AUTOCAST_POLICIES:
        key = "cuda_lower_precision_fp" if policy == "lower_precision_fp" else f"cuda_{policy}"
        policies.update({name: policy for name in CONSTANTS.value("autocast", key)})
    return policies


def cpu_autocast_operators() -> list[str]:
    """The operators CPU autocast has its own kernels for (data file ``[autocast]``)."""
    return [name for key in ("cpu_lower_precision_fp", "cpu_fp32", "cpu_promote")
            for name in CONSTANTS.value("autocast", key)]


def _with_defaults(op: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with the positional arguments the caller left to their defaults filled in from ``op``'s schema."""
    positional = [a for a in op._schema.arguments if not a.kwarg_only]
    return tuple(args) + tuple(a.default_value for a in positional[len(args):])


def _eligible(t: Any) -> bool:
    # autocast's is_eligible: a defined floating tensor that is not double
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64


class CudaAutocast:
    """CUDA's autocast policy, run on the CPU's autocast dispatch key while a GPU target is traced.

    Autocast works in the dispatcher, before autograd records an operator (so a cast is part of the graph, and what
    backward keeps is the cast tensor), and it sees every operator, also those a composite one (einsum, cross
    entropy) calls. The CPU-only torch cannot run CUDA tensors, and its CUDA autocast kernels only cast CUDA tensors,
    so the trace keeps CPU autocast on and, for the step, registers through ``torch.library`` a kernel on the
    ``AutocastCPU`` key for every operator on either device's lists: it applies CUDA's policy (data file
    ``[autocast]``) and redispatches below autocast, as ``autocast_mode.h``'s ``WrapFunction_`` does. The
    registrations are removed when the step ends, which puts the CPU's own kernels back. Like CUDA autocast it
    caches the lower-precision copy of an fp32 leaf parameter while the forward runs (``forward()``); the forward
    that checkpointing recomputes inside backward casts again.
    """

    _KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.policies = cuda_autocast_policies()
        # The registrations are process-wide: another thread's CPU autocast (a user's real training loop while the
        # trace runs) keeps the CPU's own policy through them.
        self._cpu_policies = {name: key[len("cpu_"):] for key in ("cpu_lower_precision_fp", "cpu_fp32", "cpu_promote")
                              for name in CONSTANTS.value("autocast", key)}
        self._thread = threading.get_ident()
        self._lib: Any = None
        self._cache: dict[int, tuple[Any, torch.Tensor]] | None = None

    # -- the registrations ------------------------------------------------------------------------------------
    def __enter__(self) -> "CudaAutocast":
        import warnings

        self._lib = torch.library.Library("aten", "IMPL")  # its registrations are removed in __exit__
        names = dict.fromkeys(list(self.policies) + cpu_autocast_operators())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Overriding a previously registered kernel": the CPU's, on purpose
                for name in names:
                    op = _overload(name)
                    if op is not None:
                        self._lib.impl(name, self._kernel(op, self.policies.get(name)), "AutocastCPU")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lib is not None:
            self._lib._destroy()
        self._lib = None
        self._cache = None

    @contextlib.contextmanager
    def forward(self) -> Any:
        """The forward pass: CPU autocast on (it routes operators to the kernels above), casts of weights cached."""
        self._cache = {}
        try:
            with torch.autocast(device_type="cpu", dtype=self.dtype):
                yield
        finally:
            self._cache = None

    # -- the policy -------------------------------------------------------------------------------------------
    def _kernel(self, op: Any, cuda_policy: str | None):
        cpu_policy = self._cpu_policies.get(op._schema.name.split("::")[1] + (
            "." + op._overloadname if op._overloadname != "default" else ""))

        def kernel(*args: Any, **kwargs: Any) -> Any:
            policy = cuda_policy if threading.get_ident() == self._thread else cpu_policy
            with torch._C._ExcludeDispatchKeyGuard(self._KEYS):
                if policy is None:  # on the CPU's lists only: CUDA autocast lets it through uncast
                    return op(*args, **kwargs)
                if policy == "banned":
                    raise RuntimeError(_BANNED_MESSAGE)
                if policy == "fp32_set_opt_dtype":
                    return self._set_opt_dtype(op, args, kwargs)
                if policy == "fp32_append_dtype":
                    # norm without a dtype → the overload with one (norm.Scalar → norm.ScalarOpt_dtype, …_dim → …_dim_dtype)
                    out = torch.float32 if _eligible(args[0]) else args[0].dtype
                    name = op._overloadname
                    with_dtype = getattr(aten.norm, ("ScalarOpt" if name == "Scalar" else name) + "_dtype")
                    return with_dtype(*_with_defaults(op, args), **kwargs, dtype=out)
                lower = torch.get_autocast_dtype("cpu")  # the trace's compute dtype in its own thread
                to = lower if policy == "lower_precision_fp" else torch.float32
                if policy == "promote":
                    to = self._promote_type(list(args) + list(kwargs.values()), lower)
                return op(*[self._cast(a, to) for a in args], **{k: self._cast(v, to) for k, v in kwargs.items()})
        return kernel

    def _set_opt_dtype(self, op: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not _eligible(args[0]):
            return op(*args, **kwargs)
        arguments = op._schema.arguments
        index = next(i for i, a in enumerate(arguments) if a.name == "dtype")
        if arguments[index].kwarg_only or index >= len(args):
            if kwargs.get("dtype") is None:
                kwargs = {**kwargs, "dtype": torch.float32}
            return op(*args, **kwargs)
        if args[index] is None:
            args = args[:index] + (torch.float32,) + args[index + 1:]
        return op(*args, **kwargs)

    @staticmethod
    def _promote_type(values: list[Any], lower: torch.dtype) -> torch.dtype:
        # autocast_mode.h prioritize(): float32 wins over the lower precision; doubles are ignored
        to = lower
        for v in values:
            for t in (v if isinstance(v, (list, tuple)) else (v,)):
                if _eligible(t) and t.dtype == torch.float32:
                    to = torch.float32
        return to

    def _cast(self, value: Any, to: torch.dtype) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(v, to) for v in value)
        if not _eligible(value) or value.dtype == to:
            return value
        cacheable = (self._cache is not None and threading.get_ident() == self._thread and to == self.dtype
                     and value.dtype == torch.float32
                     and value.requires_grad and value.is_leaf and not value._is_view()
                     and torch.is_autocast_cache_enabled())
        if not cacheable:
            return value.to(to)
        hit = self._cache.get(id(value))
        if hit is not None and hit[0]() is value:
            return hit[1]
        cast = value.to(to)
        self._cache[id(value)] = (weakref.ref(value), cast)
        return cast
