"""Step time of a parallel layout from a roofline profile: compute, memory, overhead, communication, bubble.

One trace (the whole model at the global batch) gives a :class:`Profile`;
:func:`step_time` turns it into the time one device spends on one training (or
inference) step under a layout, in O(1): the planner evaluates thousands of
layouts from one trace this way.

Scaling from the trace to one device (stated in every report):
- forward/backward work splits evenly over dp × tp × cp devices (sequence
  parallelism keeps norms and dropouts split under tensor parallelism; context
  parallelism splits each sequence, load-balanced for causal attention);
- pipeline stages hold ``workload.stage_layers(layers, pp)`` blocks each; the
  blocks' work splits by layer count, the rest of the model (head, loss,
  embedding) runs on the last stage; the slowest stage sets the step time;
- the schedule's bubble, per micro-batch time t of the other stages (their mean: the
  slowest stage paces the m micro-batches, the others fill and drain): 1F1B
  (p−1)·t, i.e. (p−1)/m of the ideal m·t (Narayanan et al. 2021, arXiv:2104.04473,
  Sec. 2.2.1); interleaved with v virtual stages (p−1)·t/v, with v× the
  point-to-point sends (Sec. 2.2.2); zero-bubble ZB-H1 (p−1)·(T_F + T_B − T_W)
  (Qi et al. 2023, arXiv:2401.10241), T_B and T_W each half the backward;
- each micro-batch reads the device's weight shard at least once in forward
  and twice in backward (a floor on memory time at small micro-batches);
- per-op overhead is paid per operator per micro-batch: ops/pp × micro-batches;
- optimizer work splits over tp × pp, and over dp too with ZeRO ≥ 1;
- a GEMM rated by a size table (roofline.py, gemm.py) runs at its size on one device for one micro-batch:
  the traced call's FLOPs × micro-batch / traced batch / (tp × cp) (:func:`gemm_scale`).

Activation offload (``offload_activations``; MEMO, Zhao et al. 2025): each micro-batch sends the bytes the memory
model moves to the host and fetches them back, over the device's own host link (``host_link``). The rule for what
is exposed: the sends overlap the forward pass and the fetches the backward pass (recomputation included), as
MEMO overlaps a layer's swap with the next layer's computation; per direction, only the transfer time beyond that
compute adds to the step: max(0, send − forward) + max(0, fetch − backward).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...core.datafiles import SourcedConstants
from ...core.errors import UserError
from ..memory import methods as memory_methods
from . import comm
from .efficiency import Efficiency
from .roofline import PhaseProfile, Profile
from ...workload import Layout, check_context_parallel, stage_layers
from ...core.units import plain_number, si

STEP_MODEL = SourcedConstants("analysis.predict", "step_model.toml", "step_model")
RANK_ORDER = "tp, dp, pp (tensor-parallel ranks adjacent, then data-parallel, then pipeline stages; Megatron-LM's default order)"



def communication_dtypes(prec: Any, grad_reduce_dtype: str = "compute") -> tuple[float, float]:
    """Bytes per element of (gathered weights, reduced gradients) for a precision (step_model.toml [communication]).

    Weights are gathered as the device holds them (the 16-bit working copy under *-mixed; FP8 only when the stack
    gathers FP8); gradients are reduced under *-mixed in the 16-bit compute dtype (``grad_reduce_dtype``
    ``compute``) or in fp32 (``fp32``), as ``Workload.grad_reduce_resolved`` decides, and in their own dtype
    otherwise."""
    gather = float(prec.weight_bytes)
    if prec.name == "fp8-mixed":
        gather = float(STEP_MODEL.value("communication", "weight_gather_bytes_fp8_mixed"))
    if not prec.mixed:
        reduce = float(prec.grad_bytes)
    elif grad_reduce_dtype == "fp32":
        reduce = float(STEP_MODEL.value("communication", "gradient_reduce_bytes_fp32"))
    else:
        reduce = float(STEP_MODEL.value("communication", "gradient_reduce_bytes_mixed"))
    return gather, reduce


def communication_rule(prec: Any, grad_reduce_dtype: str = "compute", *, auto: bool = False,
                       weights: str = "", fp8_weights: bool = False) -> str:
    """The communication dtypes of a precision, in words (the report's assumption). ``grad_reduce_dtype`` is the
    resolved one; ``auto`` says the default chose it (``Workload.grad_reduce_resolved``); ``weights`` is the
    working weights' dtype it was chosen with; ``fp8_weights``: FP8 primary weights (gathered in FP8)."""
    gather, reduce = communication_dtypes(prec, grad_reduce_dtype)
    if prec.mixed and weights == "fp32":
        gather = 4.0  # fp32 working weights are gathered (ZeRO-3) and broadcast (ZeRO-1/2) as they are
    gathered = f"{gather:g} B per element"
    if fp8_weights:
        fp8 = memory_methods.value("fp8", "primary_weight_bytes")
        gathered = (f"{fp8:g} B per element for the FP8 linear layers' weights (--fp8-weights: FP8 primary weights), "
                    f"{prec.compute_bytes} B for the others")
    where = "analysis/predict/data/step_model.toml [communication]"
    if not prec.mixed:
        why = ""
    elif auto and grad_reduce_dtype == "fp32" and weights == "16-bit":
        why = (" (Megatron-LM's fp32 main gradients: its bf16 runs of a model split by tensor, pipeline or context "
               "parallelism accumulate and reduce the gradients in fp32; --grad-reduce-dtype compute for 16-bit; "
               f"{where})")
    elif auto and grad_reduce_dtype == "fp32":
        why = (" (the gradients' own dtype: autocast over fp32 weights leaves fp32 gradients, which PyTorch DDP, "
               f"and FSDP without a param_dtype, reduce as they are; --grad-reduce-dtype compute for 16 bits; {where})")
    elif auto:
        why = (" (the gradients' own dtype: 16-bit working weights, or FSDP's 16-bit param_dtype under ZeRO-3, as "
               "DeepSpeed and FSDP reduce them by default; --grad-reduce-dtype fp32 for Megatron-LM and NeMo under "
               f"bf16 and for TorchTitan; {where})")
    elif grad_reduce_dtype == "fp32":
        why = f" (--grad-reduce-dtype fp32: Megatron-LM and NeMo under bf16, TorchTitan's default; {where})"
    else:
        why = f" (--grad-reduce-dtype compute: the 16-bit compute dtype, e.g. a DDP compression hook; {where})"
    return (f"communication dtypes ({prec.name}): weight all-gathers {gathered}, gradient "
            f"reduction {reduce:g} B per element{why}")


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
    # Data-parallel collectives (comm.dp_volume): the gradient buffer in the dtype it is reduced in (default
    # grad_bytes) and the widths of the gathered-weight and reduced-gradient elements.
    reduce_bytes: float | None = None
    moe_layers: int | None = None  # layers with routed experts (default: every layer)
    capacity_factor: float | None = None  # expert capacity factor, when the model states one
    weight_elem_bytes: float = 2.0
    reduce_elem_bytes: float = 2.0
    heads: int | None = None  # attention heads (query), kv_heads (key/value), head_dim: context-parallel volumes
    kv_heads: int | None = None
    head_dim: int | None = None
    # Routed experts' share of the weights and of the trainable gradients (MoE): under expert parallelism a device
    # holds 1/(ep·etp) of them, reduced over the expert-data-parallel ranks (tp·dp·cp/(ep·etp)); the rest over dp·cp.
    expert_weight_share: float = 0.0
    expert_grad_share: float = 0.0
    parallel_block: bool = False  # attention and MLP side by side on one input (one forward TP all-reduce per layer)
    # the same two under ZeRO-3 (None: as above), whose default reduction dtype is 16-bit (Workload.grad_reduce_at)
    reduce_bytes_zero3: float | None = None
    reduce_elem_bytes_zero3: float | None = None
    # the same two below ZeRO-3 with the model split over tp × pp × cp > 1 devices (None: as above), whose default
    # under bf16 is fp32 (Megatron-LM's main gradients)
    reduce_bytes_split: float | None = None
    reduce_elem_bytes_split: float | None = None
    # whether the working weights are fp32 under mixed precision (gathered in 4 B), by case: one device's model
    # below ZeRO-3, a model split below ZeRO-3, ZeRO-3 (Workload.mixed_weights_at)
    fp32_weight_cases: tuple[bool, bool, bool] = (False, False, False)

    @staticmethod
    def layout_case(zero: int, split: int = 1) -> int:
        """The cases the dtypes are resolved for (``model_shape``): 0 one device's model below ZeRO-3, 1 a model split
        over devices below ZeRO-3, 2 ZeRO-3."""
        return 2 if zero >= 3 else (1 if split > 1 else 0)

    def gathered_weights(self, zero: int, split: int = 1) -> tuple[float, float]:
        """(the weights in the dtype they are gathered or broadcast in, bytes per element) under ZeRO stage ``zero``
        with the model split over ``split`` devices."""
        if self.fp32_weight_cases[self.layout_case(zero, split)] and self.weight_elem_bytes:
            return self.weight_bytes * 4.0 / self.weight_elem_bytes, 4.0
        return self.weight_bytes, self.weight_elem_bytes

    def gradient_reduction(self, zero: int, split: int = 1) -> tuple[float, float]:
        """(the gradient buffer in the dtype it is reduced in, bytes per element) under ZeRO stage ``zero`` with the
        model split over ``split`` = tp × pp × cp devices."""
        case = self.layout_case(zero, split)
        if case == 2 and self.reduce_elem_bytes_zero3 is not None:
            return float(self.reduce_bytes_zero3 if self.reduce_bytes_zero3 is not None else self.grad_bytes), \
                self.reduce_elem_bytes_zero3
        if case == 1 and self.reduce_elem_bytes_split is not None:
            return float(self.reduce_bytes_split if self.reduce_bytes_split is not None else self.grad_bytes), \
                self.reduce_elem_bytes_split
        return float(self.reduce_bytes if self.reduce_bytes is not None else self.grad_bytes), self.reduce_elem_bytes

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
    stages: tuple[int, ...] = ()  # blocks per pipeline stage (empty without pipeline parallelism)
    bubble_fraction: float = 0.0  # bubble / the slowest stage's busy time (1F1B: (p-1)/m)
    host_wait_s: float = 0.0  # eager: what the GPU waits on the host per step (in overhead_s; host.py)
    tp_backward: str = "overlap"  # how the backward's TP collectives ran: the layout's, auto resolved (tp_backward_of)
    zero_impl: str = "deepspeed"  # which ZeRO-3 ran: the layout's, auto resolved (zero_impl_of)


def tp_backward_of(par: Layout, fusion: str) -> str:
    """The layout's ``tp_backward``, ``auto`` resolved by the stack the step is timed on: Megatron-LM's and Transformer
    Engine's overlap on the fused stack, PyTorch's exposed collectives on its eager (``none``) or compiled one."""
    if par.tp_backward != "auto":
        return par.tp_backward
    return "overlap" if fusion == "fused" else "exposed"


def zero_impl_of(par: Layout, fusion: str) -> str:
    """The layout's ``zero_impl``, ``auto`` resolved by the stack the step is timed on: PyTorch's FSDP2 on its eager
    (``none``) or compiled stack, DeepSpeed's (buffers in place, as Megatron's) on the fused stack and under ZeRO++."""
    if par.zero_impl != "auto":
        return par.zero_impl
    return "deepspeed" if fusion == "fused" or par.zeropp else "fsdp2"


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
    to the micro-batch, context parallelism splits the tokens by cp and tensor parallelism splits N
    (column-parallel) or K (row-parallel) by tp."""
    return par.micro_batch / (shape.traced_batch or shape.batch) / (par.tp * par.cp)


def step_time(profile: Profile, shape: ModelShape, par: Layout, device: Any, eff: Efficiency,
              activation_offload_bytes: float = 0.0) -> StepTime:
    """Per-device time of one step under ``par`` (see the module docstring for the scaling);
    ``activation_offload_bytes``: what one micro-batch of one device sends to the host under activation offload."""
    if par.cp > 1:
        check_context_parallel(par, int(shape.tokens_per_sample) if shape.tokens_per_sample else None, shape.heads)
    n = par.devices
    m = max(1, (shape.batch // par.dp) // par.micro_batch)  # micro-batches per replica
    share = shape.scale / n  # the trace's share one device does in one step, with balanced stages
    k = gemm_scale(shape, par)
    fwd, bwd, opt = profile.phase("forward", k), profile.phase("backward", k), profile.phase("optimizer", k)
    rc, extra_flops = _recomputation(profile, shape, par, k)
    if par.cp > 1:
        slower = ring_attention_slowdown(profile, shape, par)
        fwd, bwd, rc = (p.with_class_slower("attention", slower) for p in (fwd, bwd, rc))
    if par.tp > 1 and not par.sequence_parallel:
        # without sequence parallelism every tensor-parallel rank runs the norms, the dropouts after the row-parallel
        # linears and the residual stream on the whole sequence (Korthikanti et al. 2022, Sec. 4.2.2)
        fwd, bwd, rc = fwd.unsharded(par.tp), bwd.unsharded(par.tp), rc.unsharded(par.tp)
    stages, model_k, block_k, others_k, others_block_k = _stage_factors(profile, shape, par, k)
    # the slowest stage: its share of the blocks (and, on the last stage, the head and loss), × pp
    work = fwd.plus(bwd).scaled(share * model_k).plus(rc.scaled(share * block_k))
    floor_extra = _weight_streaming_floor(profile, shape, par, m, work.time_s)
    overhead_fb = profile.per_op_overhead_s * (fwd.ops + bwd.ops + rc.ops) / par.pp * m
    # Optimizer step: split over tp × pp, and over ZeRO's shards (dp × cp, or the sharding group) with ZeRO ≥ 1.
    opt_dev = opt.scaled(1.0 / (par.tp * par.pp) / par.zero_shards)
    overhead_opt = profile.per_op_overhead_s * opt.ops / par.pp
    # Eager on a GPU: the step waits on the host when dispatching its operators takes longer than running them.
    host_wait = _host_wait(profile, par, m, (fwd, bwd, rc, opt),
                           work.time_s + floor_extra + overhead_fb + opt_dev.time_s + overhead_opt)
    overhead_fb += sum(host_wait[:3])
    overhead_opt += host_wait[3]
    fwd_s, bwd_s, rc_s = fwd.time_s * share * model_k, bwd.time_s * share * model_k, rc.time_s * share * block_k
    attention_s = (fwd.by_class.get("attention", 0.0) + bwd.by_class.get("attention", 0.0)) * share * block_k \
        + rc.by_class.get("attention", 0.0) * share * block_k
    # the backward GEMMs of the slowest stage's column-parallel linears, by group: what the backward's tensor-parallel
    # collectives run under (_tp_exposed)
    column_s = {g: {kind: t * share * block_k for kind, t in kinds.items()}
                for g, kinds in profile.column_backward_s(k).items()} if shape.training and par.tp > 1 else {}
    tp_backward = tp_backward_of(par, profile.fusion.mode)
    zero_impl = zero_impl_of(par, profile.fusion.mode)
    c = _communication(shape, par, device, eff, m, fwd_s, bwd_s + rc_s, attention_s, column_s, tp_backward,
                       profile.rates["memory"] if zero_impl == "fsdp2" else None)
    copies_s = c.fsdp_copy_fwd_s + c.fsdp_copy_bwd_s
    if shape.training and activation_offload_bytes > 0:
        _activation_offload(c, activation_offload_bytes, m, eff, fwd_s, bwd_s + rc_s)

    pipe_work = work.time_s + floor_extra + copies_s + overhead_fb + c.tp_x + c.pp_x + c.ep_x + c.cp_x + c.act_x
    # the bubble is the other stages' fill and drain: their mean work in place of the slowest stage's
    others_work = pipe_work + (fwd.time_s + bwd.time_s) * share * (others_k - model_k) \
        + rc.time_s * share * (others_block_k - block_k)
    bubble, bubble_note = _bubble(par, m, others_work, fwd_s + rc_s, bwd_s)
    step = pipe_work + bubble + opt_dev.time_s + overhead_opt + c.dp_x + c.off_s
    breakdown = {
        "compute_s": work.compute_s + opt_dev.compute_s,
        "memory_s": work.memory_s + floor_extra + copies_s + opt_dev.memory_s,
        "overhead_s": overhead_fb + overhead_opt,
        "communication_s": c.tp_x + c.pp_x + c.ep_x + c.cp_x + c.dp_x + c.off_s + c.act_x,
        "bubble_s": bubble,
    }
    comm_d = {
        "tp_s": c.tp_s, "pp_s": c.pp_s, "ep_s": c.ep_s, "dp_s": c.dp_s, "offload_s": c.off_s,
        "tp_exposed_s": c.tp_x, "pp_exposed_s": c.pp_x, "ep_exposed_s": c.ep_x, "dp_exposed_s": c.dp_x,
        **c.by_collective,
    }
    if par.cp > 1:
        comm_d.update(cp_s=c.cp_s, cp_exposed_s=c.cp_x)
    per_op = profile.per_op_overhead_s / par.pp * m
    phases = {
        "forward_s": fwd_s + per_op * fwd.ops + host_wait[0] + c.fsdp_copy_fwd_s,
        "backward_s": bwd_s + per_op * bwd.ops + host_wait[1] + c.fsdp_copy_bwd_s,
        "recompute_s": rc_s + per_op * rc.ops + host_wait[2],
        "optimizer_s": opt_dev.time_s + overhead_opt,
    }
    if c.act_s:
        comm_d.update(activation_offload_s=c.act_s, activation_offload_exposed_s=c.act_x)
    notes = list(c.notes)
    if bubble_note:
        notes.append(bubble_note)
    if stages and len(set(stages)) > 1:
        notes.append(f"uneven pipeline stages: {_stage_text(stages)} blocks (the smaller stages at the ends, which "
                     "hold the embedding and the head); the slowest stage sets the step time")
    if floor_extra:
        notes.append("weight-streaming floor: at this micro-batch, reading the weight shard takes longer than the "
                     "operators' own traffic")
    return StepTime(step, breakdown, phases, comm_d, m, extra_flops, shape.scale,
                    _bottleneck(breakdown, comm_d, sum(host_wait)),
                    c.volumes, notes, stages, bubble / pipe_work if pipe_work else 0.0, sum(host_wait), tp_backward,
                    zero_impl)


def _stage_text(stages: tuple[int, ...]) -> str:
    """7, 8 × 14, 7: runs of equal stages."""
    out: list[str] = []
    k = 0
    while k < len(stages):
        j = k
        while j < len(stages) and stages[j] == stages[k]:
            j += 1
        out.append(f"{stages[k]}" + (f" × {j - k}" if j - k > 1 else ""))
        k = j
    return ", ".join(out)


def _stage_factors(profile: Profile, shape: ModelShape, par: Layout, k: float = 1.0
                   ) -> tuple[tuple[int, ...], float, float, float, float]:
    """(blocks per stage, the slowest stage's share of the model's forward/backward × pp, its share of the
    blocks × pp, and the same two for the mean of the other stages). Balanced stages give (…, 1, 1, 1, 1).

    A stage's share of the forward/backward: its blocks' part of the traced blocks' work plus, on the last stage,
    the work outside the blocks (the head and the loss; the embedding lookup on the first stage is a gather,
    counted with the rest on the last). The block share of the backward is taken to be the forward's.

    The other stages set the bubble: under 1F1B the slowest stage paces the m micro-batches and the others' fill
    and drain add Σ_{j ≠ slowest} (t_f,j + t_b,j), the first micro-batch's forward reaching it and the last one's
    backward leaving it; (p − 1) times the slowest stage's time when the stages are equal."""
    if par.pp == 1 or not shape.layers:
        return (), 1.0, 1.0, 1.0, 1.0
    stages = stage_layers(int(shape.layers), par.pp)
    L = float(sum(stages))
    fwd = profile.phase("forward", k).time_s
    block = min(profile.block(k).time_s / fwd, 1.0) if fwd > 0 and profile.block_forward.ops else 1.0
    rest = 1.0 - block
    shares = [block * l / L for l in stages]
    shares[-1] += rest
    model_k = max(shares) * par.pp
    block_k = max(stages) / L * par.pp
    others_k = (sum(shares) - max(shares)) / (par.pp - 1) * par.pp
    others_block_k = (L - max(stages)) / (par.pp - 1) / L * par.pp
    return stages, model_k, block_k, others_k, others_block_k


def _bubble(par: Layout, m: int, pipe_work: float, fwd_s: float, bwd_s: float) -> tuple[float, str]:
    """Idle time of the slowest stage under the schedule, and the note that says how it was modeled."""
    p = par.pp
    if p == 1:
        return 0.0, ""
    one_f_one_b = (p - 1) * pipe_work / m  # (p-1) micro-batch times of the slowest stage
    if par.schedule == "zero-bubble":
        w = STEP_MODEL.value("pipeline", "weight_grad_share_of_backward")
        busy = fwd_s + bwd_s
        ratio = (fwd_s + bwd_s * (1 - 2 * w)) / busy if busy > 0 else 1.0
        return one_f_one_b * ratio, (f"pipeline: zero-bubble ZB-H1 (Qi et al. 2023), bubble (p-1)·(T_F + T_B − T_W) "
                                     f"= {ratio:.2f} × 1F1B's (p-1)/m with p={p}, m={m}; backward split into input "
                                     f"and weight gradients, {w:g} each")
    if par.vp > 1:
        return one_f_one_b / par.vp, (f"pipeline: interleaved 1F1B with {par.vp} virtual stages per device, bubble "
                                      f"(p-1)/(v·m) = {(p - 1) / (par.vp * m):.3g} of the other stages' busy time "
                                      f"with p={p}, m={m} (Narayanan et al. 2021, Sec. 2.2.2); {par.vp}× the "
                                      "point-to-point sends")
    return one_f_one_b, (f"pipeline: 1F1B, bubble (p-1)/m = {(p - 1) / m:.3g} of the other stages' busy time with "
                         f"p={p}, m={m} (Narayanan et al. 2021, Sec. 2.2.1)")


def _host_wait(profile: Profile, par: Layout, m: int, phases: tuple[PhaseProfile, ...],
               device_s: float) -> tuple[float, ...]:
    """What the GPU waits on the host in one step (host.py), split over (forward, backward, recompute,
    optimizer) by their host time: the host dispatches each stage's operators once per micro-batch and the
    optimizer's once per step; the step takes max(host, ``device_s``: the kernels and their per-op gaps)."""
    if not profile.host_modelled:
        return (0.0, 0.0, 0.0, 0.0)
    fwd, bwd, rc, opt = phases
    host = (fwd.host_s / par.pp * m, bwd.host_s / par.pp * m, rc.host_s / par.pp * m, opt.host_s / par.pp)
    total = sum(host)
    wait = total - device_s
    if wait <= 0 or total <= 0:
        return (0.0, 0.0, 0.0, 0.0)
    return tuple(wait * h / total for h in host)


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
    act_s: float = 0.0  # activation offload: sends and fetches over the host link
    tp_x: float = 0.0  # exposed
    pp_x: float = 0.0
    ep_x: float = 0.0
    dp_x: float = 0.0
    act_x: float = 0.0
    cp_s: float = 0.0
    cp_x: float = 0.0
    volumes: dict[str, float] = field(default_factory=dict)  # bytes sent per device per step
    notes: list[str] = field(default_factory=list)
    by_collective: dict[str, float] = field(default_factory=dict)  # dp_<collective>_s and dp_<collective>_exposed_s
    # the backward's tensor-parallel collectives of the column-parallel linears, per group (attention, mlp) over the
    # step: one all-reduce of the input gradient each per layer and micro-batch (under sequence parallelism its
    # reduce-scatter and the input's re-gather, the same bytes); 0 without tensor parallelism or training
    tp_column_s: float = 0.0
    # FSDP2's buffer copies on the compute stream over the step (ZeRO-3 on PyTorch's stack, _fsdp2_copies): memory
    # time, not communication, run in the forward (copy-out) and the backward (copy-out and copy-in)
    fsdp_copy_fwd_s: float = 0.0
    fsdp_copy_bwd_s: float = 0.0


def _communication(shape: ModelShape, par: Layout, device: Any, eff: Efficiency, m: int, fwd_s: float,
                   bwd_s: float, attention_s: float = 0.0, column_s: dict[str, dict[str, float]] | None = None,
                   tp_backward: str = "overlap", memory_bw: float | None = None) -> _Communication:
    """Tensor-, pipeline- and expert-parallel traffic, the data-parallel gradient sync and offload transfers,
    and how much of each is exposed (not hidden under the compute it overlaps with). ``column_s``: the backward
    GEMM time of the column-parallel linears over the step, by group and kind (``Profile.column_backward_s``);
    ``tp_backward``: the layout's, resolved (:func:`tp_backward_of`); ``memory_bw``: the achieved memory bandwidth
    (bytes/s) when ZeRO-3 runs as PyTorch's FSDP2 (:func:`zero_impl_of`), which copies its collectives' buffers on
    the compute stream (None: DeepSpeed's or Megatron's, which do not)."""
    c = _Communication()
    n = par.devices
    links = _links(device) if n > 1 else (1.0, 1.0, 1)
    # one micro-batch's activations on one device: its 1/cp of each sequence
    act_elems = par.micro_batch * shape.tokens_per_sample / par.cp * shape.hidden \
        if shape.tokens_per_sample and shape.hidden else None
    if par.tp > 1:
        _tensor_parallel(c, shape, par, eff, links, m, act_elems, tp_backward)
    if par.pp > 1:
        _pipeline(c, shape, par, eff, links, m, act_elems)
    if par.ep > 1 and shape.experts and act_elems is not None and shape.layers:
        _expert_parallel(c, shape, par, eff, links, m, act_elems)
    if par.cp > 1:
        _context_parallel(c, shape, par, eff, links, m, attention_s)
    if shape.training and par.dp * par.cp > 1:
        _data_parallel(c, shape, par, eff, links, m, fwd_s, bwd_s, memory_bw)
    if shape.training and par.offload != "none":
        # Gradients go down to the host and updated weights come back every step.
        c.off_s = (shape.grad_bytes + shape.weight_bytes) / (par.tp * par.pp) / par.zero_shards \
            / eff["host_link"]
        c.notes.append("offload: gradients to the host and updated weights back over the host link each step; "
                       "the host's optimizer step is assumed to keep up")
    if par.cp > 1 and par.cp_comm == "ring":
        # each ring step's KV transfer runs beside the attention of the block already received
        c.cp_x = max(c.cp_s - attention_s, 0.0)
    else:
        c.cp_x = c.cp_s  # the all-gathers and all-to-alls sit before attention: on the critical path
    # TP all-reduces sit between dependent GEMMs: exposed, unless TP-comm overlap hides them, or the backward's run
    # under the column-parallel linears' own GEMMs (_tp_exposed).
    c.tp_x = _tp_exposed(c, par, fwd_s + bwd_s, column_s, tp_backward)
    # 1F1B's sends and receives block the stage between micro-batches (no p2p overlap): exposed; with p2p overlap
    # the interleaved schedule's steady state hides them under the next chunk (_pipeline_exposed).
    c.pp_x = _pipeline_exposed(c.pp_s, par, m, fwd_s, bwd_s) if c.pp_s else 0.0
    if c.pp_s and par.pp_comm_overlap:
        c.notes.append(
            "pipeline p2p overlap (Megatron-Core overlap_p2p_comm; NeMo's default with virtual stages): in the "
            "interleaved schedule's steady state each send and receive runs beside the next chunk's compute; the "
            "warm-up's and cool-down's are exposed (rank 0: 2(p−1) + (v−1)p chunks each way, Megatron-Core "
            "schedules.py)" if par.vp > 1 else
            "--pp-comm-overlap has no effect without virtual stages (Megatron-Core overlaps p2p only in the "
            "interleaved schedule): pipeline sends exposed")
    # The token dispatch feeds the experts and the combine feeds the next layer: nothing to hide under.
    c.ep_x = c.ep_s
    return c


def _regathers_input(par: Layout, tp_backward: str) -> bool:
    """Whether the backward gathers the column-parallel linears' inputs again: Megatron-LM's and Transformer Engine's
    sequence parallelism (``tp_backward`` overlap), not PyTorch's tensor parallelism (DTensor, async TP), whose
    autograd keeps the gathered input."""
    return par.sequence_parallel and tp_backward == "overlap" \
        and not (par.tp_comm_overlap and par.tp_overlap == "async-tp")


def _tp_exposed(c: _Communication, par: Layout, compute_s: float,
                column_s: dict[str, dict[str, float]] | None = None, tp_backward: str = "overlap") -> float:
    """The exposed part of the tensor-parallel collectives (``c.tp_s``), with a note on how it was found.

    Without TP-comm overlap, all of it but what :func:`_tp_backward_hidden` hides (``tp_backward`` overlap): each
    collective sits between dependent GEMMs, the backward's column-parallel ones beside their linear's own GEMMs.
    With Megatron/Transformer Engine's userbuffers (``tp_overlap="userbuffers"``) each GEMM runs in chunks, a chunk's
    collective under the next chunk's GEMM: exposed is only what exceeds the forward and backward compute. PyTorch's async tensor parallelism
    (``"async-tp"``) hides a calibrated share of what the compute could hide (step_model.toml [communication]
    async_tp_hidden_share): TorchTitan's measured gain from it is far below what a full overlap would give."""
    if not c.tp_s:
        return c.tp_s
    if not par.tp_comm_overlap:
        if tp_backward != "overlap" or not c.tp_column_s:
            return c.tp_s
        return c.tp_s - _tp_backward_hidden(c, par, column_s or {})
    hideable = min(c.tp_s, compute_s)
    if par.tp_overlap == "async-tp":
        share = float(STEP_MODEL.value("communication", "async_tp_hidden_share"))
        c.notes.append(f"async TP (PyTorch's micro-pipelined collective matmuls under torch.compile): "
                       f"{share:.0%} of the tensor-parallel collectives the compute could hide is hidden, the share "
                       "calibrated on TorchTitan's 2D runs with and without it (step_model.toml [communication])")
        return c.tp_s - share * hideable
    c.notes.append("TP-comm overlap: the tensor-parallel collectives run under the layers' GEMMs; exposed "
                   "is what exceeds the forward and backward compute")
    return c.tp_s - hideable


def _tp_backward_hidden(c: _Communication, par: Layout, column_s: dict[str, dict[str, float]]) -> float:
    """What of the backward's tensor-parallel collectives runs under the column-parallel linears' own GEMMs
    (Megatron-LM's async all-reduce, default since 2021-09, ``--no-async-tensor-model-parallel-allreduce`` to turn it
    off; Megatron-Core; Transformer Engine), with a note.

    A column-parallel linear's backward computes the input gradient (dgrad), starts its all-reduce and computes the
    weight gradient (wgrad) under it; under sequence parallelism it starts the re-gather of its input under dgrad
    and the reduce-scatter of the input gradient under wgrad (megatron/core/tensor_parallel/layers.py at 285068c8,
    LinearWithGradAccumulationAndAsyncCommunication.backward; Korthikanti et al. 2022, Sec. 6.2, "we overlap
    all-reduce communication with the linear weight's gradient computation"). Per group g (the fused QKV, the first
    MLP linear) with input- and weight-gradient GEMM times D_g and W_g over the step (a frozen weight, as under
    LoRA, has no W_g), and its collectives T (one all-reduce per layer and micro-batch; under sequence parallelism
    an all-gather and a reduce-scatter, half each): hidden min(T, W_g), or min(T/2, D_g) + min(T/2, W_g). The
    row-parallel linears' backward (the all-gather of the output gradient under sequence parallelism) stays exposed.
    Groups the module names do not tell apart share the GEMMs of all of them."""
    t = c.tp_column_s
    n = comm.TP_COLUMN_LINEARS_PER_LAYER
    groups = [(g.get("dgrad", 0.0), g.get("wgrad", 0.0)) for g in column_s.values()]
    if not any(d + w for d, w in groups):
        c.notes.append("backward tensor-parallel overlap: no column-parallel linear found by its module name "
                       "(analysis/memory/data/tensor_parallel.toml), nothing hidden")
        return 0.0
    pairs = [(t, d, w) for d, w in groups] if len(groups) == n else \
        [(n * t, sum(d for d, _ in groups), sum(w for _, w in groups))]
    sp = par.sequence_parallel
    hidden = sum(min(tt / 2, d) + min(tt / 2, w) if sp else min(tt, w) for tt, d, w in pairs)
    what = ("its reduce-scatter of the input gradient under the weight-gradient GEMM and the re-gather of its input "
            "under the input-gradient GEMM" if sp else "its input-gradient all-reduce under the weight-gradient GEMM")
    c.notes.append(f"backward tensor-parallel overlap (Megatron-LM's async all-reduce, Megatron-Core, Transformer "
                   f"Engine): each column-parallel linear runs {what}; {plain_number(hidden, 3)} s of the "
                   f"{plain_number(n * t, 3)} s these collectives take is hidden; --tp-backward exposed for PyTorch "
                   "tensor parallelism")
    return hidden


def _pipeline_exposed(pp_s: float, par: Layout, m: int, fwd_s: float, bwd_s: float) -> float:
    """The exposed part of a stage's pipeline sends and receives (``pp_s``: all of them, one per chunk each way).

    Without p2p overlap, or without virtual stages, all of it. With ``pp_comm_overlap`` and v > 1 (Megatron-Core's
    ``overlap_p2p_comm``, which NeMo turns on with virtual stages: NeMo docs, Communication Overlap, "PP
    communications in pipeline fill and flush are still exposed"): the first stage (the most warm-up) runs
    w = min(m·v, 2(p−1) + (v−1)·p) warm-up forward chunks and as many cool-down backward chunks (Megatron-Core
    ``forward_backward_pipelining_with_interleaving``, num_warmup_microbatches at rank 0), whose sends are exposed;
    each of the other m·v − w chunks' sends runs beside the next chunk of the other direction and is exposed only
    where it is longer."""
    chunks = m * par.vp
    if not par.pp_comm_overlap or par.vp <= 1 or chunks <= 0:
        return pp_s
    t = pp_s / (2 * chunks)  # one send per chunk each way
    warmup = min(chunks, 2 * (par.pp - 1) + (par.vp - 1) * par.pp)
    steady = chunks - warmup
    fwd_chunk, bwd_chunk = fwd_s / chunks, bwd_s / chunks
    return 2 * warmup * t + steady * (max(0.0, t - bwd_chunk) + max(0.0, t - fwd_chunk))


def _activation_offload(c: _Communication, per_micro_batch: float, m: int, eff: Efficiency, fwd_s: float,
                        bwd_s: float) -> None:
    """Activation offload's host-link traffic and the part of it the forward/backward compute cannot hide."""
    one_way = m * per_micro_batch / eff["host_link"]
    c.act_s = 2 * one_way
    c.act_x = max(0.0, one_way - fwd_s) + max(0.0, one_way - bwd_s)
    c.volumes["activation_offload_bytes"] = 2 * m * per_micro_batch
    c.notes.append(f"activation offload: {plain_number(m * per_micro_batch / 1e9)} GB per device per step to the host and "
                   f"back at {plain_number(eff['host_link'] / 1e9, 3)} GB/s each way; sends overlap the forward "
                   f"({plain_number(fwd_s, 3)} s), fetches the backward ({plain_number(bwd_s, 3)} s); exposed: {plain_number(c.act_x, 3)} s")


def _link(links: tuple[float, float, int], eff: Efficiency, inside: bool) -> tuple[float, comm.Latency]:
    """(bandwidth, latency) of a group inside one node or across nodes."""
    intra_bw, inter_bw, _ = links
    return (intra_bw, comm.link_latency(eff, True)) if inside else (inter_bw, comm.link_latency(eff, False))


def _tensor_parallel(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency,
                     links: tuple[float, float, int], m: int, act_elems: float | None,
                     tp_backward: str = "overlap") -> None:
    if act_elems is None or not shape.layers:
        raise UserError("tensor parallelism is modeled for transformer models (layers, hidden size and sequence "
                        "length known); use --tp 1 for this model")
    dpn = links[2]
    inside = par.tp <= dpn
    bw, lat = _link(links, eff, inside)
    per_layer = comm.tp_all_reduces_per_layer(shape.training, par.recompute == "full", shape.parallel_block)
    layer_steps = (shape.layers / par.pp) * m  # a stage's layers × micro-batches
    count = per_layer * layer_steps
    if shape.parallel_block:
        c.notes.append(f"parallel attention+MLP blocks: the two outputs are summed before one tensor-parallel all-reduce "
                       f"in the forward, the backward all-reduces each branch's input gradient ({per_layer} per layer "
                       "and micro-batch, GPT-NeoX's gpt_j_residual)")
    vol = comm.all_reduce_volume(act_elems * shape.act_bytes, par.tp)
    # one all-reduce (or an all-gather and a reduce-scatter, half the bytes each)
    one = comm.transfer_time(vol, bw, eff["network"], 2 * (par.tp - 1), lat)
    if shape.training:
        c.tp_column_s = layer_steps * one
        if tp_backward == "exposed" and par.tp_backward == "auto":
            c.notes.append("backward tensor-parallel collectives exposed: on PyTorch's eager or compiled stack, tensor "
                           "parallelism (DTensor) runs each after the linear's backward (--tp-backward auto; "
                           "--tp-backward overlap for Megatron-LM's or Transformer Engine's under those GEMMs)")
        if _regathers_input(par, tp_backward):
            # Megatron-LM's sequence parallelism keeps a column-parallel linear's input sharded for the backward and
            # gathers it again there (megatron/core/tensor_parallel/layers.py, LinearWithGradAccumulationAndAsync-
            # Communication; Transformer Engine's Linear likewise): an all-gather per such linear, per layer and
            # micro-batch, half an all-reduce's bytes each
            count += comm.TP_COLUMN_LINEARS_PER_LAYER / 2 * layer_steps
            c.notes.append("sequence parallelism keeps each column-parallel linear's input sharded for the backward "
                           "and gathers it again there (Megatron-LM, Transformer Engine): one more all-gather per such "
                           "linear, layer and micro-batch")
    c.volumes["tp_bytes"] = vol * count
    c.tp_s = count * one
    if not inside:
        c.notes.append(f"the tensor-parallel group of {par.tp} spans nodes ({dpn} devices per node): inter-node bandwidth")


def _pipeline(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency, links: tuple[float, float, int],
              m: int, act_elems: float | None) -> None:
    if act_elems is None:
        raise UserError("pipeline parallelism is modeled for sequence models (sequence length and hidden size "
                        "known); use --pp 1 for this model")
    bw, lat = _link(links, eff, par.devices <= links[2])
    per_mb = STEP_MODEL.value("pipeline", "p2p_per_micro_batch_training") if shape.training else 1
    transfers = per_mb * m * par.vp  # the interleaved schedule crosses v× the stage boundaries
    # Under tensor parallelism each of the tp ranks sends 1/tp of the boundary activation (Megatron's scatter/gather
    # optimization, Narayanan et al. 2021, Sec. 4.1; with sequence parallelism the activation is already split so)
    vol = act_elems * shape.act_bytes / par.tp
    c.volumes["pp_bytes"] = vol * transfers
    c.pp_s = transfers * comm.transfer_time(vol, bw, eff["network"], 1, lat)


def _expert_parallel(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency,
                     links: tuple[float, float, int], m: int, act_elems: float) -> None:
    """Token dispatch and combine around each MoE layer, from the routing.

    Per MoE layer and direction a device sends its tokens (micro-batch × sequence / tp: tensor parallelism with
    sequence parallelism splits them) to top-k experts each, h elements of the compute dtype per copy, padded to
    the capacity factor when the model states one; under balanced routing (ep-1)/ep of the copies leave the
    device. Dispatch and combine in forward, both again in backward, and once more with full recomputation."""
    # an expert-parallel group is ep ranks expert-tp apart (tp, or --etp under MoE Parallel Folding)
    _, lat = _link(links, eff, par.expert_tp * par.ep <= links[2])
    per_layer = STEP_MODEL.value("expert_parallel", "all_to_all_per_layer_training" if shape.training else
                                 "all_to_all_per_layer_inference")
    if shape.training and par.recompute == "full":
        per_layer += STEP_MODEL.value("expert_parallel", "all_to_all_per_layer_inference")  # the forward again
    moe_layers = shape.moe_layers if shape.moe_layers is not None else shape.layers
    count = per_layer * (moe_layers / par.pp) * m
    routed = act_elems * max(shape.top_k, 1) * (shape.capacity_factor or 1.0) / par.tp
    buffer = routed * shape.act_bytes
    c.volumes["ep_bytes"] = comm.all_to_all_volume(buffer, par.ep) * count
    c.ep_s = comm.all_to_all_time(buffer, par.ep, _group_ranks_per_node(par.ep, par.expert_tp, links[2]), links[0],
                                  links[1], eff["network"], lat, count)
    cf = f", capacity factor {shape.capacity_factor:g}" if shape.capacity_factor else \
        " (no capacity factor stated: no padding, no drops)"
    c.notes.append(f"expert all-to-all: {per_layer:g} per MoE layer × {moe_layers} MoE layers per micro-batch, "
                   f"tokens × top-{max(shape.top_k, 1)} × hidden × {shape.act_bytes} B{cf}, (ep-1)/ep of it "
                   "leaving the device (balanced routing), to peers in the node over its links and to the others "
                   "over the device's own network link at once; exposed (the experts wait for the dispatch)")


def ring_attention_slowdown(profile: Profile, shape: ModelShape, par: Layout) -> float:
    """How much slower ring context parallelism runs the fused attention than the traced call's rate says: each of
    its cp steps calls the kernel on one K/V block of S/cp keys (Megatron-Core/Transformer Engine's CP), which a
    class that rates the kernel by its key length (attention.toml) runs at the rate of S/cp keys, not of the S
    keys the trace's one call holds. 1 for the all-gather (Llama 3: one call over all the keys) and all-to-all
    (Ulysses: the whole sequence, heads split) methods, and where attention is rated by a flat factor."""
    rate = profile.attention
    seq, head_dim = shape.tokens_per_sample, shape.head_dim
    if par.cp <= 1 or par.cp_comm != "ring" or rate is None or not seq or not head_dim:
        return 1.0
    return max(1.0, rate.share_at(int(seq), int(head_dim)) / rate.share_at(max(1, int(seq) // par.cp), int(head_dim)))


def _group_ranks_per_node(n: int, stride: int, per_node: int) -> int:
    """Ranks of a group of n, ``stride`` ranks apart, that share one node of ``per_node`` devices."""
    return max(1, min(n, per_node // max(1, stride)))


def _context_parallel(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency,
                      links: tuple[float, float, int], m: int, attention_s: float) -> None:
    """Ring: cp−1 steps per layer each passing the local K and V block (b·s/cp·kv_heads·head_dim/tp elements
    each) on, once in forward (again under full recomputation), KV and dKV in backward. All-gather (Llama 3):
    the local K and V gathered from all cp ranks before attention, exposed, in forward (again under full
    recomputation); in backward gathered again and dK, dV reduce-scattered. All-to-all (Ulysses): Q, K, V and the
    output, (cp−1)/cp of each buffer, in forward and again in backward."""
    if not (shape.tokens_per_sample and shape.layers and shape.heads and shape.head_dim):
        raise UserError(f"--cp {par.cp} is modeled for transformer models (layers, heads, head size and sequence "
                        "length known); use --cp 1 for this model")
    bw, lat = _link(links, eff, par.tp * par.cp <= links[2])  # CP ranks sit next to the TP ranks: tp apart
    kv_heads = shape.kv_heads or shape.heads
    tokens = par.micro_batch * shape.tokens_per_sample / par.cp
    # layer passes of the slowest stage's blocks, summed over micro-batches
    layers = max(stage_layers(int(shape.layers), par.pp)) * m if par.pp > 1 else shape.layers * m
    refwd = 1 if (shape.training and par.recompute == "full") else 0
    block = 2 * tokens * kv_heads * shape.head_dim / par.tp * shape.act_bytes  # K and V of the local chunk
    if par.cp_comm == "ring":
        passes = STEP_MODEL.value("context_parallel", "ring_kv_passes_forward") * (1 + refwd)
        if shape.training:
            passes += STEP_MODEL.value("context_parallel", "ring_kv_passes_backward")
        vol = passes * (par.cp - 1) * block * layers
        steps = passes * (par.cp - 1) * layers
        c.notes.append(f"context parallelism {par.cp}, ring attention: {par.cp - 1} KV blocks of "
                       f"{plain_number(block / 1e6, 3)} MB passed per layer ({passes:g}× per micro-batch with the backward), "
                       "overlapped with the attention of the block in hand; exposed only beyond it")
    elif par.cp_comm == "all-gather":
        count = STEP_MODEL.value("context_parallel", "allgather_kv_collectives_forward") * (1 + refwd)
        if shape.training:
            count += STEP_MODEL.value("context_parallel", "allgather_kv_collectives_backward")
        per = comm.all_gather_volume(block * par.cp, par.cp)  # each rank receives the other cp − 1 blocks
        c.volumes["cp_bytes"] = per * count * layers
        c.cp_s = count * layers * comm.transfer_time(per, bw, eff["network"], par.cp - 1, lat)
        c.notes.append(f"context parallelism {par.cp}, K/V all-gather (Llama 3): the other ranks' K and V, "
                       f"{plain_number(per / 1e6, 3)} MB per layer, gathered before attention and again in backward, dK and dV "
                       f"reduce-scattered ({count:g} collectives per layer and micro-batch), not overlapped")
        return
    else:
        qkvo = tokens * (2 * shape.heads + 2 * kv_heads) * shape.head_dim / par.tp * shape.act_bytes
        count = STEP_MODEL.value("context_parallel", "ulysses_all_to_all_per_layer_forward") * (1 + refwd)
        if shape.training:
            count += STEP_MODEL.value("context_parallel", "ulysses_all_to_all_per_layer_backward")
        per_layer = comm.all_to_all_volume(qkvo, par.cp) * count / 4  # qkvo holds the four buffers
        c.volumes["cp_bytes"] = per_layer * layers
        # count all-to-alls of one buffer each per layer (qkvo / 4 bytes on average: the time is linear in bytes)
        c.cp_s = comm.all_to_all_time(qkvo / 4, par.cp, _group_ranks_per_node(par.cp, par.tp, links[2]), links[0],
                                      links[1], eff["network"], lat, count * layers)
        c.notes.append(f"context parallelism {par.cp}, all-to-all (DeepSpeed-Ulysses): Q, K, V and output exchanged "
                       "around attention in forward and backward, not overlapped")
        return
    c.volumes["cp_bytes"] = vol
    c.cp_s = comm.transfer_time(vol, bw, eff["network"], int(steps), lat)


def _data_parallel(c: _Communication, shape: ModelShape, par: Layout, eff: Efficiency,
                   links: tuple[float, float, int], m: int, fwd_s: float, bwd_s: float,
                   memory_bw: float | None = None) -> None:
    """The data-parallel collectives, their times on their links and what of each the compute beside it hides.

    Windows: each micro-batch's forward hides the next layer's weight gather (ZeRO-3); each micro-batch's
    backward hides the next layer's gather and the previous layer's (ZeRO-3) or bucket's (stages 0-2) gradient
    reduction; the once-per-step gradient collectives run in the last micro-batch's backward; the all-gather of
    updated weights after the optimizer step (stages 1-2) is exposed."""
    intra_bw, inter_bw, dpn = links
    mp = par.tp * par.pp
    gathered, weight_elem = shape.gathered_weights(par.zero, par.model_split)
    weights = gathered / mp
    reduce_bytes, reduce_elem = shape.gradient_reduction(par.zero, par.model_split)
    grads = reduce_bytes / mp
    ranks = par.dp * par.cp
    # gradients are reduced over the data- and context-parallel ranks together (they hold the same weights);
    # under expert parallelism the routed experts are split over ep × etp ranks (etp: tp unless --etp) and reduced
    # over the tp·dp·cp/(ep·etp) ranks that hold the same expert shard (Megatron's expert-data-parallel group,
    # its ranks ep·etp apart)
    etp = par.expert_tp
    expert_ranks = par.tp * ranks // (par.ep * etp) if (par.tp * ranks) % (par.ep * etp) == 0 else 0
    experts = par.ep > 1 and expert_ranks >= 1 and (shape.expert_weight_share or shape.expert_grad_share)
    ws, gs = (shape.expert_weight_share, shape.expert_grad_share) if experts else (0.0, 0.0)
    groups = [(weights * (1 - ws), grads * (1 - gs), ranks, _group_ranks_per_node(ranks, par.tp, dpn),
               par.shard_group * par.cp if par.shard_group else None)]
    if experts:
        split = par.tp / (par.ep * etp)  # weights above are per tp rank: per expert shard instead
        groups.append((weights * ws * split, grads * gs * split, expert_ranks,
                       _group_ranks_per_node(expert_ranks, etp * par.ep, dpn), None))
    net = eff["network"]
    times: dict[str, float] = {}
    per_mb: set[str] = set()
    formulas = []
    c.volumes["dp_bytes"] = 0.0
    for w, g, size, per_node, shard in groups:
        v = comm.dp_volume(w, g, size, par.zero, m, weight_elem_bytes=weight_elem,
                           grad_elem_bytes=reduce_elem, zeropp=par.zeropp, dp_per_node=per_node,
                           shard_group=shard)
        c.volumes["dp_bytes"] += v.intra_bytes + v.inter_bytes
        formulas.append(v.formula)
        for k in v.collectives:  # the two groups' collectives of one kind run one after the other
            # across nodes, NCCL runs one ring per NIC the group has in a node (k.node_ranks of them, each GPU
            # with its own inter-node link): the node's share of the ring goes k times as fast, up to NVLink's rate
            bw, lat = (intra_bw, comm.link_latency(eff, True)) if k.inside_node else \
                (min(inter_bw * k.node_ranks, intra_bw), comm.link_latency(eff, False))
            times[k.name] = times.get(k.name, 0.0) + comm.transfer_time(k.nbytes, bw, net, k.steps, lat)
            c.volumes[f"dp_{k.name}_bytes"] = c.volumes.get(f"dp_{k.name}_bytes", 0.0) + k.nbytes
            if k.per_micro_batch:
                per_mb.add(k.name)
    layers = max(1, round((shape.layers or 1) / par.pp))
    f_mb, b_mb = fwd_s / m, bwd_s / m
    exposed = dict.fromkeys(times, 0.0)
    # forward windows: the layer-by-layer weight prefetch
    gf = times.get("weight_gather_forward", 0.0) / m
    exposed["weight_gather_forward"] = m * comm.exposed_under_compute(gf, 0.0, f_mb, layers)[0] if gf else 0.0
    # backward windows: gathers of the next layer, reductions per layer (ZeRO-3) or per bucket (stages 0-2)
    gb = times.get("weight_gather_backward", 0.0) / m
    red_names = [n for n in ("grad_reduce_scatter", "grad_all_reduce", "grad_all_reduce_groups") if n in times]
    red_mb = sum(times[n] / m for n in red_names if n in per_mb)
    red_step = sum(times[n] for n in red_names if n not in per_mb)
    if par.zero >= 3:
        pieces = layers
    else:
        bucket = float(STEP_MODEL.value("communication", "gradient_bucket_bytes")) if par.zero == 0 else \
            float(STEP_MODEL.value("communication", "zero_reduce_bucket_elements")) * reduce_elem
        pieces = max(1, math.ceil(grads / bucket))
    xg, xr = comm.exposed_under_compute(gb, red_mb, b_mb, pieces) if (gb or red_mb) else (0.0, 0.0)
    xg_last, xr_last = comm.exposed_under_compute(gb, red_mb + red_step, b_mb, pieces) if (gb or red_mb or red_step) \
        else (0.0, 0.0)
    if "weight_gather_backward" in times:
        exposed["weight_gather_backward"] = (m - 1) * xg + xg_last
    reduce_total = (m - 1) * red_mb + red_mb + red_step
    reduce_exposed = (m - 1) * xr + xr_last
    if par.grad_reduce == "after-backward":  # nothing of the reduction runs under a backward
        reduce_exposed = reduce_total
    for n in red_names:  # shared in proportion to each collective's time
        exposed[n] = reduce_exposed * times[n] / reduce_total if reduce_total else 0.0
    if "weight_gather_step" in times:
        exposed["weight_gather_step"] = times["weight_gather_step"]
    c.dp_s = sum(times.values())
    c.dp_x = sum(exposed.values())
    if memory_bw and par.zero >= 3:  # memory_bw only for FSDP2, which runs no ZeRO++ (zero_impl_of)
        _fsdp2_copies(c, [(w, g) for w, g, *_ in groups], weight_elem, reduce_elem, m, memory_bw)
    for n, t in times.items():
        c.by_collective[f"dp_{n}_s"] = t
        c.by_collective[f"dp_{n}_exposed_s"] = exposed[n]
    c.notes.append(formulas[0] if not experts else
                   f"dense weights ({100 * (1 - ws):.0f}%): {formulas[0]}; routed experts ({100 * ws:.0f}%, "
                   f"1/{par.ep * etp} of them per device, over the {expert_ranks} expert-data-parallel ranks): "
                   f"{formulas[1]}")
    if par.grad_reduce == "after-backward":
        c.notes.append(_AFTER_BACKWARD)
    else:
        c.notes.append(_OVERLAP_RULE[par.zero].format(layers=layers, pieces=pieces)
                       + ("; the all-reduce across replica groups joins the last micro-batch's gradient reduction"
                          if "grad_all_reduce_groups" in times else ""))


def _fsdp2_copies(c: _Communication, groups: list[tuple[float, float]], weight_elem: float, reduce_elem: float,
                  m: int, memory_bw: float) -> None:
    """FSDP2's two copies on the compute stream (step_model.toml [fsdp2]), per micro-batch: after each of the two
    weight all-gathers (forward, and backward after the forward resharded) the gathered buffer is copied out into the
    parameters (read and write: ``unshard_copy_out_passes`` × the gathered weights), and before the gradient
    reduce-scatter the unsharded gradients, in the working weights' dtype, are copied into the reduce-dtype buffer
    (``reduce_copy_in_passes`` × elements × (their bytes + the reduce dtype's)). ``groups``: (gathered weights,
    gradients in the reduce dtype) per device, dense and routed experts apart."""
    out_passes = float(STEP_MODEL.value("fsdp2", "unshard_copy_out_passes"))
    in_passes = float(STEP_MODEL.value("fsdp2", "reduce_copy_in_passes"))
    copy_out = out_passes * sum(w for w, _ in groups)
    copy_in = in_passes * sum(g / reduce_elem for _, g in groups) * (weight_elem + reduce_elem)
    c.fsdp_copy_fwd_s = m * copy_out / memory_bw
    c.fsdp_copy_bwd_s = m * (copy_out + copy_in) / memory_bw
    c.volumes["fsdp_copy_bytes"] = m * (2 * copy_out + copy_in)
    c.notes.append("ZeRO-3 as PyTorch's FSDP2 (--zero-impl fsdp2; auto's choice on PyTorch's eager or compiled "
                   "stack) copies on the compute stream, per micro-batch: each weight "
                   f"all-gather's buffer into the parameters ({si(copy_out, 'B')} read and written, forward and "
                   f"backward) and the gradients into the reduce-scatter buffer ({si(copy_in, 'B')}): "
                   f"{c.fsdp_copy_fwd_s + c.fsdp_copy_bwd_s:.3g} s per step at the memory bandwidth, nothing hides "
                   "them (DeepSpeed's ZeRO-3 and Megatron gather into and reduce from buffers in place: "
                   "--zero-impl deepspeed pays neither copy)")


_AFTER_BACKWARD = ("no gradient overlap (--grad-reduce after-backward): the gradient reduction runs after the last "
                   "micro-batch's backward, all of it exposed (Megatron-LM's default: its DDP reduces the gradient "
                   "buffer after the pipeline's last backward unless --overlap-grad-reduce is given)")

_OVERLAP_RULE = {
    0: "overlap: the gradient all-reduce runs bucket by bucket ({pieces} bucket(s) of PyTorch DDP's 25 MiB) under "
       "the last micro-batch's backward; the last bucket, and what does not fit under the backward, is exposed",
    1: "overlap: the gradient reduce-scatter runs bucket by bucket ({pieces} bucket(s) of DeepSpeed's 5e8 "
       "elements) under the last micro-batch's backward (the last bucket exposed); the all-gather of the updated "
       "weights after the optimizer step is exposed",
    2: "overlap: the gradient reduce-scatter runs bucket by bucket ({pieces} bucket(s) of DeepSpeed's 5e8 "
       "elements) under each micro-batch's backward (the last bucket exposed); the all-gather of the updated "
       "weights after the optimizer step is exposed",
    3: "overlap: each of the {layers} layers' weights is gathered while the layer before computes (forward and "
       "backward; the first gather exposed, and any layer whose gather outlasts its compute), each layer's gradients "
       "reduce-scattered while the next computes (the last exposed)",
}


def _bottleneck(breakdown: dict[str, float], comm_d: dict[str, float], host_wait_s: float = 0.0) -> str:
    key = max(breakdown, key=lambda k: breakdown[k])
    if key == "overhead_s" and host_wait_s > 0:
        return "host dispatch (eager)"
    if key == "communication_s":
        parts = {"tensor-parallel all-reduces": comm_d["tp_exposed_s"], "pipeline sends": comm_d["pp_exposed_s"],
                 "expert all-to-all": comm_d["ep_exposed_s"], "data-parallel gradient sync": comm_d["dp_exposed_s"],
                 "context-parallel exchange": comm_d.get("cp_exposed_s", 0.0),
                 "host offload transfers": comm_d["offload_s"] + comm_d.get("activation_offload_exposed_s", 0.0)}
        return "communication (" + max(parts, key=lambda k: parts[k]) + ")"
    return {"compute_s": "compute", "memory_s": "memory bandwidth", "overhead_s": "per-op overhead",
            "bubble_s": "pipeline bubble"}[key]
