"""The key/value cache of autoregressive generation.

Per device, for ``tokens`` = prompt + generated tokens:

    bytes = 2 (K and V) · layers · kv_heads · head_dim · tokens · batch · bytes per element

``kv_heads`` is the model's number of key/value heads, so grouped-query and
multi-query attention (Ainslie et al. 2023; Shazeer 2019) are accounted for.
Tensor parallelism splits the KV heads over ``tp`` devices (a device holds at
least one head: with fewer KV heads than devices they are replicated);
pipeline parallelism gives each stage its layers.
"""
from __future__ import annotations

import math


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, tokens: int, batch: int, bytes_per_elem: int,
                   tp: int = 1, pp: int = 1) -> int:
    layers_here = math.ceil(layers / pp)
    heads_here = max(1, math.ceil(kv_heads / tp))
    return 2 * layers_here * heads_here * head_dim * tokens * batch * bytes_per_elem
