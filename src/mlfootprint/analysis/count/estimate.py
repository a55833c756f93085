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
