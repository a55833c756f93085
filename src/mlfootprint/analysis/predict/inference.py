"""Serving: prefill (compute-bound, from the traced forward) and decode (memory-bound, per generated token).

Decode of one token for a batch of b sequences at context c reads
  weights    every weight matrix once (the input embedding only for the b rows it
             looks up; with a mixture of experts, the experts the b tokens route to)
  KV cache   b · c · 2 · layers · kv_heads · head_dim · bytes per element
and does
  FLOPs      b · (linear FLOPs per token + 4 · layers · heads · head_dim · c)
so its time is max(bytes / bandwidth, FLOPs / rate) + per-op overhead of one
forward pass, plus tensor-parallel all-reduces (2 per layer of b · hidden).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


from ..count.params import parameter_stats
from . import comm
from .efficiency import Efficiency
from .roofline import Profile
from ...workload import Layout


@dataclass
class DecodeModel:
    linear_flops_per_token: float  # forward matrix FLOPs per token outside attention products
    attention_flops_per_context: float  # 4 · layers · heads · head_dim
    weight_bytes_dense: float  # weights read per token outside routed experts
    expert_bytes: float  # all routed-expert weights
    experts: int
    top_k: int
    kv_bytes_per_token: float  # per sequence, per context position
    layers: int
    hidden: int
    act_bytes: int
    forward_ops: int



def decode_model(spec: Any, wl: Any, trace: Any) -> DecodeModel | None:
    """None when the model is not a decoder with known attention shapes."""
    facts = spec.facts or {}
    layers, hidden = facts.get("layers"), facts.get("hidden")
    heads = facts.get("heads")
    if not (layers and hidden and heads) or not trace.causal:
        return None
    kv_heads = facts.get("kv_heads") or heads
    head_dim = facts.get("head_dim") or hidden // heads
    fwd = [r for r in trace.records if r.phase == "forward"]
    model = sum(r.model_flops for r in fwd)
    attn = sum(r.attention_flops for r in fwd)
    tokens = trace.tokens or 1
    params = parameter_stats(trace)
    total = params.total
    bpp = trace.param_bytes / total if total else wl.precision_info.traced_param_bytes
    if wl.quant in ("int8", "fp8"):
        bpp = min(bpp, 1.0)
    elif wl.quant == "int4":
        bpp = min(bpp, 0.5)
    embedding = params.embedding
    tied = bool((spec.hf_config or {}).get("tie_word_embeddings", True)) if spec.hf_config else True
    dense_params = total if tied else total - embedding
    expert = params.expert or 0
    dense_params -= expert
    moe = trace.moe
    act = wl.precision_info.compute_bytes
    return DecodeModel(
        linear_flops_per_token=(model - attn) / tokens,
        attention_flops_per_context=4.0 * layers * heads * head_dim,
        weight_bytes_dense=dense_params * bpp,
        expert_bytes=expert * bpp,
        experts=int(getattr(moe, "experts", 0) or 0),
        top_k=int(getattr(moe, "top_k", 0) or 0),
        kv_bytes_per_token=2.0 * layers * kv_heads * head_dim * act,
        layers=int(layers),
        hidden=int(hidden),
        act_bytes=act,
        forward_ops=len(fwd),
    )


def expert_fraction(experts: int, top_k: int, batch: int) -> float:
    """Expected share of routed experts a batch of tokens touches, with uniform routing: 1 − (1 − k/E)^b."""
    if not experts:
        return 0.0
    return 1.0 - (1.0 - top_k / experts) ** batch


@dataclass
class DecodeStep:
    token_s: float
    memory_s: float
    compute_s: float
    overhead_s: float
    communication_s: float
    bytes: float
    flops: float


def decode_token(dm: DecodeModel, profile: Profile, par: Layout, device: Any, eff: Efficiency,
                 batch: int, context: int) -> DecodeStep:
    """One decode step (one new token for each of ``batch`` sequences) on one model replica of tp × pp devices."""
    shard = par.tp * par.pp
    weights = dm.weight_bytes_dense + dm.expert_bytes * expert_fraction(dm.experts, dm.top_k, batch)
    kv = batch * context * dm.kv_bytes_per_token
    nbytes = (weights + kv) / shard
    flops = batch * (dm.linear_flops_per_token + dm.attention_flops_per_context * context) / shard
    mem_s = nbytes / profile.rates["memory"]
    comp_s = flops / profile.rates["matmul"]
    overhead = profile.per_op_overhead_s * dm.forward_ops / par.pp  # one stage's operators
    tp_s = 0.0
    if par.tp > 1:
        intra = device.intra_node_bandwidth_bytes_per_s or device.inter_node_bandwidth_bytes_per_s or 1.0
        inside = par.tp <= int(device.devices_per_node or 1)
        bw = intra if inside else (device.inter_node_bandwidth_bytes_per_s or intra)
        lat = eff["collective_latency_intra_s"] if inside else eff["collective_latency_inter_s"]
        vol = comm.all_reduce_volume(batch * dm.hidden * dm.act_bytes, par.tp)
        tp_s = 2 * dm.layers / par.pp * comm.transfer_time(vol, bw, eff["network"], 2 * (par.tp - 1), lat)
    p2p_s = 0.0
    if par.pp > 1:
        inside = par.tp * par.pp <= int(device.devices_per_node or 1)
        bw = (device.intra_node_bandwidth_bytes_per_s if inside else device.inter_node_bandwidth_bytes_per_s) or 1.0
        lat = eff["collective_latency_intra_s"] if inside else eff["collective_latency_inter_s"]
        p2p_s = (par.pp - 1) * comm.transfer_time(batch * dm.hidden * dm.act_bytes, bw, eff["network"], 1, lat)
    # A token passes every pipeline stage in turn: one stage's time, pp times, plus the sends between them.
    p = par.pp
    stage_s = max(mem_s, comp_s) + overhead + tp_s
    return DecodeStep(p * stage_s + p2p_s, p * mem_s, p * comp_s, p * overhead, p * tp_s + p2p_s, nbytes, flops)


def generate_time(dm: DecodeModel, profile: Profile, par: Layout, device: Any, eff: Efficiency,
                  batch: int, prompt: int, new_tokens: int) -> float:
    """Sum of decode steps for new_tokens tokens, the context growing from prompt to prompt + new_tokens − 1."""
    total = 0.0
    for i in range(new_tokens):
        total += decode_token(dm, profile, par, device, eff, batch, prompt + i).token_s
    return total
