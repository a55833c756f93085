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

import math
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
    parallel_block: bool = False  # attention and MLP side by side: one TP all-reduce per layer, not two

    def flops(self, batch: int, first: int, count: int) -> float:
        """Forward FLOPs of ``count`` decode steps of ``batch`` sequences over contexts ``first`` … ``first + count −
        1`` (what ``generate_time`` times): per step and sequence the linear FLOPs of one token, plus the attention's
        per context position, in closed form."""
        contexts = count * first + count * (count - 1) // 2  # Σ c over the steps
        return batch * (count * self.linear_flops_per_token + self.attention_flops_per_context * contexts)



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
        parallel_block=bool(facts.get("parallel_block")),
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
    host_wait_s: float = 0.0  # eager on a GPU: what the token waits on the host (in overhead_s)


@dataclass(frozen=True)
class DecodeLine:
    """One decode step's time as a function of the context c: every term is constant or linear in c.

    step(c) = max(pp · (max(memory_0 + memory_1·c, compute_0 + compute_1·c) + fixed) + p2p, host)
    (per pipeline stage: memory and compute time, then the per-op overhead and tensor-parallel all-reduces; host:
    the eager host's dispatch of one token's forward, which the token waits on when it is longer).
    """

    memory_0: float
    memory_1: float
    compute_0: float
    compute_1: float
    fixed_s: float  # per stage: operator overhead + tensor-parallel all-reduces
    pp: int
    p2p_s: float
    bytes_0: float
    bytes_1: float
    flops_0: float
    flops_1: float
    overhead_s: float
    tp_s: float
    host_s: float = 0.0  # eager on a GPU: the host's time to dispatch one token's forward (host.py); 0: not modelled

    def step(self, context: float) -> DecodeStep:
        mem_s = self.memory_0 + self.memory_1 * context
        comp_s = self.compute_0 + self.compute_1 * context
        p = self.pp
        stage_s = max(mem_s, comp_s) + self.fixed_s
        device_s = p * stage_s + self.p2p_s
        wait = max(0.0, self.host_s - device_s)  # the token waits on the host's dispatch
        return DecodeStep(device_s + wait, p * mem_s, p * comp_s, p * self.overhead_s + wait,
                          p * self.tp_s + self.p2p_s, self.bytes_0 + self.bytes_1 * context,
                          self.flops_0 + self.flops_1 * context, wait)

    def total_s(self, first: int, count: int) -> float:
        """Sum of step(c).token_s for c = first … first + count − 1, in closed form (the device's time grows with
        the context, so the tokens that wait on the host are the first ones: found by bisection)."""
        if count <= 0 or self.host_s <= 0:
            return self._device_total(first, count)
        last = first + count - 1
        lo, hi = first, last + 1  # the first context whose device time reaches the host's (hi: none does)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._device_step(mid) >= self.host_s:
                hi = mid
            else:
                lo = mid + 1
        return (lo - first) * self.host_s + self._device_total(lo, last - lo + 1)

    def _device_step(self, context: float) -> float:
        stage_s = max(self.memory_0 + self.memory_1 * context, self.compute_0 + self.compute_1 * context) + self.fixed_s
        return self.pp * stage_s + self.p2p_s

    def _device_total(self, first: int, count: int) -> float:
        """Sum of the device's step times for c = first … first + count − 1, in closed form.

        max(a0 + a1·c, b0 + b1·c) switches side at most once (two lines cross at most once), so the sum is
        two arithmetic series: Σ_{c=lo}^{hi} (x0 + x1·c) = k·x0 + x1·k·(lo + hi)/2 with k = hi − lo + 1.
        """
        if count <= 0:
            return 0.0
        last = first + count - 1
        d0, d1 = self.memory_0 - self.compute_0, self.memory_1 - self.compute_1
        # memory dominates where d0 + d1·c >= 0; find the first context where the dominant side changes
        if d1 == 0.0:
            split = last + 1 if d0 >= 0.0 else first  # memory on [first, split), compute on [split, last]
            pieces = [(first, split - 1, True), (split, last, False)]
        else:
            root = -d0 / d1
            if d1 > 0.0:  # compute below the root, memory from it on
                split = min(max(math.ceil(root), first), last + 1)
                pieces = [(first, split - 1, False), (split, last, True)]
            else:  # memory below the root, compute after it
                split = min(max(math.floor(root) + 1, first), last + 1)
                pieces = [(first, split - 1, True), (split, last, False)]
        per_stage = 0.0
        for lo, hi, memory in pieces:
            if hi < lo:
                continue
            k = hi - lo + 1
            x0, x1 = (self.memory_0, self.memory_1) if memory else (self.compute_0, self.compute_1)
            per_stage += k * x0 + x1 * (k * (lo + hi) / 2.0)
        return self.pp * (per_stage + count * self.fixed_s) + count * self.p2p_s


def decode_line(dm: DecodeModel, profile: Profile, par: Layout, device: Any, eff: Efficiency,
                batch: int) -> DecodeLine:
    """The decode step of ``batch`` sequences on one model replica of tp × pp devices, as a function of context."""
    shard = par.tp * par.pp
    weights = dm.weight_bytes_dense + dm.expert_bytes * expert_fraction(dm.experts, dm.top_k, batch)
    bytes_0, bytes_1 = weights / shard, batch * dm.kv_bytes_per_token / shard
    flops_0 = batch * dm.linear_flops_per_token / shard
    flops_1 = batch * dm.attention_flops_per_context / shard
    mem_rate, matmul_rate = profile.rates["memory"], profile.rates["matmul"]
    overhead = profile.per_op_overhead_s * dm.forward_ops / par.pp  # one stage's operators
    tp_s = 0.0
    if par.tp > 1:
        intra = device.intra_node_bandwidth_bytes_per_s or device.inter_node_bandwidth_bytes_per_s or 1.0
        inside = par.tp <= int(device.devices_per_node or 1)
        bw = intra if inside else (device.inter_node_bandwidth_bytes_per_s or intra)
        lat = comm.link_latency(eff, inside)
        vol = comm.all_reduce_volume(batch * dm.hidden * dm.act_bytes, par.tp)
        per_layer = comm.tp_all_reduces_per_layer(False, False, dm.parallel_block)
        tp_s = per_layer * dm.layers / par.pp * comm.transfer_time(vol, bw, eff["network"], 2 * (par.tp - 1), lat)
    p2p_s = 0.0
    if par.pp > 1:
        inside = par.tp * par.pp <= int(device.devices_per_node or 1)
        bw = (device.intra_node_bandwidth_bytes_per_s if inside else device.inter_node_bandwidth_bytes_per_s) or 1.0
        lat = comm.link_latency(eff, inside)
        p2p_s = (par.pp - 1) * comm.transfer_time(batch * dm.hidden * dm.act_bytes, bw, eff["network"], 1, lat)
    # A token passes every pipeline stage in turn: one stage's time, pp times, plus the sends between them.
    # Eager on a GPU: each token's forward is dispatched op by op, as the traced forward was (host.py).
    fwd = profile.phases.get("forward")
    host_s = fwd.host_s if profile.host_modelled and fwd is not None else 0.0
    return DecodeLine(memory_0=bytes_0 / mem_rate, memory_1=bytes_1 / mem_rate,
                      compute_0=flops_0 / matmul_rate, compute_1=flops_1 / matmul_rate,
                      fixed_s=overhead + tp_s, pp=par.pp, p2p_s=p2p_s, bytes_0=bytes_0, bytes_1=bytes_1,
                      flops_0=flops_0, flops_1=flops_1, overhead_s=overhead, tp_s=tp_s, host_s=host_s)


def decode_token(dm: DecodeModel, profile: Profile, par: Layout, device: Any, eff: Efficiency,
                 batch: int, context: int) -> DecodeStep:
    """One decode step (one new token for each of ``batch`` sequences) on one model replica of tp × pp devices."""
    return decode_line(dm, profile, par, device, eff, batch).step(context)


def generate_time(dm: DecodeModel, profile: Profile, par: Layout, device: Any, eff: Efficiency,
                  batch: int, prompt: int, new_tokens: int) -> float:
    """Sum of decode steps for new_tokens tokens, the context growing from prompt to prompt + new_tokens − 1
    (closed form: constant work however many tokens)."""
    return decode_line(dm, profile, par, device, eff, batch).total_s(prompt, new_tokens)
