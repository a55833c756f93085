"""Closed-form estimates for models that are not traced (only a parameter count is known).

Used where a claim or plan gives parameters instead of an architecture. Traced
counts are always preferred and are what `count` reports.
"""
from __future__ import annotations


def train_flops_from_params(params: float, tokens: float) -> float:
    """6·N·D: forward 2 FLOPs per parameter per token, backward twice that (Kaplan et al. 2020,
    arXiv:2001.08361, §2.1). Excludes attention's sequence-dependent term."""
    if params <= 0 or tokens <= 0:
        raise ValueError("params and tokens must be positive")
    return 6.0 * params * tokens


def attention_flops_per_token(layers: int, seq: int, attn_width: int, training: bool = True) -> float:
    """Attention score and value products per token over the full square.

    Forward: QKᵀ and PV cost 2·s·d each per layer and token → 4·L·s·d; a training step
    (forward + backward) is three times that, 12·L·s·d — PaLM appendix B's 12·L·H·Q·T with
    H·Q = d and T = s."""
    fwd = 4.0 * layers * seq * attn_width
    return 3 * fwd if training else fwd
