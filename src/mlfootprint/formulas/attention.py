"""Scaled-dot-product attention on every backend (CPU flash, flash, efficient, cuDNN, overrideable).

With query (B, H, L, E), key (B, Hk, S, E) and value (B, Hk, S, Ev) — Hk < H for
grouped-query attention, whose FLOPs follow the H query heads:
  scores  Q·Kᵀ : 2·B·H·L·S·E   (model)
  context P·V  : 2·B·H·L·S·Ev  (model)
  scale + softmax: 5 FLOPs per score (scale, max, exp, sum, divide)  (other)
Backward computes dV = Pᵀ·dO, dP = dO·Vᵀ, dQ = dS·K and dK = dSᵀ·Q: twice the
forward products (model), plus the softmax backward, 4 FLOPs per score (other).
Fused kernels (flash, memory-efficient, cuDNN, CPU flash) do not keep P and
recompute Q·Kᵀ in backward: that is hardware work (HFU), not model FLOPs.
The full L×S square is counted even when causal (DESIGN.md); the op's
is_causal flag is recorded so the causal-halved figure can be derived.
Varlen (packed) calls count Σ_i q_i·k_i scores per head, exact when the cumulative sequence
offsets can be read, else the upper bound min(total_q·max_k, max_q·total_k), flagged (_varlen_pairs).
"""
from __future__ import annotations

from .registry import Cost, aten, bind, formula

SOFTMAX_FWD_PER_SCORE = 5
SOFTMAX_BWD_PER_SCORE = 4


def _dims(q, k, v, a: dict, heads_first: bool = True) -> tuple[int, int, int, int, int]:
    """(batch·heads, L, S, E, Ev) for (B, H, L, E) [sdpa ops] or (B, L, H, E) [low-level flash/efficient kernels]
    layouts; packed (varlen) calls are _varlen_pairs's."""
    if q.dim() == 4 and heads_first:
        b, h, lq, e = q.shape
        return b * h, lq, k.shape[-2], e, v.shape[-1]
    b, lq, h, e = q.shape
    return b * h, lq, k.shape[1], e, v.shape[-1]


def _lengths(cu) -> list[int] | None:
    """Sequence lengths from cumulative offsets [0, n_1, n_1 + n_2, …] when their values can be read: a real
    tensor, or a fake one that carries its constant. None on a fake tensor (its values do not exist)."""
    from torch._subclasses.fake_tensor import FakeTensor

    if isinstance(cu, FakeTensor):
        cu = cu.constant
    if cu is None or cu.device.type == "meta":
        return None
    offsets = [int(x) for x in cu.tolist()]
    return [b - a for a, b in zip(offsets, offsets[1:])]


def _varlen_pairs(q, k, a: dict) -> tuple[int, int, bool] | None:
    """Packed (varlen) attention, query (total_q, H, E) or (1, total_q, H, E) with cumulative sequence offsets:
    (heads, score pairs per head, upper bound?). Each sequence attends only within itself, so the pairs are
    Σ_i q_i·k_i (exact when the offsets' values are readable). On fake tensors they are not: the figure is then
    the bound min(total_q·max_k, max_q·total_k) — every query meets at most max_k keys and every key at most
    max_q queries — flagged as an upper bound (the efficient kernel's dense total_q·total_k overcounted 3.3× a
    typical packed batch, the flash kernel's total_q·max_k 1.33×)."""
    cu_q = a.get("cum_seq_q", a.get("cu_seqlens_q"))
    cu_k = a.get("cum_seq_k", a.get("cu_seqlens_k"))
    if cu_q is None or cu_k is None:
        return None
    heads = q.shape[-2]
    total_q, total_k = q.shape[-3], k.shape[-3]
    lq, lk = _lengths(cu_q), _lengths(cu_k)
    if lq is not None and lk is not None:
        return heads, sum(x * y for x, y in zip(lq, lk)), False
    max_q = a.get("max_q", a.get("max_seqlen_q"))
    max_k = a.get("max_k", a.get("max_seqlen_k"))
    max_q = int(max_q) if isinstance(max_q, int) and max_q > 0 else total_q
    max_k = int(max_k) if isinstance(max_k, int) and max_k > 0 else total_k
    return heads, min(total_q * max_k, max_q * total_k), True


def _scores(func, a: dict) -> tuple[int, int, int, bool, tuple]:
    """(score pairs over all batches and heads, E, Ev, upper bound?, hint). The hint, ("attention", L, S, E), is
    what a device class's measured attention rates are read at (analysis/predict/attention_rate.py); packed
    calls have none."""
    q, k, v = a["query"], a["key"], a["value"]
    packed = _varlen_pairs(q, k, a)
    if packed is not None:
        heads, pairs, bound = packed
        return heads * pairs, q.shape[-1], v.shape[-1], bound, ()
    bh, lq, s, e, ev = _dims(q, k, v, a, _heads_first(func))
    return bh * lq * s, e, ev, False, ("attention", int(lq), int(s), int(e))


def _causal(a: dict) -> bool:
    # sdpa ops carry is_causal; the efficient kernel's custom_mask_type 1/2 are causal masks.
    return bool(a.get("is_causal", False)) or a.get("custom_mask_type") in (1, 2)


def _heads_first(func) -> bool:
    return func.overloadpacket.__name__.startswith("_scaled_dot_product")


def _forward(func, args, kwargs, fused: bool) -> Cost:
    a = bind(func, args, kwargs)
    scores, e, ev, bound, hint = _scores(func, a)
    products = 2 * scores * e + 2 * scores * ev
    return Cost(model=products, other=SOFTMAX_FWD_PER_SCORE * scores, attention=products,
                causal=_causal(a), upper_bound=bound, hint=hint)


def _backward(func, args, kwargs, fused: bool) -> Cost:
    a = bind(func, args, kwargs)
    scores, e, ev, bound, hint = _scores(func, a)
    products = 2 * (2 * scores * e + 2 * scores * ev)
    return Cost(model=products, other=SOFTMAX_BWD_PER_SCORE * scores, attention=products,
                causal=_causal(a), recompute=2 * scores * e if fused else 0, upper_bound=bound, hint=hint)


_FWD = [
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
    aten._scaled_dot_product_fused_attention_overrideable,
    aten._flash_attention_forward,
    aten._efficient_attention_forward,
]
_BWD = [
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
    aten._scaled_dot_product_fused_attention_overrideable_backward,
    aten._flash_attention_backward,
    aten._efficient_attention_backward,
]


@formula(_FWD)
def sdpa_forward_cost(func, args, kwargs, out) -> Cost:
    return _forward(func, args, kwargs, fused=True)


@formula(_BWD)
def sdpa_backward_cost(func, args, kwargs, out) -> Cost:
    return _backward(func, args, kwargs, fused=True)



# -- nn.MultiheadAttention's and nn.TransformerEncoderLayer's inference fast paths -------------------------

def _sequences(t) -> list[tuple[int, int, int]]:
    """(batch, length, width) blocks of a (B, L, D) tensor, or one (1, L_i, D) block per sequence of a nested
    tensor (nn.TransformerEncoder packs a padded batch into one when given src_key_padding_mask: padding is skipped)."""
    if getattr(t, "is_nested", False):
        return [(1, int(n), int(d)) for n, d in t._nested_tensor_size().tolist()]
    b, n, d = t.shape
    return [(int(b), int(n), int(d))]


def _mha_cost(query, key, embed_dim: int, heads: int, need_weights: bool, average: bool) -> Cost:
    """Multi-head attention of query (B, L, D) over key/value (B, S, D), projections included:
      QKV projection : 2·D·D·B·(L + 2·S)   (one (B·L × D)·(D × 3D) product for self-attention)   (model)
      Q·Kᵀ and P·V   : 2·B·L·S·D each (= 2·B·H·L·S·D/H)                                           (model, attention)
      out projection : 2·B·L·D·D                                                                 (model)
      biases (B·(L + 2S)·D + B·L·D), scale + softmax 5 per score, as the SDPA formulas (other); the mask's
      application is not counted (as with SDPA); need_weights with averaging sums the H heads' weights and
      divides: B·H·L·S + B·L·S (other). Nested (packed) inputs: the sum over their sequences."""
    model = other = attention = 0
    for (b, lq, d), (_, s, _) in zip(_sequences(query), _sequences(key)):
        scores = b * heads * lq * s
        products = 4 * b * lq * s * embed_dim
        attention += products
        model += 2 * d * embed_dim * b * (lq + 2 * s) + products + 2 * b * lq * embed_dim * embed_dim
        other += b * (lq + 2 * s) * embed_dim + SOFTMAX_FWD_PER_SCORE * scores + b * lq * embed_dim
        if need_weights and average:
            other += scores + b * lq * s
    return Cost(model=model, other=other, attention=attention)


@formula(aten._native_multi_head_attention)
def native_mha_cost(func, args, kwargs, out) -> Cost:
    # nn.MultiheadAttention's fast path (inference, batch_first); see _mha_cost.
    a = bind(func, args, kwargs)
    return _mha_cost(a["query"], a["key"], int(a["embed_dim"]), int(a["num_head"]), bool(a["need_weights"]),
                     bool(a["average_attn_weights"]))


@formula(aten._transformer_encoder_layer_fwd)
def transformer_encoder_layer_cost(func, args, kwargs, out) -> Cost:
    # nn.TransformerEncoderLayer's fast path (inference): self-attention (see _mha_cost, S = L, need_weights off),
    # then the feed-forward block 2·N·D·F twice (model) with N = B·L tokens and F the hidden width, its biases
    # (N·F + N·D), the activation (relu 1, gelu 8 per element, as the pointwise convention), two layer norms
    # (7 per element each, as the norm formula with affine) and two residual adds (N·D each) (other).
    from .elementwise import NORM_AFFINE, NORM_FWD, PER_ELEMENT

    a = bind(func, args, kwargs)
    src, d = a["src"], int(a["embed_dim"])
    cost = _mha_cost(src, src, d, int(a["num_heads"]), need_weights=False, average=False)
    tokens = sum(b * n for b, n, _ in _sequences(src))
    f = a["ffn_weight_1"].shape[0]
    activation = PER_ELEMENT["gelu"] if a["use_gelu"] else 1
    ffn = 2 * 2 * tokens * d * f
    other = tokens * f + tokens * d + activation * tokens * f + 2 * (NORM_FWD + NORM_AFFINE) * tokens * d + 2 * tokens * d
    return Cost(model=cost.model + ffn, other=cost.other + other, attention=cost.attention)
