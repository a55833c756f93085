"""Report sections more than one verb writes: memory, the predicted time, and the footprint of that time.

Each function takes typed results of the analyses and writes one section with its provenance and the
assumptions that moved its figures.
"""
from __future__ import annotations

from typing import Any

from ..analysis.footprint import compute_footprint
from ..analysis.footprint.result import FootprintResult
from ..analysis.memory import methods
from ..core.errors import UserError, suggest
from ..analysis.memory.model import MemoryEstimate
from ..analysis.predict.prediction import (StepPrediction, devices_for_deadline, inference_latency, is_measured_device,
                                    time_to_train)
from ..report.schema import Report
from ..report.sections import FitSuggestion, FootprintInput, FootprintSection, MemorySection, TimeSection
from ..workload import Workload
from ..core.units import plain_number

# ------------------------------------------------------------------------------------------ memory


def add_memory(rep: Report, est: MemoryEstimate, wl: Workload, **extra: Any) -> None:
    """The memory section of one estimate (``extra``: device_source, max_batch, suggestions, ...)."""
    if extra.get("suggestions"):
        extra["suggestions"] = [FitSuggestion(**s) for s in extra["suggestions"]]
    d = est.to_dict()
    section = MemorySection(
        weights_bytes=d["weights_bytes"], gradients_bytes=d["gradients_bytes"], optimizer_bytes=d["optimizer_bytes"],
        activations_bytes=d["activations_bytes"], kv_cache_bytes=d["kv_cache_bytes"], other_bytes=d["other_bytes"],
        peak_bytes=d["peak_bytes"], host_bytes=d["host_bytes"], nvme_bytes=d["nvme_bytes"],
        device_bytes=d.get("device_bytes"), fits=d.get("fits"), headroom_bytes=d.get("headroom_bytes"),
        peak_phase=d["peak_phase"], pipeline_stage=d.get("pipeline_stage"), at_peak=d["at_peak"],
        breakdown=d["breakdown"], layout=d.get("layout"),
        **{k: d[k] for k in ("offload_activations", "activations_host_bytes", "activations_offloaded_bytes",
                             "activation_offload_traffic_bytes") if k in d},
        weights_compression_vs_bf16_ratio=est.breakdown.get("weights_compression_vs_bf16_ratio") or None,
        quantized_compression_vs_bf16_ratio=est.breakdown.get("quantized_compression_vs_bf16_ratio") or None,
        **extra)
    data = section.to_dict()
    rep.add(section, {k: v for k, v in est.provenance.items() if k in data})
    workload = rep.get("workload")
    lay = est.layout
    if workload is not None and lay is not None and wl.training and "grad_accum" not in wl.given:
        # the micro-batches per step of the layout sized (the planner's, or the memory model's choice), not the
        # workload's default of 1
        workload["grad_accum"] = lay.grad_accum
    _memory_assumptions(rep, est, wl)


def _memory_assumptions(rep: Report, est: MemoryEstimate, wl: Workload) -> None:
    lay = est.layout
    if wl.training:
        rep.assume("memory: the steady-state training step (step ≥ 2): optimizer states exist for the whole step; "
                   "gradients are freed between steps (zero_grad(set_to_none=True), PyTorch's default) and grow "
                   "during backward, unless accumulation, pipelining, ZeRO-2/3 or offload keep them for the whole step")
        if wl.mixed:
            rep.assume(_mixed_states_rule(wl, lay))
        if wl.optimizer == "adam-8bit":
            rep.assume("memory: adam-8bit as bitsandbytes keeps it: two 8-bit states plus one fp32 absmax per block of "
                       f"{methods.value('adam_8bit', 'block_size')} values each; tensors under "
                       f"{methods.value('adam_8bit', 'min_8bit_size'):,} elements keep 32-bit states")
        if wl.optimizer == "adafactor":
            rep.assume("memory: Adafactor keeps the factored second moment (row and column statistics of each matrix, "
                       "a full vector for 1-D parameters) and no first moment (torch.optim.Adafactor)")
        if wl.optimizer == "zo-sgd":
            rep.assume("memory: zo-sgd (MeZO, Malladi et al. 2023): two forward passes without autograd, no gradients, "
                       "no optimizer states; the perturbation z is regenerated from a seed, one tensor at a time")
    if wl.quant != "none":
        if wl.lora_rank:
            dq = "double-quantized absmax (8-bit, one fp32 constant per 256 blocks), as in the QLoRA paper" \
                if methods.value("qlora", "double_quant") else "fp32 absmax per block"
            rep.assume(f"memory: QLoRA base weights in 4-bit NF4, blocks of {methods.value('qlora', 'block_size')} with "
                       f"{dq}; linear layers inside the blocks only (embeddings, head, norms stay 16-bit)")
        else:
            g = methods.value("quant", "group_size")
            rep.assume(f"memory: {wl.quant} weight-only quantization of the linear layers inside the blocks: "
                       + (f"symmetric, one fp16 scale per group of {g} (GPTQ/AWQ default); " if wl.quant != "fp8"
                          else "one fp32 scale per tensor; ")
                       + "embeddings, head and norms stay in the compute dtype")
    if lay is not None and (lay.tp > 1 or lay.pp > 1):
        sp = lay.tp > 1 and lay.sequence_parallel
        rep.assume("memory: tensor parallelism divides every matrix by --tp and the activations between column- and "
                   "row-parallel linears (Korthikanti et al. 2022); norms, residual stream and embeddings outputs are "
                   + ("split over the tensor-parallel ranks too (sequence parallelism)" if sp else
                      "replicated (no sequence parallelism)")
                   + "; pipeline stages hold min(pp − stage, grad_accum) micro-batches (1F1B)")
    if wl.mode == "generate":
        cache = wl.precision_info.compute_dtype  # the cache is kept in the compute dtype (fp32 at --precision fp32)
        rep.assume("memory: KV cache = 2 · layers · kv_heads · head_dim · (prompt + generated tokens) · batch · bytes "
                   f"({cache} cache, {wl.precision_info.compute_bytes} bytes an element; grouped-query aware); prefill "
                   "keeps only the last position's logits")
    rep.assume(f"memory: other_bytes = {est.other_bytes:,} bytes of framework overhead per device (CUDA context, "
               "workspaces, allocator fragmentation), an assumption: override with --other-bytes"
               + ("" if wl.other_bytes is not None else " (default in analysis/memory/data/methods.toml [framework])"),
               key=wl.other_bytes is None and rep.verb == "memory")
    rep.assume("memory: activations come from the traced step's allocation timeline (every tensor the step "
               "creates and frees, real dtypes and sizes); storages a kernel allocates internally outside PyTorch's "
               "allocator (cuDNN/oneDNN workspaces) are not seen")
    for note in est.assumptions:
        # on the memory card when the stack's fused chains moved the activations (eager PyTorch keeps more)
        rep.assume("memory: " + note, key=rep.verb == "memory" and note == est.stack_note)


# ------------------------------------------------------------------------------------------ time

_MODELED_TIME = ("step_s", "tokens_per_s", "samples_per_s", "mfu", "hfu", "train_s", "device_hours", "prefill_s",
                 "decode_token_s", "decode_tokens_per_s", "generate_s", "generate_tokens_per_s", "devices_for_deadline",
                 "train_steps", "achieved_per_device_flop_per_s", "fusion", "fusion_counts", "gemm_efficiency")


def _recomputation_of_the_layout(rep: Report, pred: StepPrediction) -> None:
    """The flops section's recomputation as the step runs it: the count traced the step as given, while the layout
    predicted may recompute what that trace did not (selective recomputation, modelled; a recomputation the
    planner chose, traced on the micro-batch). HFU's numerator and the flops section then agree."""
    flops = rep.get("flops")
    if not flops or flops.get("hardware") is None or not pred.hardware_flops:
        return
    extra = round(pred.hardware_flops) - int(flops["hardware"])
    if abs(extra) <= 1e-6 * pred.hardware_flops:  # the same step (rounding of the scaled micro-batch trace)
        return
    flops["recompute"] = int(flops["recompute"]) + extra
    flops["hardware"] = int(flops["hardware"]) + extra
    flops["total"] = int(flops["total"]) + extra
    for key in ("recompute", "hardware", "total"):
        rep.mark(f"flops.{key}", "modeled")
    rep.assume(f"flops.recompute, hardware and total include the recomputation of the layout predicted "
               f"({pred.layout.recompute}: {extra / 1e12:+,.4g} TFLOP per step over the trace counted), as HFU does")


def check_training_tokens(wl: Workload) -> None:
    """--tokens is a training run's length: under inference or generation there is no run to time (the footprint of
    serving is ``mlfootprint footprint --inferences N --energy-per-inference-j J``)."""
    if wl.tokens and not wl.training:
        raise UserError(f"--tokens is the number of tokens a training run trains on, and this is --mode {wl.mode}; "
                        "use --mode train for time to train, or 'mlfootprint footprint --inferences N "
                        "--energy-per-inference-j J' for serving")


def add_time(rep: Report, pred: StepPrediction, spec: Any, wl: Workload, trace: Any, *, efficiency: Any = None,
             active_params: int | None = None, deadline_s: float | None = None,
             deadline_mfu: float | None = None) -> TimeSection:
    """The time section of one step prediction: throughput, MFU/HFU, serving latency, time to train."""
    section = TimeSection(
        hardware=pred.device.id, devices=pred.devices, layout=pred.layout.label(), step_s=pred.step_s,
        tokens_per_step=pred.tokens_per_step, samples_per_step=pred.samples_per_step,
        tokens_per_s=pred.tokens_per_s, samples_per_s=pred.samples_per_s, mfu=pred.mfu, hfu=pred.hfu,
        achieved_per_device_flop_per_s=pred.achieved_flops_per_device, peak_flop_per_s=pred.peak_flops,
        peak_dtype=pred.peak_dtype, basis=pred.basis, bottleneck=pred.bottleneck,
        token_unit=pred.token_unit if pred.token_unit != "tokens" else None,
        breakdown=dict(pred.breakdown) or None, phases=dict(pred.phases) or None,
        fusion=pred.fusion.mode if pred.fusion else None,
        fusion_counts=_fusion_counts(pred) or None, gemm_efficiency=pred.gemm_efficiency,
        communication={k: v for k, v in pred.communication.items() if v} or None,
        communication_volume=dict(pred.volumes) or None)
    notes = list(pred.assumptions)
    if wl.training:
        _recomputation_of_the_layout(rep, pred)
    if not wl.training:
        notes += _serving(section, spec, wl, trace, pred, efficiency)
    if wl.tokens:
        notes += _training_run(section, pred, float(wl.tokens), active_params, deadline_s, deadline_mfu)
    if pred.basis == "roofline":
        eff = pred.efficiency
        matmul = (f"16-bit GEMMs {pred.gemm_efficiency:.2f} by size" if pred.gemm_efficiency is not None
                  else f"matmul {eff.get('matmul', 0):g}")
        fusion = f"kernel fusion: {pred.fusion.mode}; " if pred.fusion else ""
        rep.assume(f"step time: a roofline over the traced operators ({fusion}change it with --fusion) at assumed "
                   f"efficiencies ({matmul}, memory bandwidth {eff.get('memory_bandwidth', 0):g} of the peaks"
                   + (f", network {eff.get('network', 0):g}" if pred.devices > 1 else "")
                   + "); change them with --efficiency", key=True)
    data = rep.add(section)
    for key in data:
        if key in _MODELED_TIME or key.startswith("decode_") or key.startswith("prefill"):
            rep.mark(f"time.{key}", "modeled")
    for key in ("train_flops", "train_hardware_flops"):
        if key in data:
            rep.mark(f"time.{key}", "counted")
    if "train_flops_6nd" in data:
        rep.mark("time.train_flops_6nd", "modeled")
    rep.mark("time.peak_flop_per_s", "measured" if is_measured_device(pred.device) else "published")
    for n in notes:
        rep.assume(n)
    return section


def _fusion_counts(pred: StepPrediction) -> dict[str, float]:
    """What kernel fusion did in the traced step: operators and memory-traffic bytes before and after."""
    f = pred.fusion
    if f is None or f.mode == "none":
        return {}
    return {"ops": f.ops, "kernels": f.kernels, "ops_fused_away": f.ops_fused_away,
            "traffic_unfused_bytes": f.bytes_before, "traffic_fused_bytes": f.bytes_after,
            "traffic_fused_away_bytes": f.bytes_fused_away}


def _serving(section: TimeSection, spec: Any, wl: Workload, trace: Any, pred: StepPrediction,
             efficiency: Any) -> list[str]:
    serve = inference_latency(spec, wl, trace, pred.device, efficiency=efficiency)
    section.prefill_s = serve.prefill_s
    notes = []
    if serve.decode is not None:
        d = serve.decode
        section.decode_batch, section.decode_context = d.batch, d.context
        section.decode_token_s, section.decode_tokens_per_s, section.decode_bound = d.token_s, d.tokens_per_s, d.bound
        notes.append("decode: one token per sequence reads every weight once (only the looked-up rows of an "
                     "untied input embedding; the routed experts a batch touches, 1 − (1 − k/E)^b of them) and "
                     "the whole KV cache, and is limited by max(bytes / bandwidth, FLOPs / rate) plus one "
                     "forward pass's per-op overhead")
    if serve.generate is not None:
        g = serve.generate
        section.gen_tokens, section.generate_s, section.generate_tokens_per_s = g.tokens, g.total_s, g.tokens_per_s
        notes.append("generate: prefill of the prompt, then one decode step per new token with the context growing")
    return notes


def _training_run(section: TimeSection, pred: StepPrediction, tokens: float, active_params: int | None,
                  deadline_s: float | None, deadline_mfu: float | None) -> list[str]:
    tt = time_to_train(pred, tokens, active_params)
    section.train_tokens, section.train_steps, section.train_s = tt.tokens, tt.steps, tt.seconds
    section.device_hours, section.train_flops = tt.device_hours, tt.model_flops
    section.train_hardware_flops, section.train_flops_6nd = tt.hardware_flops, tt.flops_6nd
    notes = ["training FLOPs: the traced model FLOPs per token × tokens; attention counted as the full "
             "square (the PaLM / Megatron convention), so they exceed 6·N·D by the attention term "
             "12·layers·hidden·seq per token; train_flops_6nd is 6·N·D with N the active parameters"]
    if deadline_s:
        dd = devices_for_deadline(pred, tokens, deadline_s, deadline_mfu)
        section.deadline_s, section.devices_for_deadline = dd.deadline_s, dd.devices
        section.devices_for_deadline_exact, section.deadline_mfu = dd.exact, dd.mfu
        notes.append(f"devices for the deadline: training FLOPs / (deadline × peak × MFU "
                     f"{dd.mfu:.3g}{' given' if deadline_mfu else ' predicted'}), rounded up to "
                     f"whole groups of tp × pp = {pred.layout.tp * pred.layout.pp}")
    return notes


# ------------------------------------------------------------------------------------------ footprint


def footprint_section(result: FootprintResult, scope: str | None = None) -> tuple[FootprintSection, dict[str, str]]:
    """The footprint section of a result, and the provenance of its figures."""
    section = FootprintSection(
        scope=scope, region=result.region, facility=result.facility, carbon_accounting=result.carbon_accounting,
        device_hours=(int(result.device_hours) if result.device_hours is not None
                      and float(result.device_hours).is_integer() else result.device_hours),
        device_energy_j=result.device_energy_j, facility_energy_j=result.facility_energy_j,
        serving_energy_j=result.serving_energy_j, energy_j=result.energy_j, co2e_g=result.co2e_g,
        serving_co2e_g=result.serving_co2e_g, embodied_co2e_g=result.embodied_co2e_g,
        total_co2e_g=result.total_co2e_g, water_onsite_l=result.water_onsite_l,
        water_offsite_l=result.water_offsite_l, water_l=result.water_l, cost_usd=result.cost_usd,
        params_served_per_gco2e=result.params_served_per_gco2e,
        inputs={name: FootprintInput(u.value, u.unit, u.source) for name, u in result.inputs.items()})
    return section, dict(result.provenance)


# The site and price options of analyze and predict (as mf.footprint names them) → the footprint chain's inputs.
SITE_OPTIONS = {"region": "region", "intensity": "intensity_g_per_kwh", "facility": "facility", "pue": "pue",
                "wue": "wue_l_per_kwh", "utilization": "utilization", "water_intensity": "water_l_per_kwh",
                "price_per_hour": "price_per_hour", "price_per_kwh": "price_per_kwh"}


def site_inputs(site: dict[str, Any] | None) -> dict[str, Any]:
    """``site`` (region, intensity, facility, pue, wue, utilization, water_intensity, price_per_hour,
    price_per_kwh; None values ignored) as keyword arguments of ``compute_footprint``."""
    out = {}
    for key, value in (site or {}).items():
        if key not in SITE_OPTIONS:
            raise UserError(f"unknown site option {key!r}; choose from {', '.join(SITE_OPTIONS)}."
                            f"{suggest(key, SITE_OPTIONS)}")
        if value is not None:
            out[SITE_OPTIONS[key]] = value
    return out


def add_run_footprint(rep: Report, time: TimeSection, total_params: int | None,
                      site: dict[str, Any] | None = None) -> None:
    """The footprint of the predicted run at ``site``: the training run (``time.train_s``, with --tokens), one
    generate call (``time.generate_s``: the prompt's prefill and every new token) under --mode generate, else one
    step."""
    if not time.step_s or not time.hardware:
        return  # no predicted time, no footprint: the section is absent, never zero
    devices = time.devices or 1
    if time.train_s:
        scope, seconds = "training run (--tokens)", float(time.train_s)
    elif time.generate_s:  # the unit of work of generation is the whole call, not its prefill
        scope, seconds = "one generate call", float(time.generate_s)
    else:
        scope, seconds = "one step", float(time.step_s)
    result = compute_footprint(hardware=time.hardware, device_hours=devices * seconds / 3600.0, params=total_params,
                               origins={"device_hours": f"predicted ({scope}: {devices} × {plain_number(seconds)} s)",
                                        "hardware": "the workload's device (workload.hardware)",
                                        "params": "counted (the model's parameters)"},
                               **site_inputs(site))
    section, provenance = footprint_section(result, scope)
    rep.add(section, {k: "modeled" if kind == "measured" else kind for k, kind in provenance.items()})
    rep.assume(f"footprint of {scope}: {devices} × {time.hardware} for {plain_number(seconds)} s of predicted device time")
    for a in result.assumptions:
        if a.startswith("params served per gram"):
            continue  # a serving score: 'mlfootprint footprint --inferences' computes it, not a run's card
        # the grid and the power drawn move energy, CO2e and cost the most
        rep.assume(a, key=a.startswith(("no --region or --intensity", "--utilization not given")))


def _mixed_states_rule(wl: Workload, lay: Any) -> str:
    """The model states and traced activations of mixed-precision training, as the layout sized them."""
    zero, split = (lay.zero, lay.model_split) if lay is not None else (wl.zero, wl.model_split)
    if wl.mixed_weights_at(zero, split) == "fp32":
        why = ("--mixed-weights fp32" if wl.mixed_weights != "auto" else
               "--mixed-weights auto without ZeRO-3 or a model split over devices")
        return (f"memory: mixed precision under autocast over fp32 weights ({why}: PyTorch AMP, as DDP and the Hugging "
                "Face Trainer run it): fp32 weights and gradients (4 + 4 bytes/param), the weights the optimizer's "
                "master copy (Adam: 8 bytes/param of states), 16-bit weight copies during forward and backward, an fp32 "
                "residual stream; --mixed-weights 16-bit for Megatron-LM's and DeepSpeed's 16-bit working weights")
    if wl.mixed_weights != "auto":
        why = "--mixed-weights 16-bit"
    elif zero >= 3:
        why = "--mixed-weights auto under ZeRO-3: FSDP's param_dtype and DeepSpeed's bf16/fp16 engines gather 16-bit weights"
    else:
        why = ("--mixed-weights auto with the model split over devices: Megatron-LM, NeMo, DeepSpeed's pipeline "
               "engine and TorchTitan run tensor, pipeline and context parallelism over 16-bit weights")
    if wl.fp32_main_grads_at(zero, split):
        grads = ("4 bytes/param of fp32 main gradients (Megatron-LM under bf16), "
                 + ("sharded over the data-parallel ranks (ZeRO-2)" if zero >= 2 else "allocated for the whole run"))
    else:
        grads = "2 bytes/param of 16-bit gradients"
    return (f"memory: mixed precision over 16-bit working weights ({why}), as in Megatron-LM, DeepSpeed and the ZeRO "
            f"paper: 2 bytes/param of weights, {grads}, fp32 master weights with the optimizer states (Adam: 12 "
            "bytes/param); the activations are traced without autocast, a 16-bit residual stream; --mixed-weights "
            "fp32 for PyTorch AMP")
