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
- optimizer work splits over tp × pp, and over dp too with ZeRO ≥ 1.
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


def step_time(profile: Profile, shape: ModelShape, par: Layout, device: Any, eff: Efficiency) -> StepTime:
    """Per-device time of one step under ``par`` (see the module docstring for the scaling)."""
    dp, tp, pp = par.dp, par.tp, par.pp
    n = dp * tp * pp
    per_replica = shape.batch // dp
    b = par.micro_batch
    m = max(1, per_replica // b)
    notes: list[str] = []
    share = shape.scale / n  # the trace's share one device does in one step
    bw_mem = profile.rates["memory"]

    fwd = profile.phase("forward")
    bwd = profile.phase("backward")
    opt = profile.phase("optimizer")
    # Recomputation: keep the trace's own, or model the layout's from the forward profile.
    if par.recompute == shape.trace_recompute:
        rc = profile.phase("recompute")
        extra_flops = 0.0
    elif par.recompute == "full":
        rc = profile.phase("recompute") if shape.trace_recompute == "full" else profile.block_forward
        extra_flops = float(rc.model_flops) * shape.scale if shape.trace_recompute != "full" else 0.0
    elif par.recompute == "selective":
        rc = profile.attention_forward
        extra_flops = float(rc.model_flops) * shape.scale
    else:
        rc = PhaseProfile()
        extra_flops = -float(profile.phase("recompute").model_flops) * shape.scale
    if not shape.training:
        rc = PhaseProfile()
        extra_flops = 0.0

    work = fwd.plus(bwd).plus(rc).scaled(share)  # per device per step, before the floor and overhead
    # Weight-streaming floor: each micro-batch reads the weight shard (1x forward, 2x backward).
    reads = STEP_MODEL.value("weights", "reads_per_training_micro_batch" if shape.training else "reads_per_inference_pass")
    floor_s = m * reads * shape.weight_bytes / (tp * pp) / bw_mem
    floor_extra = max(0.0, floor_s - work.time_s)
    ops_fb = fwd.ops + bwd.ops + rc.ops
    overhead_fb = profile.per_op_overhead_s * ops_fb / pp * m

    # Optimizer step: split over tp × pp, and over dp with ZeRO ≥ 1 (each rank updates its shard).
    opt_share = 1.0 / (tp * pp) / (dp if par.zero >= 1 else 1)
    opt_dev = opt.scaled(opt_share)
    overhead_opt = profile.per_op_overhead_s * opt.ops / pp

    # ---- communication
    intra_bw, inter_bw, dpn = _links(device) if n > 1 else (1.0, 1.0, 1)
    net = eff["network"]
    lat_in = eff["collective_latency_intra_s"]
    lat_out = eff["collective_latency_inter_s"]
    tp_s = pp_s = ep_s = dp_s = off_s = 0.0
    volumes: dict[str, float] = {}
    act_elems = None
    if shape.tokens_per_sample and shape.hidden:
        act_elems = b * shape.tokens_per_sample * shape.hidden
    if tp > 1:
        if act_elems is None or not shape.layers:
            raise UserError("tensor parallelism is modeled for transformer models (layers, hidden size and sequence "
                            "length known); use --tp 1 for this model")
        inside = tp <= dpn
        bw, lat = (intra_bw, lat_in) if inside else (inter_bw, lat_out)
        count = comm.tp_all_reduces_per_layer(shape.training, par.recompute == "full") * (shape.layers / pp) * m
        vol = comm.all_reduce_volume(act_elems * shape.act_bytes, tp)
        volumes["tp_bytes"] = vol * count
        tp_s = count * comm.transfer_time(vol, bw, net, 2 * (tp - 1), lat)
        if not inside:
            notes.append(f"the tensor-parallel group of {tp} spans nodes ({dpn} devices per node): inter-node bandwidth")
    if pp > 1:
        if act_elems is None:
            raise UserError("pipeline parallelism is modeled for sequence models (sequence length and hidden size "
                            "known); use --pp 1 for this model")
        inside = n <= dpn
        bw, lat = (intra_bw, lat_in) if inside else (inter_bw, lat_out)
        transfers = (2 if shape.training else 1) * m
        vol = act_elems * shape.act_bytes
        volumes["pp_bytes"] = vol * transfers
        pp_s = transfers * comm.transfer_time(vol, bw, net, 1, lat)
    if par.ep > 1 and shape.experts and act_elems is not None and shape.layers:
        inside = tp * par.ep <= dpn
        bw, lat = (intra_bw, lat_in) if inside else (inter_bw, lat_out)
        count = STEP_MODEL.value("expert_parallel", "all_to_all_per_layer_training" if shape.training else
                                 "all_to_all_per_layer_inference") * (shape.layers / pp) * m
        vol = comm.all_to_all_volume(act_elems * max(shape.top_k, 1) * shape.act_bytes / tp, par.ep)
        volumes["ep_bytes"] = vol * count
        ep_s = count * comm.transfer_time(vol, bw, net, par.ep - 1, lat)
    fwd_dev = fwd.time_s * share
    bwd_dev = bwd.time_s * share
    if shape.training and dp > 1:
        spans = tp * dp > dpn
        v = comm.dp_volume(shape.grad_bytes / (tp * pp), dp, par.zero, m, par.zeropp, spans, min(dpn, tp * dp) // tp or 1)
        volumes["dp_bytes"] = v.intra_bytes + v.inter_bytes
        lat = lat_out if spans else lat_in
        dp_s = (v.inter_bytes / (inter_bw * net) + v.intra_bytes / (intra_bw * net) + v.steps * lat)
        notes.append(v.formula)
    if shape.training and par.offload != "none":
        # Gradients go down to the host and updated weights come back every step.
        off_s = (shape.grad_bytes + shape.weight_bytes) / (tp * pp) / (dp if par.zero >= 1 else 1) / eff["host_link"]
        notes.append("offload: gradients to the host and updated weights back over the host link each step; "
                     "the host's optimizer step is assumed to keep up")

    tp_x = comm.exposed(tp_s, eff["overlap_tp"], fwd_dev + bwd_dev)
    pp_x = comm.exposed(pp_s, eff["overlap_pp"], fwd_dev + bwd_dev)
    ep_x = ep_s
    if par.zero >= 3:
        hideable = fwd_dev + bwd_dev  # parameter gathers are prefetched under forward and backward
    elif par.zero == 2:
        hideable = bwd_dev
    else:
        hideable = bwd_dev / m  # the all-reduce runs in the last micro-batch's backward
    dp_x = comm.exposed(dp_s, eff["overlap_dp"], hideable)

    pipe_work = work.time_s + floor_extra + overhead_fb + tp_x + pp_x + ep_x
    bubble = (pp - 1) * pipe_work / m if pp > 1 else 0.0
    step = pipe_work + bubble + opt_dev.time_s + overhead_opt + dp_x + off_s

    compute = work.compute_s + opt_dev.compute_s
    memory = work.memory_s + floor_extra + opt_dev.memory_s
    breakdown = {
        "compute_s": compute,
        "memory_s": memory,
        "overhead_s": overhead_fb + overhead_opt,
        "communication_s": tp_x + pp_x + ep_x + dp_x + off_s,
        "bubble_s": bubble,
    }
    comm_d = {
        "tp_s": tp_s, "pp_s": pp_s, "ep_s": ep_s, "dp_s": dp_s, "offload_s": off_s,
        "tp_exposed_s": tp_x, "pp_exposed_s": pp_x, "ep_exposed_s": ep_x, "dp_exposed_s": dp_x,
    }
    per_op = profile.per_op_overhead_s / pp * m
    phases = {
        "forward_s": fwd_dev + per_op * fwd.ops,
        "backward_s": bwd_dev + per_op * bwd.ops,
        "recompute_s": rc.time_s * share + per_op * rc.ops,
        "optimizer_s": opt_dev.time_s + overhead_opt,
    }
    if floor_extra:
        notes.append("weight-streaming floor: at this micro-batch, reading the weight shard takes longer than the "
                     "operators' own traffic")
    return StepTime(step, breakdown, phases, comm_d, m, extra_flops, shape.scale, _bottleneck(breakdown, comm_d),
                    volumes, notes)


def _bottleneck(breakdown: dict[str, float], comm_d: dict[str, float]) -> str:
    key = max(breakdown, key=lambda k: breakdown[k])
    if key == "communication_s":
        parts = {"tensor-parallel all-reduces": comm_d["tp_exposed_s"], "pipeline sends": comm_d["pp_exposed_s"],
                 "expert all-to-all": comm_d["ep_exposed_s"], "data-parallel gradient sync": comm_d["dp_exposed_s"],
                 "host offload transfers": comm_d["offload_s"]}
        return "communication (" + max(parts, key=lambda k: parts[k]) + ")"
    return {"compute_s": "compute", "memory_s": "memory bandwidth", "overhead_s": "per-op overhead",
            "bubble_s": "pipeline bubble"}[key]
