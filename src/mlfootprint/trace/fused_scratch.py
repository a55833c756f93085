"""In-call scratch of PyTorch's fused transformer inference kernels (CPU), which a fake trace cannot see.

`aten._native_multi_head_attention` (nn.MultiheadAttention's fast path) and
`aten._transformer_encoder_layer_fwd` (nn.TransformerEncoderLayer's) allocate and free their intermediates
inside one call; only their outputs reach the trace. The general CPU path of
`native_multi_head_attention_cpu` (aten/src/ATen/native/transformers/attention.cpp), with N_q = B·L query and
N_kv = B·S key tokens of width D and H heads:
  qkv = projection                      (N_q + 2·N_kv)·D   then, while it is alive,
  q, k, v = bias + rescale + split      (N_q + 2·N_kv)·D   (qkv is freed after this)
  qkt = q·kᵀ, softmax in place          B·H·L·S            next to q, k, v
  attn_ctx (reuses q's storage), then the out projection through a transposed temporary: 2·N_q·D
so its peak above what was live before is max(2·(N_q + 2·N_kv)·D, (N_q + 2·N_kv)·D + B·H·L·S [+ 2·N_q·D when
the weights are kept]) elements. The encoder layer (transformer.cpp) runs that, then its feed-forward block: the
attention output (N·D), the hidden (N·F) and the block's output (N·D) live together. Measured on this machine with
the profiler's allocator events inside one call, fp32, (B, T, D, H, F) = (8, 128, 256, 8, 1024), (4, 64, 128, 4,
512), (8, 128, 256, 8, 256), (2, 256, 64, 2, 128): peaks 7, 6, 7 and 11 × N·D·4 bytes, as the rule gives.
The booked transient is that peak less the op's outputs (booked at the same op).
"""
from __future__ import annotations

from typing import Any


def _mha_peak_elements(b: int, lq: int, s: int, d: int, heads: int, need_weights: bool) -> int:
    projected = (b * lq + 2 * b * s) * d
    scores = b * heads * lq * s
    tail = 2 * b * lq * d if need_weights else 0
    return max(2 * projected, projected + scores + tail)


def _out_bytes(out: Any) -> int:
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return sum(t.numel() * t.element_size() for t in outs if hasattr(t, "numel") and not getattr(t, "is_nested", False))


def native_mha_scratch_bytes(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    query, key = args[0], args[1]
    if getattr(query, "is_nested", False) or query.dim() != 3:
        return 0
    need_weights = bool(args[10]) if len(args) > 10 else bool(kwargs.get("need_weights", True))
    b, lq, d = query.shape
    peak = _mha_peak_elements(b, lq, key.shape[1], d, int(args[4]), need_weights) * query.element_size()
    return max(0, peak - _out_bytes(out))


def encoder_layer_scratch_bytes(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    src = args[0]
    if getattr(src, "is_nested", False) or src.dim() != 3:
        return 0
    b, t, d = src.shape
    hidden = args[14].shape[0]  # ffn_weight_1 (F, D)
    attention = _mha_peak_elements(b, t, t, d, int(args[2]), need_weights=False)
    ffn = b * t * (2 * d + hidden)
    return max(0, max(attention, ffn) * src.element_size() - _out_bytes(out))
