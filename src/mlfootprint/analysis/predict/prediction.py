"""Prediction: step time, MFU/HFU, time to train, serving latency, MFU from a measured throughput.

    from mlfootprint.models import resolve
    from mlfootprint.trace.run import trace
    from mlfootprint.analysis.predict.prediction import predict_step, time_to_train
    wl = Workload(batch=8, seq=1024, mode="train")
    spec = resolve("gpt2"); tr = trace(spec, wl, checkpoint_early_stop=False)
    p = predict_step(spec, wl, tr, "a100-80gb")
    p.step_s, p.mfu, p.breakdown

Every figure here is ``modeled``: a roofline over the traced operators with the
efficiency factors of ``data/efficiency.toml`` (listed in ``assumptions``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import UserError
from ...core.validate import number
from ...hardware.catalog import Device, get_device
from . import comm, host
from .efficiency import Efficiency, efficiency_for, is_measured
from .inference import decode_model, decode_token, generate_time
from .roofline import Profile, build_profile
from .shape import global_batch, model_shape, parallel_from
from .fusion import FusionSummary
from .step import RANK_ORDER, ModelShape, StepTime, communication_rule, gemm_scale, step_time
from ...workload import Layout
from ...core.units import plain_number

__all__ = [
    "StepPrediction", "predict_step", "time_to_train", "devices_for_deadline", "inference_latency",
    "mfu_from_throughput", "palm_flops_per_token", "resolve_device", "is_measured_device",
]


def resolve_device(device: str | Device) -> Device:
    return device if isinstance(device, Device) else get_device(device)


def is_measured_device(device: Device) -> bool:
    """Whether the device's peaks were measured here (a calibrated profile), not published figures."""
    return is_measured(device)


@dataclass
class StepPrediction:
    """One training (or inference) step on a layout of devices; every figure modeled."""

    step_s: float
    breakdown: dict[str, float]  # compute_s, memory_s, overhead_s, communication_s, bubble_s (sum = step_s)
    tokens_per_step: int
    samples_per_step: int
    tokens_per_s: float
    samples_per_s: float
    mfu: float
    hfu: float
    model_flops: float  # per step, all devices (the MFU numerator)
    hardware_flops: float  # model + recomputation (the HFU numerator)
    devices: int
    layout: Layout
    device: Device
    peak_flops: float
    peak_dtype: str
    token_unit: str = "tokens"
    bottleneck: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    communication: dict[str, float] = field(default_factory=dict)
    volumes: dict[str, float] = field(default_factory=dict)
    basis: str = "roofline"  # roofline | given mfu | given hfu | given flops per device
    efficiency: dict[str, float] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    provenance: str = "modeled"
    fusion: FusionSummary | None = None  # how the operators were grouped into kernels
    host_wait_s: float = 0.0  # eager on a GPU: what the step waits on the host, part of breakdown's overhead_s
    gemm_efficiency: float | None = None  # FLOP-weighted achieved/peak of the size-rated GEMMs (None: flat factor)

    @property
    def achieved_flops_per_device(self) -> float:
        return self.model_flops / self.step_s / self.devices

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_s": self.step_s, "tokens_per_s": self.tokens_per_s, "samples_per_s": self.samples_per_s,
            "mfu": self.mfu, "hfu": self.hfu, "model_flops_per_step": self.model_flops,
            "hardware_flops_per_step": self.hardware_flops, "devices": self.devices, "hardware": self.device.id,
            "peak_flop_per_s": self.peak_flops, "peak_dtype": self.peak_dtype, "layout": self.layout.label(),
            "micro_batch": self.layout.micro_batch, "bottleneck": self.bottleneck, "basis": self.basis,
            "breakdown": dict(self.breakdown), "phases": dict(self.phases), "communication": dict(self.communication),
            "provenance": self.provenance,
        }


# --------------------------------------------------------------------------- step


def activation_offload_bytes(spec: Any, wl: Any, trace: Any, par: Layout) -> float:
    """Bytes one micro-batch of one device sends to the host under activation offload (and fetches back in its
    backward): the memory model's figure for the layout; 0 without ``offload_activations``."""
    if not (wl.training and par.offload_activations):
        return 0.0
    from ..memory.model import memory_model

    lay = Layout.from_workload(wl).replace(dp=par.dp, tp=par.tp, pp=par.pp, micro_batch=par.micro_batch,
                                           recompute=par.recompute, offload_activations=par.offload_activations)
    batch = trace.workload.batch
    traced = wl if batch == wl.batch else wl.with_changes(given=wl.given, batch=batch, micro_batch=None)
    est = memory_model(spec, traced, trace).per_device(lay)
    return est.activation_offload_traffic_bytes / 2 / lay.grad_accum


def _utilization_inputs(mfu: float | None, hfu: float | None, flops_per_device: float | None) -> str | None:
    given = [n for n, v in (("--mfu", mfu), ("--hfu", hfu), ("--flops-per-device", flops_per_device)) if v is not None]
    if len(given) > 1:
        raise UserError(f"give one of --mfu, --hfu, --flops-per-device, not {' and '.join(given)}")
    for name, v in (("--mfu", mfu), ("--hfu", hfu)):
        if v is not None and not (0 < v <= 1):
            raise UserError(f"{name} is a fraction of the peak between 0 and 1 (e.g. 0.45), got {v:g}")
    number("--flops-per-device", flops_per_device)  # finite and > 0 (nan and inf are not a rate)
    return given[0] if given else None


def prepare(spec: Any, wl: Any, trace: Any, device: str | Device, efficiency: Any = None
            ) -> tuple[Device, Efficiency, Profile, ModelShape]:
    dev = resolve_device(device)
    eff = efficiency_for(dev, efficiency)
    profile = build_profile(trace, dev, eff, wl.precision, getattr(wl, "fusion", None))
    return dev, eff, profile, model_shape(spec, wl, trace, global_batch(wl)[0])


def predict_step(spec: Any, wl: Any, trace: Any, device: str | Device, *, efficiency: Any = None,
                 mfu: float | None = None, hfu: float | None = None, flops_per_device: float | None = None,
                 layout: Layout | None = None) -> StepPrediction:
    """Time of one step of ``wl`` (its batch is the global batch) on ``wl``'s layout of ``device``.

    ``mfu`` / ``hfu`` / ``flops_per_device`` replace the roofline by a given
    utilization (what a paper reports); the step time then follows from the
    traced FLOPs. ``efficiency`` overrides factors ('matmul=0.6,…' or a dict).
    """
    given = _utilization_inputs(mfu, hfu, flops_per_device)
    dev, eff, profile, shape = prepare(spec, wl, trace, device, efficiency)
    par = layout or parallel_from(wl)
    st = step_time(profile, shape, par, dev, eff, activation_offload_bytes(spec, wl, trace, par))
    return _prediction(spec, wl, trace, dev, eff, profile, shape, par, st, given, mfu, hfu, flops_per_device)


def fastest(spec: Any, wl: Any, trace: Any, device: str | Device, layouts: list[Layout], *,
            efficiency: Any = None) -> tuple[Layout, float]:
    """The layout of ``layouts`` whose step of ``wl`` is predicted fastest from ``trace`` (one profile for all),
    and its step time; the first of equals wins."""
    if not layouts:
        raise ValueError("fastest needs at least one layout")
    dev, eff, profile, shape = prepare(spec, wl, trace, device, efficiency)
    timed = [(step_time(profile, shape, par, dev, eff, activation_offload_bytes(spec, wl, trace, par)).step_s, i)
             for i, par in enumerate(layouts)]
    step_s, i = min(timed)
    return layouts[i], step_s


def _flops(trace: Any) -> tuple[float, float]:
    model = recompute = 0.0
    for r in trace.records:
        if r.phase in ("forward", "backward"):
            model += r.model_flops
            if r.phase == "backward":
                recompute += r.recompute_flops
        elif r.phase == "recompute":
            recompute += r.model_flops
    return model, recompute


def _prediction(spec: Any, wl: Any, trace: Any, dev: Device, eff: Efficiency, profile: Profile, shape: ModelShape,
                par: Layout, st: StepTime, given: str | None, mfu: float | None, hfu: float | None,
                flops_per_device: float | None) -> StepPrediction:
    model, recompute = _flops(trace)
    model, recompute = model * st.scale, recompute * st.scale  # the step covers scale × the traced batch
    hardware = model + recompute + st.hardware_extra_flops
    n = par.devices
    peak = profile.peak_flops
    step, breakdown, basis = st.step_s, dict(st.breakdown), "roofline"
    if given == "--mfu":
        step, basis = model / (n * peak * mfu), f"given MFU {mfu:g}"
    elif given == "--hfu":
        step, basis = hardware / (n * peak * hfu), f"given HFU {hfu:g}"
    elif given == "--flops-per-device":
        step = hardware / (n * flops_per_device)
        basis = f"given {flops_per_device:.4g} FLOP/s per device (hardware FLOPs, recomputation included)"
    if given:
        breakdown = {}
    tokens = int(round(trace.tokens * st.scale))
    a = _assumptions(wl, dev, eff, profile, shape, par, st, given, basis)
    note = global_batch(wl)[1]
    if note:
        a.insert(0, note)
    return StepPrediction(
        step_s=step, breakdown=breakdown, tokens_per_step=tokens, samples_per_step=shape.batch,
        tokens_per_s=tokens / step, samples_per_s=shape.batch / step,
        mfu=model / (step * n * peak), hfu=hardware / (step * n * peak), model_flops=model, hardware_flops=hardware,
        devices=n, layout=par, device=dev, peak_flops=peak, peak_dtype=profile.peak_dtype,
        token_unit=trace.token_unit,
        bottleneck=st.bottleneck if not given else "given utilization", phases=dict(st.phases) if not given else {},
        communication=dict(st.communication) if not given else {}, volumes=dict(st.volumes), basis=basis,
        efficiency=eff.to_dict(), assumptions=a, fusion=profile.fusion if not given else None,
        gemm_efficiency=profile.gemm_efficiency(gemm_scale(shape, par)) if not given else None,
        host_wait_s=st.host_wait_s if not given else 0.0,
    )


def _assumptions(wl: Any, dev: Device, eff: Efficiency, profile: Profile, shape: ModelShape, par: Layout,
                 st: StepTime, given: str | None, basis: str) -> list[str]:
    out: list[str] = []
    if given:
        out.append(f"step time from a given utilization ({basis}) and the traced FLOPs, not from the roofline")
        out.append(f"MFU/HFU denominator: {dev.id} dense {profile.peak_dtype} peak {profile.peak_flops / 1e12:.4g} "
                   f"TFLOP/s ({dev.source_of(f'peak_flops.{profile.peak_dtype}')})")
        return out
    out.append("step time: per-operator roofline max(FLOPs / (peak × factor), bytes / (bandwidth × factor)) over the "
               "traced operators, plus a per-operator overhead")
    out.append(f"MFU/HFU denominator: {dev.id} dense {profile.peak_dtype} peak {profile.peak_flops / 1e12:.4g} TFLOP/s "
               f"({dev.source_of(f'peak_flops.{profile.peak_dtype}')})")
    used = ["matmul", "attention", "conv", "vector", "memory_bandwidth"]
    if par.devices > 1:
        used.append("network")
        flat = [f"collective_latency_{k}_s" for k in ("intra", "inter")
                if isinstance(comm.link_latency(eff, k == "intra"), float)]
        used += flat
        if len(flat) < 2:
            out.append(comm.describe_latency())
    if par.offload != "none" or par.offload_activations:
        used.append("host_link")
    if dev.per_op_overhead_s is None:
        used.append("per_op_overhead_tpu_s" if dev.kind in ("tpu", "accelerator") else "per_op_overhead_gpu_s")
    else:
        out.append(f"per-op overhead {dev.per_op_overhead_s * 1e6:.3g} µs ({profile.overhead_source})")
    if profile.gemm is not None:
        k = gemm_scale(shape, par)
        out.append(f"16-bit GEMMs rated by size, not by the flat matmul factor: achieved/peak interpolated in "
                   f"log2(FLOPs per call) from GEMM microbenchmarks (each table's source below), at each call's "
                   f"size on one device for one micro-batch (the traced call × {k:.4g}); FLOP-weighted mean "
                   f"{profile.gemm_efficiency(k):.3f} of the peak ({profile.gemm.how}); --efficiency matmul=X "
                   "sets a flat factor instead")
        used = [u for u in used if u != "matmul"] + (["matmul"] if profile.peak_dtype not in ("bf16", "fp16") else [])
    if profile.attention is not None and profile.attention_forward.ops == 0:
        used.remove("attention")  # all attention is fused and rated by its class (a line below says how)
    out.append(profile.fusion.describe())
    if profile.host_modelled:
        wait = st.host_wait_s
        out.append(f"eager host dispatch: the step takes max(host time, kernels + per-op gaps); the host's time is each "
                   f"operator's dispatch cost by family, the modules each forward enters and the optimizer's per "
                   f"parameter, as measured on the reference host ({host.reference_host()}; analysis/predict/data/"
                   f"host_dispatch.toml)"
                   + (f", × {profile.host_scale:.3g} for this machine's host (its calibrated per-op time against the "
                      "reference host's); " if profile.host_scale != 1.0 else
                      ", not this machine's or the run's: a faster host dispatches faster; ")
                   + (f"here the GPU waits {plain_number(wait * 1e3, 3)} ms on the host per step" if wait > 0 else
                      "here the kernels take longer, so the host is hidden")
                   + "; Python work of the model's code between operators is not counted")
    out.extend(eff.describe(used))
    out.extend(profile.fallbacks)
    if par.devices > 1:
        split = ("sequence parallelism under tensor parallelism" if par.sequence_parallel or par.tp == 1 else
                 "no sequence parallelism: the norms, the dropouts after the row-parallel linears and the residual "
                 f"stream run whole on each of the {par.tp} tensor-parallel ranks")
        out.append(f"work splits evenly over the dp × tp × cp devices ({split}); "
                   "pipeline stages by their blocks, the head and loss on the last; the slowest stage sets the step")
        out.append(f"rank order {RANK_ORDER}; a group uses intra-node bandwidth when it fits in one node of "
                   f"{dev.devices_per_node or 1} devices, inter-node bandwidth otherwise; a data-parallel group with "
                   "k ranks in each node crosses the nodes on k links at once (NCCL runs one ring per NIC), up to "
                   "the intra-node bandwidth")
    if shape.training and par.dp > 1:
        rule = communication_rule(wl.precision_info, wl.grad_reduce_at(par.zero, par.model_split),
                                  auto=wl.grad_reduce_dtype == "auto",
                                  weights=wl.mixed_weights_at(par.zero, par.model_split),
                                  fp8_weights=wl.training and wl.fp8_weights)
        if par.zeropp and par.zero >= 3:
            rule += ("; under ZeRO++ the forward weight gathers move int8 (qwZ, 1 B per element), the backward ones "
                     "stay inside the node (hpZ) and the gradients move int4 (qgZ, 0.5 B per element)")
        if par.zero >= 3 and st.zero_impl == "deepspeed":
            rule += ("; ZeRO-3 as DeepSpeed and Megatron run it, gathering into and reducing from buffers in place "
                     "(--zero-impl fsdp2 for PyTorch's FSDP2, which copies them on the compute stream)")
        out.append(rule)
    if par.tp > 1 and not par.tp_comm_overlap:
        if shape.training and st.tp_backward == "overlap":
            out.append("tensor-parallel collectives exposed but the backward's column-parallel ones (no TP-comm "
                       "overlap; --tp-comm-overlap hides them all under the GEMMs)")
        else:
            out.append("tensor-parallel collectives exposed (no TP-comm overlap; --tp-comm-overlap hides them under "
                       "the GEMMs)" + ("; --tp-backward exposed: the backward's too" if shape.training else ""))
    if par.pp > 1 and not (par.pp_comm_overlap and par.vp > 1):
        out.append("pipeline sends and receives exposed (blocking p2p between micro-batches; with --vp > 1, "
                   "--pp-comm-overlap hides the interleaved schedule's steady-state sends)")
    if par.recompute != shape.trace_recompute and shape.training:
        out.append(f"recompute={par.recompute} modeled from the traced forward (full: every block's forward again; "
                   "selective: the unfused attention products again; nothing with fused SDPA/flash attention)")
    out.extend(st.notes)
    return out


# --------------------------------------------------------------------------- training time


@dataclass
class TrainingTime:
    """Training on ``tokens`` tokens (or samples) at a predicted step."""

    tokens: float
    steps: float
    seconds: float
    device_hours: float
    model_flops: float  # the traced model FLOPs per token × tokens
    hardware_flops: float
    flops_6nd: float | None  # 6·N·D with N the (active) parameters, when given


def time_to_train(pred: StepPrediction, tokens: float, params: int | None = None) -> TrainingTime:
    """Steps, seconds, device-hours and total FLOPs to train on ``tokens`` tokens (or samples)."""
    if tokens <= 0:
        raise UserError(f"--tokens must be positive, got {tokens:g}")
    steps = tokens / pred.tokens_per_step
    seconds = steps * pred.step_s
    return TrainingTime(tokens=tokens, steps=steps, seconds=seconds, device_hours=seconds * pred.devices / 3600.0,
                        model_flops=pred.model_flops / pred.tokens_per_step * tokens,
                        hardware_flops=pred.hardware_flops / pred.tokens_per_step * tokens,
                        flops_6nd=6.0 * params * tokens if params else None)


@dataclass
class DeadlineDevices:
    deadline_s: float
    devices: int  # rounded up to whole model-parallel groups (tp × pp)
    exact: float
    mfu: float  # the MFU assumed (given, or the predicted one)


def devices_for_deadline(pred: StepPrediction, tokens: float, deadline_s: float,
                         mfu: float | None = None) -> DeadlineDevices:
    """Devices needed to train on ``tokens`` within ``deadline_s`` at ``mfu`` (default: the predicted MFU).

    devices = model FLOPs / (deadline × peak × MFU), rounded up to whole model-parallel groups (tp × pp).
    """
    u = mfu if mfu is not None else pred.mfu
    flops = pred.model_flops / pred.tokens_per_step * tokens
    raw = flops / (deadline_s * pred.peak_flops * u)
    group = pred.layout.tp * pred.layout.pp
    return DeadlineDevices(deadline_s, int(math.ceil(raw / group) * group), raw, u)


# --------------------------------------------------------------------------- serving


@dataclass
class DecodeLatency:
    batch: int  # sequences decoded together on one model replica
    context: int
    token_s: float  # one decode step
    tokens_per_s: float  # all replicas
    bytes_per_token_step: float
    bound: str  # "memory bandwidth" | "compute"


@dataclass
class GenerateLatency:
    tokens: int  # new tokens per sequence
    total_s: float  # prefill + decode steps
    tokens_per_s: float


@dataclass
class ServingLatency:
    prefill_s: float
    prefill_tokens_per_s: float
    decode: DecodeLatency | None = None  # None: no decode model for this architecture
    generate: GenerateLatency | None = None


def inference_latency(spec: Any, wl: Any, trace: Any, device: str | Device, *, efficiency: Any = None,
                      batch: int | None = None, context: int | None = None, new_tokens: int | None = None
                      ) -> ServingLatency:
    """Prefill latency (the traced forward), per-token decode latency and throughput at a batch size.

    ``batch`` (sequences decoded together on one model replica) defaults to the workload's global batch
    over its data-parallel replicas, ``context`` to its sequence length,
    ``new_tokens`` to ``wl.gen_tokens`` in generate mode (none otherwise).
    """
    dev, eff, profile, shape = prepare(spec, wl, trace, device, efficiency)
    par = parallel_from(wl)
    if wl.training:
        raise UserError("serving latency needs --mode inference or --mode generate")
    st = step_time(profile, shape, par, dev, eff)
    out = ServingLatency(prefill_s=st.step_s, prefill_tokens_per_s=trace.tokens * st.scale / st.step_s)
    dm = decode_model(spec, wl, trace)
    if dm is None:
        return out
    b = batch or max(1, shape.batch // par.dp)  # sequences per model replica
    c = context or int(shape.tokens_per_sample or 1)
    d = decode_token(dm, profile, par, dev, eff, b, c)
    replicas = par.dp
    # what the token waits on most: the weights and cache streamed, the matmuls, or the operators' launches
    parts = {"memory bandwidth": d.memory_s, "compute": d.compute_s, "per-op overhead": d.overhead_s}
    out.decode = DecodeLatency(batch=b, context=c, token_s=d.token_s, tokens_per_s=b * replicas / d.token_s,
                               bytes_per_token_step=d.bytes * par.tp * par.pp,
                               bound="host dispatch (eager)" if d.host_wait_s > 0 else max(parts, key=parts.get))
    g = new_tokens if new_tokens is not None else (wl.gen_tokens if wl.mode == "generate" else None)
    if g:
        total = st.step_s + generate_time(dm, profile, par, dev, eff, b, c, g)
        out.generate = GenerateLatency(tokens=g, total_s=total, tokens_per_s=b * replicas * g / total)
    return out


# --------------------------------------------------------------------------- MFU from a throughput


def palm_flops_per_token(params: float, layers: int, heads: int, head_dim: int, seq: int) -> float:
    """Training model FLOPs per token, PaLM appendix B: 6N + 12·L·H·Q·T (attention counted as the full square)."""
    return 6.0 * params + 12.0 * layers * heads * head_dim * seq


@dataclass
class Utilization:
    """MFU and HFU of a measured throughput."""

    model_flops_per_token: float
    hardware_flops_per_token: float
    tokens_per_s: float
    devices: int
    peak_flop_per_s: float
    achieved_flop_per_s: float  # all devices
    achieved_per_device_flop_per_s: float
    mfu: float
    hfu: float


def mfu_from_throughput(model_flops_per_token: float, tokens_per_s: float, devices: int, peak_flops: float,
                        hardware_flops_per_token: float | None = None) -> Utilization:
    """MFU = model FLOPs per token × tokens/s / (devices × peak); HFU the same with hardware FLOPs."""
    if tokens_per_s <= 0:
        raise UserError(f"the throughput must be positive, got {tokens_per_s:g} tokens/s")
    if devices < 1:
        raise UserError(f"--devices must be a positive whole number, got {devices}")
    achieved = model_flops_per_token * tokens_per_s
    hw = hardware_flops_per_token if hardware_flops_per_token is not None else model_flops_per_token
    return Utilization(model_flops_per_token=model_flops_per_token, hardware_flops_per_token=hw,
                       tokens_per_s=tokens_per_s, devices=devices, peak_flop_per_s=peak_flops,
                       achieved_flop_per_s=achieved, achieved_per_device_flop_per_s=achieved / devices,
                       mfu=achieved / (devices * peak_flops), hfu=hw * tokens_per_s / (devices * peak_flops))
