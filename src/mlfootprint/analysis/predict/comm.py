"""Communication volumes and times of the parallel layouts (formulas, in bytes sent per device).

Ring collectives over n devices (Patarasuk & Yuan 2009; what NCCL's ring does):
  all-reduce       each device sends 2(n-1)/n of the buffer, in 2(n-1) steps
  reduce-scatter   (n-1)/n of the buffer, n-1 steps
  all-gather       (n-1)/n of the (gathered) buffer, n-1 steps
ZeRO (Rajbhandari et al. 2020, section 7): stages 1 and 2 reduce-scatter the
gradients and all-gather the updated weights (2Ψ per device, as data-parallel
all-reduce); stage 3 adds the weight all-gathers of forward and backward (3Ψ).
Each collective moves its own dtype: weights in the dtype they are gathered in
(16-bit under mixed precision), gradients in the dtype they are reduced in
(step_model.toml [communication] states the rule). FSDP/HSDP (Zhao et al. 2023,
PyTorch FSDP, Sec. 3.2.1): sharding inside groups of s, replication across
n/s groups, which all-reduce their gradient shards. ZeRO++ (Wang et al. 2023):
int8 forward weight gathers (qwZ), the backward gather inside the node from a
secondary partition (hpZ) and int4 gradients (qgZ): cross-node 3Ψ -> 0.75Ψ at
16-bit. A group with k ranks in each node crosses the nodes on k NICs at once
(NCCL builds one ring per NIC; Collective.node_ranks), up to the intra-node
bandwidth. Overlap (exposed_under_compute): per-layer prefetch and bucketed
reduction under the compute of the same window; the first gather and the last
reduce are exposed.
Megatron tensor parallelism (Shoeybi et al. 2019): 2 all-reduces in the
forward and 2 in the backward of each transformer layer, of b·s·h elements.
Pipeline parallelism (GPipe / 1F1B): bubble (p-1)/(m+p-1) of the pipeline
time; point-to-point sends of b·s·h activations forward and gradients back.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

from ...core.datafiles import SourcedConstants

COLLECTIVES = SourcedConstants("analysis.predict", "collectives.toml", "collectives")


@dataclass(frozen=True)
class RingLatency:
    """NCCL's latency model of a ring on one kind of link (``data/collectives.toml``): per protocol, a base latency,
    a latency per ring step, and the share of the bus bandwidth it reaches; NCCL picks the fastest protocol."""

    link: str  # "nvlink" (inside a node) | "net" (across nodes)
    protocols: tuple[tuple[str, float, float, float], ...]  # (name, base_s, hop_s, bandwidth_share)

    def time(self, nbytes: float, rate: float, steps: int) -> float:
        """The least, over the protocols, of base + steps·hop + nbytes/(rate·share); ``rate`` is bandwidth × factor."""
        return min(base + steps * hop + nbytes / (rate * share) for _, base, hop, share in self.protocols)

    @property
    def hop_s(self) -> float:
        """The bulk (Simple) protocol's latency per step: what one message of an all-to-all waits."""
        return next(hop for name, _, hop, _ in self.protocols if name == "simple")


@lru_cache(maxsize=2)
def ring_latency(inside_node: bool) -> RingLatency:
    """NCCL's ring latency model for a group inside one node (NVLink) or across nodes (the network); read from the
    data files once per process (the planner times thousands of layouts)."""
    link = "nvlink" if inside_node else "net"
    names = COLLECTIVES.value("ring", "protocols")
    return RingLatency(link, tuple((str(p), float(COLLECTIVES.value("ring", f"{p}_base_s")),
                                    float(COLLECTIVES.value("ring", f"{p}_{link}_hop_s")),
                                    float(COLLECTIVES.value("ring", f"{p}_bandwidth_share"))) for p in names))


Latency = Union[float, RingLatency]  # a flat latency per ring step (given with --efficiency), or NCCL's model


def link_latency(eff: Any, inside_node: bool) -> Latency:
    """The latency model of a link: the flat per-step factor where the user set it (--efficiency
    collective_latency_intra_s / _inter_s), else NCCL's ring model."""
    name = "collective_latency_intra_s" if inside_node else "collective_latency_inter_s"
    factors = getattr(eff, "factors", None)
    if factors is None:  # a plain mapping of factor values: every value is as given
        return float(eff[name])
    factor = factors.get(name)
    if factor is not None and factor.provenance == "given":
        return float(factor.value)
    return ring_latency(inside_node)


def describe_latency() -> str:
    """The assumption line of NCCL's ring latency model."""
    intra, inter = ring_latency(True), ring_latency(False)
    parts = ", ".join(f"{name} {base * 1e6:.3g} µs + {hop * 1e6:.2g} (NVLink) or {net * 1e6:.2g} µs (network) per step at "
                      f"{share:g} of the bus bandwidth"
                      for (name, base, hop, share), (_, _, net, _) in zip(intra.protocols, inter.protocols))
    return ("collective latency: NCCL's own ring model, the fastest protocol for each collective (" + parts + "; "
            "NCCL src/graph/tuning.cc defaults, data/collectives.toml); an all-to-all waits the Simple protocol's "
            "latency per peer; --efficiency collective_latency_intra_s=X (or _inter_s) sets a flat latency per step "
            "instead")


def per_step_latency(latency: Latency) -> float:
    return latency.hop_s if isinstance(latency, RingLatency) else float(latency)


def all_reduce_volume(nbytes: float, n: int) -> float:
    """Bytes each device sends in a ring all-reduce of an nbytes buffer over n devices: 2(n-1)/n·nbytes."""
    return 0.0 if n <= 1 else 2.0 * (n - 1) / n * nbytes


def reduce_scatter_volume(nbytes: float, n: int) -> float:
    return 0.0 if n <= 1 else (n - 1) / n * nbytes


def all_gather_volume(nbytes: float, n: int) -> float:
    return 0.0 if n <= 1 else (n - 1) / n * nbytes


def all_to_all_volume(nbytes: float, n: int) -> float:
    """Each device keeps 1/n of its buffer and sends the rest."""
    return 0.0 if n <= 1 else (n - 1) / n * nbytes


def all_to_all_time(nbytes: float, n: int, node_ranks: int, intra: float, inter: float, efficiency: float,
                    latency_s: Latency = 0.0, rounds: float = 1.0) -> float:
    """Time of ``rounds`` all-to-alls of ``nbytes`` per rank over n ranks, ``node_ranks`` of them in each node.

    A rank keeps 1/n of its buffer and sends 1/n to each peer: to the node_ranks − 1 peers in its node over the
    intra-node link, to the n − node_ranks others over its own inter-node link, both at once (NCCL's all-to-all
    posts every peer's send together; each GPU of a DGX-class node has its own NIC). The slower of the two sets
    the time; the latency is one per peer."""
    if n <= 1 or rounds <= 0:
        return 0.0
    k = max(1, min(node_ranks, n))
    inside = (k - 1) / n * nbytes / (intra * efficiency)
    across = (n - k) / n * nbytes / (inter * efficiency) if n > k else 0.0
    return rounds * (max(inside, across) + (n - 1) * per_step_latency(latency_s))


# The column-parallel linears of a transformer layer, each with one input-gradient all-reduce in the backward
# (Megatron-LM: the fused query-key-value projection and the first MLP linear; a parallel attention+MLP block's two
# branches each have one).
TP_COLUMN_LINEARS_PER_LAYER = 2


def tp_all_reduces_per_layer(training: bool, full_recompute: bool, parallel_block: bool = False) -> int:
    """Megatron: 2 in forward (attention and MLP output), 2 in backward; a recomputed forward repeats its 2.

    A parallel attention+MLP block sums the two row-parallel outputs and all-reduces the sum once in the forward;
    its backward still all-reduces the input gradient of each branch's column-parallel layer (GPT-NeoX,
    megatron/model/transformer.py ParallelTransformerLayer with gpt_j_residual: "we can do a single allreduce
    after we add mlp / attn outputs"; each branch enters through its own copy_to_model_parallel_region).
    """
    forward = 1 if parallel_block else 2
    if not training:
        return forward
    return forward + TP_COLUMN_LINEARS_PER_LAYER + (forward if full_recompute else 0)


# ZeRO++ (Wang et al. 2023, arXiv:2306.10209, Sec. 4): qwZ gathers weights block-quantized to int8 (1 byte per
# element; the per-block scales are a fraction of a percent and not counted), qgZ reduces gradients in int4
# (half a byte per element). These are the dtypes' widths, not fitted constants.
QWZ_ELEM_BYTES = 1.0
QGZ_ELEM_BYTES = 0.5


@dataclass(frozen=True)
class Collective:
    """One data-parallel collective of a training step, per device."""

    name: str  # weight_gather_forward | weight_gather_backward | grad_reduce_scatter | grad_all_reduce |
    #            grad_all_reduce_groups | weight_gather_step
    nbytes: float  # bytes this device sends per step (all micro-batches)
    steps: int  # ring steps per step (latency terms)
    inside_node: bool  # the group fits in one node (intra-node link)
    per_micro_batch: bool  # repeated every micro-batch (else once per step)
    formula: str
    node_ranks: int = 1  # ranks of its group in one node: a group across nodes drives that many NICs at once


@dataclass(frozen=True)
class DPVolume:
    """Per-device bytes sent per training step for gradients (and ZeRO's parameter gathers)."""

    intra_bytes: float  # inside a node
    inter_bytes: float  # across nodes
    steps: int  # ring steps (latency terms)
    formula: str
    collectives: tuple[Collective, ...] = ()


def dp_volume(weight_bytes: float, grad_bytes: float, n: int, zero: int, micro_batches: int = 1, *,
              weight_elem_bytes: float = 2.0, grad_elem_bytes: float = 2.0, zeropp: bool = False,
              dp_per_node: int = 1, shard_group: int | None = None) -> DPVolume:
    """Gradient (+ZeRO) traffic per device per step over a data-parallel group of n.

    weight_bytes: this device's model-parallel shard of the weights in the dtype they are gathered in (Ψ·w);
    grad_bytes: its trainable gradients in the dtype they are reduced in (Ψ·g); the *_elem_bytes are those
    dtypes' widths (ZeRO++ re-quantizes from them). dp_per_node: data-parallel ranks in one node (a group of
    that many or fewer uses the intra-node link). shard_group: FSDP/HSDP's sharding group s (default n): ZeRO
    shards inside groups of s and replicates across n/s groups, which all-reduce the shard's gradients.

    Stage 0 all-reduces the gradients once per step (accumulation skips the sync). Stage 1 reduce-scatters them
    once per step and all-gathers the updated weights; stage 2 reduce-scatters every micro-batch and
    all-gathers once (ZeRO paper, Sec. 7.2.1: 2Ψ per step); stage 3 gathers the weights in forward and again in
    backward and reduce-scatters gradients, every micro-batch (3Ψ per micro-batch, Sec. 7.2.2).
    """
    m = max(1, micro_batches)
    if n <= 1:
        return DPVolume(0.0, 0.0, 0, "no data parallelism")
    s = n if (zero == 0 or not shard_group) else shard_group
    if n % s:
        raise ValueError(f"shard group {s} does not divide the data-parallel degree {n}")
    r = n // s  # replica groups
    inside_n, inside_s = n <= dp_per_node, s <= dp_per_node
    colls: list[Collective] = []

    def add(name: str, nbytes: float, steps: int, inside: bool, per_mb: bool, formula: str,
            node_ranks: int = 1) -> None:
        if nbytes > 0:
            times = m if per_mb else 1
            colls.append(Collective(name, times * nbytes, times * steps, inside, per_mb, formula, max(1, node_ranks)))

    # ranks of one group in a node: the whole group (n or s ranks, adjacent after tp) up to the node's dp ranks;
    # the replica groups' members are s apart, so a node holds dp_per_node // s of them
    in_n, in_s, in_r = min(n, dp_per_node), min(s, dp_per_node), max(1, dp_per_node // s)

    if zero == 0:
        add("grad_all_reduce", all_reduce_volume(grad_bytes, n), 2 * (n - 1), inside_n, False,
            "ring all-reduce 2(n-1)/n·Ψg once per step", in_n)
    elif zero in (1, 2):
        add("grad_reduce_scatter", reduce_scatter_volume(grad_bytes, s), s - 1, inside_s, zero == 2,
            f"reduce-scatter (s-1)/s·Ψg {'every micro-batch' if zero == 2 else 'once per step'}", in_s)
        # only the trainable weights are updated, so only they are gathered back (in the weights' dtype)
        add("weight_gather_step", all_gather_volume(grad_bytes * weight_elem_bytes / grad_elem_bytes, s), s - 1,
            inside_s, False, "all-gather of the updated weights (s-1)/s·Ψw once per step", in_s)
    elif zeropp:
        # qwZ: forward gather in int8; hpZ: a secondary copy of the 16-bit weights sharded inside the node, so
        # the backward gather never leaves it; qgZ: gradients reduced in int4.
        node = max(1, in_s)
        add("weight_gather_forward", all_gather_volume(weight_bytes * QWZ_ELEM_BYTES / weight_elem_bytes, s),
            s - 1, inside_s, True, "qwZ: int8 weight all-gather (s-1)/s·Ψ·1 B per micro-batch", in_s)
        add("weight_gather_backward", all_gather_volume(weight_bytes, node), node - 1, True, True,
            f"hpZ: backward weight all-gather inside the node ({node} ranks) from the secondary partition")
        add("grad_reduce_scatter", reduce_scatter_volume(grad_bytes * QGZ_ELEM_BYTES / grad_elem_bytes, s),
            s - 1, inside_s, True, "qgZ: int4 gradient reduce-scatter (s-1)/s·Ψ·0.5 B per micro-batch", in_s)
    else:
        add("weight_gather_forward", all_gather_volume(weight_bytes, s), s - 1, inside_s, True,
            "forward weight all-gather (s-1)/s·Ψw per micro-batch", in_s)
        add("weight_gather_backward", all_gather_volume(weight_bytes, s), s - 1, inside_s, True,
            "backward weight all-gather (s-1)/s·Ψw per micro-batch", in_s)
        add("grad_reduce_scatter", reduce_scatter_volume(grad_bytes, s), s - 1, inside_s, True,
            "gradient reduce-scatter (s-1)/s·Ψg per micro-batch", in_s)
    if zero >= 1 and r > 1:
        add("grad_all_reduce_groups", all_reduce_volume(grad_bytes / s, r), 2 * (r - 1), inside_n, False,
            f"all-reduce of the gradient shard across the {r} replica groups 2(r-1)/r·Ψg/s once per step", in_r)
    intra = sum(c.nbytes for c in colls if c.inside_node)
    inter = sum(c.nbytes for c in colls if not c.inside_node)
    stage = {0: "data parallel", 1: "ZeRO-1", 2: "ZeRO-2", 3: "ZeRO-3"}[zero] + ("++" if zeropp else "")
    group = f" sharded in groups of {s}, replicated over {r}" if r > 1 else ""
    formula = f"{stage}{group}: " + "; ".join(c.formula for c in colls)
    return DPVolume(intra, inter, sum(c.steps for c in colls), formula, tuple(colls))


def exposed_under_compute(gather_s: float, reduce_s: float, compute_s: float, pieces: int) -> tuple[float, float]:
    """Exposed (gather, reduce) time of per-piece collectives pipelined with compute, pieces of equal size.

    The ZeRO-3/FSDP pattern in one window (a micro-batch's forward or backward) of ``pieces`` layers
    (or gradient buckets): the gather of piece i is prefetched while piece i+1 computes, and the reduce of
    piece i runs while piece i-1 computes. The first gather and the last reduce have no compute beside them
    and are exposed whole; every other compute slot hides what of its traffic fits under it. With one piece
    nothing is hidden. Returns the exposed seconds of the gathers and of the reduces.
    """
    if pieces <= 1 or compute_s <= 0:
        return gather_s, reduce_s
    g, r, c = gather_s / pieces, reduce_s / pieces, compute_s / pieces
    # Slot of the first piece computed carries the next gather only; the last slot the previous reduce only;
    # the pieces - 2 slots between carry one of each.
    xg = g + max(0.0, g - c) if g > 0 else 0.0
    xr = r + max(0.0, r - c) if r > 0 else 0.0
    both = max(0.0, g + r - c) * (pieces - 2)
    if g + r > 0:
        xg += both * g / (g + r)
        xr += both * r / (g + r)
    return xg, xr


def transfer_time(nbytes: float, bandwidth: float, efficiency: float, steps: int = 0, latency_s: Latency = 0.0) -> float:
    """Bandwidth term plus latency term of a collective: bytes/(bw·eff) + steps·latency with a flat latency per
    step; with NCCL's ring model (:class:`RingLatency`), its fastest protocol's time."""
    if nbytes <= 0 and steps <= 0:
        return 0.0
    if isinstance(latency_s, RingLatency):
        return latency_s.time(nbytes, bandwidth * efficiency, steps)
    return nbytes / (bandwidth * efficiency) + steps * latency_s
