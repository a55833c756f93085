"""Communication volumes and times of the parallel layouts (formulas, in bytes sent per device).

Ring collectives over n devices (Patarasuk & Yuan 2009; what NCCL's ring does):
  all-reduce       each device sends 2(n-1)/n of the buffer, in 2(n-1) steps
  reduce-scatter   (n-1)/n of the buffer, n-1 steps
  all-gather       (n-1)/n of the (gathered) buffer, n-1 steps
ZeRO (Rajbhandari et al. 2020, section 7): stages 1 and 2 move the same 2Ψ per
device as data-parallel all-reduce; stage 3 adds the parameter all-gathers of
forward and backward, 3Ψ, i.e. 1.5x. ZeRO++ (Wang et al. 2023): quantized
weight gathers (qwZ, int8: 1Ψ -> 0.5Ψ), hierarchical partitioning (hpZ, the
backward gather stays inside the node) and quantized gradients (qgZ, int4:
1Ψ -> 0.25Ψ) cut the cross-node volume from 3Ψ to 0.75Ψ (4x less).
Megatron tensor parallelism (Shoeybi et al. 2019): 2 all-reduces in the
forward and 2 in the backward of each transformer layer, of b·s·h elements.
Pipeline parallelism (GPipe / 1F1B): bubble (p-1)/(m+p-1) of the pipeline
time; point-to-point sends of b·s·h activations forward and gradients back.
"""
from __future__ import annotations

from dataclasses import dataclass


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


def tp_all_reduces_per_layer(training: bool, full_recompute: bool) -> int:
    """Megatron: 2 in forward (attention and MLP output), 2 in backward; a recomputed forward repeats its 2."""
    if not training:
        return 2
    return 6 if full_recompute else 4


@dataclass(frozen=True)
class DPVolume:
    """Per-device bytes sent per training step for gradients (and ZeRO's parameter gathers)."""

    intra_bytes: float  # inside a node
    inter_bytes: float  # across nodes
    steps: int  # ring steps (latency terms)
    formula: str


def dp_volume(grad_bytes: float, n: int, zero: int, micro_batches: int = 1, zeropp: bool = False,
              spans_nodes: bool = True, node_group: int = 1) -> DPVolume:
    """Gradient (+ZeRO) traffic per device per step over a data-parallel group of n.

    grad_bytes: this device's model-parallel shard of the gradients (Ψ in bytes).
    Stages 0/1 all-reduce once per step (gradient accumulation skips the sync);
    stage 2 reduce-scatters every micro-batch and all-gathers the updated
    weights once; stage 3 gathers weights in forward and backward and
    reduce-scatters gradients every micro-batch.
    """
    m = max(1, micro_batches)
    if n <= 1:
        return DPVolume(0.0, 0.0, 0, "no data parallelism")
    if zero <= 1:
        vol = all_reduce_volume(grad_bytes, n)
        steps = 2 * (n - 1)
        formula = "ring all-reduce 2(n-1)/n·Ψ per step"
    elif zero == 2:
        vol = m * reduce_scatter_volume(grad_bytes, n) + all_gather_volume(grad_bytes, n)
        steps = (m + 1) * (n - 1)
        formula = "ZeRO-2: reduce-scatter (n-1)/n·Ψ per micro-batch + all-gather (n-1)/n·Ψ per step (= 2Ψ at one micro-batch)"
    else:
        vol = m * 3 * reduce_scatter_volume(grad_bytes, n)
        steps = 3 * m * (n - 1)
        formula = "ZeRO-3: all-gather forward + all-gather backward + reduce-scatter, 3(n-1)/n·Ψ per micro-batch (1.5x data parallel)"
        if zeropp and spans_nodes:
            # qwZ halves the forward gather, qgZ quarters the gradient reduce-scatter, hpZ keeps the backward
            # gather inside the node: cross-node 0.75Ψ instead of 3Ψ per micro-batch.
            unit = reduce_scatter_volume(grad_bytes, n)
            inter = m * (0.5 + 0.25) * unit
            intra = m * all_gather_volume(grad_bytes, max(node_group, 1))
            return DPVolume(intra, inter, steps,
                            "ZeRO++: cross-node 0.5Ψ (int8 weight gather) + 0.25Ψ (int4 gradients) = 0.75Ψ per micro-batch; "
                            "backward weight gather inside the node (hierarchical partitioning)")
        if zeropp:
            unit = reduce_scatter_volume(grad_bytes, n)
            return DPVolume(m * (0.5 + 1.0 + 0.25) * unit, 0.0, steps,
                            "ZeRO++ inside one node: int8 weight gather 0.5Ψ + backward gather 1Ψ + int4 gradients 0.25Ψ")
    if spans_nodes:
        return DPVolume(0.0, vol, steps, formula)
    return DPVolume(vol, 0.0, steps, formula)


def transfer_time(nbytes: float, bandwidth: float, efficiency: float, steps: int = 0, latency_s: float = 0.0) -> float:
    """Bandwidth term plus latency term of a collective: bytes/(bw·eff) + steps·latency."""
    if nbytes <= 0 and steps <= 0:
        return 0.0
    return nbytes / (bandwidth * efficiency) + steps * latency_s


def exposed(total_s: float, overlap: float, overlappable_s: float) -> float:
    """Communication left on the critical path: the hidden part is at most overlap·total and at most the compute beside it."""
    hidden = min(overlap * total_s, max(overlappable_s, 0.0))
    return max(total_s - hidden, 0.0)
