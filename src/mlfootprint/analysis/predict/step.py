"""Step time of a parallel layout from a roofline profile: compute, memory, overhead, communication, bubble.

One trace (the whole model at the global batch) gives a :class:`Profile`;
:func:`step_time` turns it into the time one device spends on one training (or
inference) step under a layout, in O(1): the planner evaluates thousands of
layouts from one trace this way.

Scaling from the trace to one device (stated in every report):
- forward/backward work splits evenly over dp × tp × pp devices (sequence
  parallelism keeps norms and dropouts split under tensor parallelism; the
  embedding and head are assumed balanced across pipeline stages);
- each micro-batch reads the device's weight shard at least once in forward
  and twice in backward (a floor on memory time at small micro-batches);
- per-op overhead is paid per operator per micro-batch: ops/pp × micro-batches;
- optimizer work splits over tp × pp, and over dp too with ZeRO ≥ 1;
- a GEMM rated by a size table (roofline.py, gemm.py) runs at its size on one device for one micro-batch:
  the traced call's FLOPs × micro-batch / traced batch / tp (:func:`gemm_scale`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...core.datafiles import SourcedConstants
from ...core.errors import UserError
from . import comm
from .efficiency import Efficiency
from .roofline import PhaseProfile, Profile
from ...workload import Layout

STEP_MODEL = SourcedConstants("analysis.predict", "step_model.toml", "step_model")
RANK_ORDER = "tp, dp, pp (tensor-parallel ranks adjacent, then data-parallel, then pipeline stages; Megatron-LM's default order)"



@dataclass
class ModelShape:
    """What communication formulas need from the model: transformer facts and per-step counts."""

    batch: int  # global batch (samples)
    tokens_per_sample: float | None  # sequence length (tokens per sample), None for non-sequence models
    layers: int | None
    hidden: int | None
    act_bytes: int  # bytes per activation element (compute dtype)
    grad_bytes: float  # gradient bytes of the whole model (Ψ in bytes; trainable parameters only)
    weight_bytes: float  # weight bytes in the compute dtype (what a forward reads)
    param_bytes: float  # stored weight bytes
    experts: int = 0
    top_k: int = 0
    training: bool = True
    trace_recompute: str = "none"  # what the trace itself recomputed
    traced_batch: int | None = None  # samples in the trace (default: batch); the step is batch / traced_batch traces

    @property
    def scale(self) -> float:
        return self.batch / (self.traced_batch or self.batch)


@dataclass
class StepTime:
    step_s: float
    breakdown: dict[str, float]  # compute_s, memory_s, overhead_s, communication_s, bubble_s
    phases: dict[str, float]  # forward_s, backward_s, recompute_s, optimizer_s (per device, incl. overhead)
    communication: dict[str, float] = field(default_factory=dict)  # totals before overlap, and exposed
    micro_batches: int = 1
    hardware_extra_flops: float = 0.0  # recomputation FLOPs added by the layout (global, per step)
    scale: float = 1.0  # steps per trace: the step covers scale × the traced batch
    bottleneck: str = ""
    volumes: dict[str, float] = field(default_factory=dict)  # bytes sent per device per step
    notes: list[str] = field(default_factory=list)


def _links(device: Any) -> tuple[float, float, int]:
    dpn = int(device.devices_per_node or 1)
    intra = device.intra_node_bandwidth_bytes_per_s
    inter = device.inter_node_bandwidth_bytes_per_s
    if intra is None and inter is None:
        raise UserError(f"{device.id} lists no intra-node or inter-node bandwidth, so multi-device communication "
                        "cannot be modeled; add them in a user hardware file (see: mlfootprint hardware show "
                        f"{device.id})")
    intra = intra or inter
    inter = inter or intra
    return float(intra), float(inter), dpn


def gemm_scale(shape: ModelShape, par: Layout) -> float:
    """A traced GEMM call's FLOPs → the same call on one device for one micro-batch: the batch dimension shrinks
    to the micro-batch and tensor parallelism splits N (column-parallel) or K (row-parallel) by tp."""
    return par.micro_batch / (shape.traced_batch or shape.batch) / par.tp


def step_time(profile: Profile, shape: ModelShape, par: Layout, device: Any, eff: Efficiency) -> StepTime:
    """Per-device time of one step under ``par`` (see the module docstring for the scaling)."""
    n = par.devices
    m = max(1, (shape.batch // par.dp) // par.micro_batch)  # micro-batches per replica
    share = shape.scale / n  # the trace's share one device does in one step
    k = gemm_scale(shape, par)
    fwd, bwd, opt = profile.phase("forward", k), profile.phase("backward", k), profile.phase("optimizer", k)
    rc, extra_flops = _recomputation(profile, shape, par, k)
    work = fwd.plus(bwd).plus(rc).scaled(share)  # per device per step, before the floor and overhead
    floor_extra = _weight_streaming_floor(profile, shape, par, m, work.time_s)
    overhead_fb = profile.per_op_overhead_s * (fwd.ops + bwd.ops + rc.ops) / par.pp * m
    # Optimizer step: split over tp × pp, and over dp with ZeRO ≥ 1 (each rank updates its shard).
    opt_dev = opt.scaled(1.0 / (par.tp * par.pp) / (par.dp if par.zero >= 1 else 1))
    overhead_opt = profile.per_op_overhead_s * opt.ops / par.pp
    c = _communication(shape, par, device, eff, m, fwd.time_s * share, bwd.time_s * share)

    pipe_work = work.time_s + floor_extra + overhead_fb + c.tp_x + c.pp_x + c.ep_x
    bubble = (par.pp - 1) * pipe_work / m if par.pp > 1 else 0.0
    step = pipe_work + bubble + opt_dev.time_s + overhead_opt + c.dp_x + c.off_s
    breakdown = {
        "compute_s": work.compute_s + opt_dev.compute_s,
        "memory_s": work.memory_s + floor_extra + opt_dev.memory_s,
        "overhead_s": overhead_fb + overhead_opt,
        "communication_s": c.tp_x + c.pp_x + c.ep_x + c.dp_x + c.off_s,
        "bubble_s": bubble,
    }
    comm_d = {
        "tp_s": c.tp_s, "pp_s": c.pp_s, "ep_s": c.ep_s, "dp_s": c.dp_s, "offload_s": c.off_s,
        "tp_exposed_s": c.tp_x, "pp_exposed_s": c.pp_x, "ep_exposed_s": c.ep_x, "dp_exposed_s": c.dp_x,
    }
    per_op = profile.per_op_overhead_s / par.pp * m
    phases = {
        "forward_s": fwd.time_s * share + per_op * fwd.ops,
        "backward_s": bwd.time_s * share + per_op * bwd.ops,
        "recompute_s": rc.time_s * share + per_op * rc.ops,
        "optimizer_s": opt_dev.time_s + overhead_opt,
    }
    notes = list(c.notes)
    if floor_extra:
        notes.append("weight-streaming floor: at this micro-batch, reading the weight shard takes longer than the "
                     "operators' own traffic")
    return StepTime(step, breakdown, phases, comm_d, m, extra_flops, shape.scale, _bottleneck(breakdown, comm_d),
                    c.volumes, notes)


def _recomputation(profile: Profile, shape: ModelShape, par: Layout, k: float) -> tuple[PhaseProfile, float]:
    """The recomputed work of the layout, and the hardware FLOPs it adds over the trace's own (global, per step).

    The trace's own recomputation is kept when the layout asks for the same; otherwise full recomputation is
    modeled as the blocks' forward again, selective as the unfused attention products again."""
    if not shape.training:
        return PhaseProfile(), 0.0
    traced = profile.phase("recompute", k)
    if par.recompute == shape.trace_recompute:
        return traced, 0.0
    if par.recompute == "full":
        if shape.trace_recompute == "full":
            return traced, 0.0
        block = profile.block(k)
        return block, float(block.model_flops) * shape.scale
    if par.recompute == "selective":
        return profile.attention_forward, float(profile.attention_forward.model_flops) * shape.scale
    return PhaseProfile(), -float(traced.model_flops) * shape.scale


def _weight_streaming_floor(profile: Profile, shape: ModelShape, par: Layout, m: int, work_s: float) -> float:
    """Extra memory time when reading the weight shard (per micro-batch: once in forward, twice in backward)
    takes longer than the operators' own traffic."""
    reads = STEP_MODEL.value("weights", "reads_per_training_micro_batch" if shape.training else "reads_per_inference_pass")
    floor_s = m * reads * shape.weight_bytes / (par.tp * par.pp) / profile.rates["memory"]
    return max(0.0, floor_s - work_s)


@dataclass
class _Communication:
    tp_s: float = 0.0  # totals before overlap
    pp_s: float = 0.0
    ep_s: float = 0.0
    dp_s: float = 0.0
    off_s: float = 0.0
    tp_x: float = 0.0  # exposed
    pp_x: float = 0.0
    ep_x: float = 0.0
    dp_x: float = 0.0
    volumes: dict[str, float] = field(default_factory=dict)  # bytes sent per device per step
    notes: list[str] = field(default_factory=list)


def _communication(shape: ModelShape, par: Layout, device: Any, eff: Efficiency, m: int, fwd_s: float,
                   bwd_s: float) -> _Communication:
    """Tensor-, pipeline- and expert-parallel traffic, the data-parallel gradient sync and offload transfers,
    and how much of each is exposed (not hidden under the compute it overlaps with)."""
    c = _Communication()
    n = par.devices
    links = _links(device) if n > 1 else (1.0, 1.0, 1)
    act_elems = par.micro_batch * shape.tokens_per_sample * shape.hidden \
        if shape.tokens_per_sample and shape.hidden else None
    if par.tp > 1:
        _tensor_parallel(c, shape, par, eff, links, m, act_elems)
    if par.pp > 1:
        _pipeline(c, shape, par, eff, links, m, act_elems)
    if par.ep > 1 and shape.experts and act_elems is not None and shape.layers:
        _expert_parallel(c, shape, par, eff, links, m, act_elems)
    if shape.training and par.dp > 1:
        _data_parallel(c, shape, par, eff, links, m)
    if shape.training and par.offload != "none":
        # Gradients go down to the host and updated weights come back every step.
        c.off_s = (shape.grad_bytes + shape.weight_bytes) / (par.tp * par.pp) / (par.dp if par.zero >= 1 else 1) \
            / eff["host_link"]
        c.notes.append("offload: gradients to the host and updated weights back over the host link each step; "
                       "the host's optimizer step is assumed to keep up")
    c.tp_x = comm.exposed(c.tp_s, eff["overlap_tp"], fwd_s + bwd_s)
    c.pp_x = comm.exposed(c.pp_s, eff["overlap_pp"], fwd_s + bwd_s)
    c.ep_x = c.ep_s
    if par.zero >= 3:
        hideable = fwd_s + bwd_s  # parameter gathers are prefetched under forward and backward
    elif par.zero == 2:
        hideable = bwd_s
    else:
        hideable = bwd_s / m  # the all-reduce runs in the last micro-batch's backward
    c.dp_x = comm.exposed(c.dp_s, eff["overlap_dp"], hideable)
    return c


def _link(links: tuple[float, float, int], eff: Efficiency, inside: bool) -> tuple[float, float]:
    """(bandwidth, latency) of a group inside one node or across nodes."""
    intra_bw, inter_bw, _ = links
    return (intra_bw, eff["collective_latency_intra_s"]) if inside else (inter_bw, eff["collective_latency_inter_s"])


def _tensor_parallel(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency,
                     links: tuple[float, float, int], m: int, act_elems: float | None) -> None:
    if act_elems is None or not shape.layers:
        raise UserError("tensor parallelism is modeled for transformer models (layers, hidden size and sequence "
                        "length known); use --tp 1 for this model")
    dpn = links[2]
    inside = par.tp <= dpn
    bw, lat = _link(links, eff, inside)
    count = comm.tp_all_reduces_per_layer(shape.training, par.recompute == "full") * (shape.layers / par.pp) * m
    vol = comm.all_reduce_volume(act_elems * shape.act_bytes, par.tp)
    c.volumes["tp_bytes"] = vol * count
    c.tp_s = count * comm.transfer_time(vol, bw, eff["network"], 2 * (par.tp - 1), lat)
    if not inside:
        c.notes.append(f"the tensor-parallel group of {par.tp} spans nodes ({dpn} devices per node): inter-node bandwidth")


def _pipeline(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency, links: tuple[float, float, int],
              m: int, act_elems: float | None) -> None:
    if act_elems is None:
        raise UserError("pipeline parallelism is modeled for sequence models (sequence length and hidden size "
                        "known); use --pp 1 for this model")
    bw, lat = _link(links, eff, par.devices <= links[2])
    transfers = (2 if shape.training else 1) * m
    vol = act_elems * shape.act_bytes
    c.volumes["pp_bytes"] = vol * transfers
    c.pp_s = transfers * comm.transfer_time(vol, bw, eff["network"], 1, lat)


def _expert_parallel(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency,
                     links: tuple[float, float, int], m: int, act_elems: float) -> None:
    bw, lat = _link(links, eff, par.tp * par.ep <= links[2])
    per_layer = STEP_MODEL.value("expert_parallel", "all_to_all_per_layer_training" if shape.training else
                                 "all_to_all_per_layer_inference")
    count = per_layer * (shape.layers / par.pp) * m
    vol = comm.all_to_all_volume(act_elems * max(shape.top_k, 1) * shape.act_bytes / par.tp, par.ep)
    c.volumes["ep_bytes"] = vol * count
    c.ep_s = count * comm.transfer_time(vol, bw, eff["network"], par.ep - 1, lat)


def _data_parallel(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency,
                   links: tuple[float, float, int], m: int) -> None:
    intra_bw, inter_bw, dpn = links
    spans = par.tp * par.dp > dpn
    v = comm.dp_volume(shape.grad_bytes / (par.tp * par.pp), par.dp, par.zero, m, par.zeropp, spans,
                       min(dpn, par.tp * par.dp) // par.tp or 1)
    c.volumes["dp_bytes"] = v.intra_bytes + v.inter_bytes
    lat = eff["collective_latency_inter_s"] if spans else eff["collective_latency_intra_s"]
    net = eff["network"]
    c.dp_s = v.inter_bytes / (inter_bw * net) + v.intra_bytes / (intra_bw * net) + v.steps * lat
    c.notes.append(v.formula)


def _bottleneck(breakdown: dict[str, float], comm_d: dict[str, float]) -> str:
    key = max(breakdown, key=lambda k: breakdown[k])
    if key == "communication_s":
        parts = {"tensor-parallel all-reduces": comm_d["tp_exposed_s"], "pipeline sends": comm_d["pp_exposed_s"],
                 "expert all-to-all": comm_d["ep_exposed_s"], "data-parallel gradient sync": comm_d["dp_exposed_s"],
                 "host offload transfers": comm_d["offload_s"]}
        return "communication (" + max(parts, key=lambda k: parts[k]) + ")"
    return {"compute_s": "compute", "memory_s": "memory bandwidth", "overhead_s": "per-op overhead",
            "bubble_s": "pipeline bubble"}[key]
