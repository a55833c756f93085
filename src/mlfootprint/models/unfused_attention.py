"""``--attention unfused``: attention as Megatron-LM ran it before FlashAttention, for Hugging Face models.

Megatron-LM's attention of 2019–2022 (``megatron/model/transformer.py``, ``ParallelAttention`` / ``CoreAttention``
at a8d172b3, 2021-04) and Megatron-DeepSpeed's (BLOOM) run four kernels per layer on the T×T score matrix, all in the
16-bit compute dtype (those stacks cast the model to fp16/bf16; they do not use autocast):

1. a batched GEMM writes the scores Q·Kᵀ (``torch.baddbmm``, 16-bit output);
2. one fused kernel scales, masks and soft-maxes them, fp32 inside and 16-bit in and out
   (``megatron/fused_kernels``: ``scaled_upper_triang_masked_softmax`` for causal masks, ``scaled_masked_softmax``
   for a mask tensor); its backward is one kernel too;
3. dropout on the probabilities (PyTorch's own kernel; it saves a one-byte mask);
4. a batched GEMM with the values.

Hugging Face's ``eager`` attention is not that kernel under mixed precision: CUDA autocast runs its softmax in fp32
(twice the bytes of the probabilities) and a separate cast brings them back to 16 bits. This function traces
Megatron's sequence instead: the scale and the mask are elementwise operators right before the softmax (a fused
stack runs them in the softmax's kernel, ``analysis/predict/data/fusion.toml``), and the softmax runs with autocast
off, in the scores' dtype. It saves what Korthikanti et al. 2022 (arXiv:2205.05198, Sec. 4.1) count for the attention
core, 5·a·s²·b bytes per layer in 16 bits with dropout: the softmax output (2), the dropout mask (1) and its
output (2).

It is registered with transformers' own attention registry (``AttentionInterface``, with the SDPA mask builder,
which gives no mask for a plain causal or unpadded model), so every model that takes an attention function runs it.
"""
from __future__ import annotations

from typing import Any

import torch

NAME = "mlfootprint_unfused"


def unfused_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                              **_: Any) -> tuple[torch.Tensor, None]:
    """(output [batch, q_len, heads, head_dim], None) for query [batch, heads, q_len, head_dim] and key/value
    [batch, kv_heads, kv_len, head_dim]: the signature of a transformers attention function."""
    heads, kv_heads = query.shape[1], key.shape[1]
    if kv_heads != heads:  # grouped-query attention: each key/value head serves heads / kv_heads query heads
        key = _repeat_heads(key, heads // kv_heads)
        value = _repeat_heads(value, heads // kv_heads)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2))
    # the fused softmax kernel's prologue: the scale, then the mask
    scores = scores * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = torch.where(attention_mask, scores, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    # No mask tensor for a causal model: scaled_upper_triang_masked_softmax masks the upper triangle from its
    # indices, reading nothing more, so the traced softmax alone has its traffic (and fake values are never read).
    with torch.autocast(device_type=scores.device.type, enabled=False):
        probs = torch.softmax(scores, dim=-1)  # in the scores' 16-bit dtype, as the fused kernel's output
    if dropout > 0.0 and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout, training=True)
    out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), None


def _repeat_heads(t: torch.Tensor, times: int) -> torch.Tensor:
    batch, kv_heads, length, dim = t.shape
    return t[:, :, None].expand(batch, kv_heads, times, length, dim).reshape(batch, kv_heads * times, length, dim)


def register() -> str:
    """Register the function (and the SDPA mask builder for it) with transformers; returns its name.

    The registries are transformers' documented extension points; registering adds a name and changes no other."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, unfused_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
