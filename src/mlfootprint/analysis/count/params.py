"""Parameter statistics from a trace: total, trainable, embedding, non-embedding, active (MoE), by dtype.

A parameter shared by several modules (tied input/output embeddings) counts once. "Embedding" means the
weights of nn.Embedding modules (token and learned position embeddings); a tied LM head is the same tensor
and is not added again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...trace.records import Trace


@dataclass
class ParamStats:
    total: int
    trainable: int
    frozen: int
    embedding: int
    non_embedding: int
    active: int  # parameters one token uses: everything but the routed experts it does not visit
    expert: int | None  # routed expert parameters (MoE models only)
    by_dtype: dict[str, int] = field(default_factory=dict)


def parameter_stats(trace: Trace) -> ParamStats:
    total = trainable = embedding = expert = 0
    by_dtype: dict[str, int] = {}
    for p in trace.params:
        n = p.numel
        total += n
        trainable += n if p.trainable else 0
        embedding += n if p.embedding else 0
        expert += n if p.expert else 0
        by_dtype[p.dtype] = by_dtype.get(p.dtype, 0) + n
    moe = trace.moe
    # Each token uses top_k of the routed experts; everything else is always active.
    active = total - expert + (expert * moe.top_k) // moe.experts if moe is not None else total
    return ParamStats(total=total, trainable=trainable, frozen=total - trainable, embedding=embedding,
                      non_embedding=total - embedding, active=active, expert=expert if moe is not None else None,
                      by_dtype=by_dtype)
