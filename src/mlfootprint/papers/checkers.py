"""Checkers: one per kind of claim. Each says which parts of mlfootprint recomputed its figure
(``Outcome.machinery``: trace, count, memory, predict, footprint); a checker that only redoes the source's own
arithmetic says none, and its agreement is reported as "consistent", never "reproduced".
tests/test_claims.py watches every checker run and fails if the machinery it names was not called."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..analysis.count.estimate import train_flops_from_params
from ..analysis.count.flops import FlopSummary, flop_summary
from ..analysis.count.params import parameter_stats
from ..analysis.footprint import compute_footprint
from ..analysis.memory.model import estimate_memory
from ..analysis.memory.states import ParamInfo, StateLayout, model_states
from ..analysis.predict.comm import dp_volume
from ..analysis.predict.prediction import mfu_from_throughput, palm_flops_per_token, predict_step
from ..core.errors import UserError
from ..core.units import seconds, si
from ..hardware.catalog import get_device
from ..models import resolve
from ..models.factory import looks_like_callable_ref
from ..trace.cache import traced_step
from ..workload import Workload
from .model import NOT_CHECKABLE, Claim, Outcome
from ..core.units import plain_number

TRACED_COUNT = ("trace", "count")
TRACED_MEMORY = ("trace", "memory")
# Workload fields a claim's inputs may set (the names and meanings of mlfootprint.Workload).
_WORKLOAD_KEYS = ("mode", "batch", "seq", "precision", "optimizer", "attention", "micro_batch", "grad_accum",
                  "recompute", "zero", "zeropp", "offload", "offload_activations", "dp", "tp", "pp", "ep", "cp", "vp",
                  "schedule", "cp_comm", "sequence_parallel", "grad_reduce", "grad_reduce_dtype", "tp_backward",
                  "zero_impl", "devices", "lora_rank", "quant", "fusion", "mixed_weights")

Checker = Callable[[Claim], Outcome]
CHECKERS: dict[str, Checker] = {}


def checker(kind: str) -> Callable[[Checker], Checker]:
    def deco(fn: Checker) -> Checker:
        CHECKERS[kind] = fn
        return fn

    return deco


def _need(claim: Claim, *keys: str) -> list[Any]:
    missing = [k for k in keys if k not in claim.inputs]
    if missing:
        raise UserError(f"claim {claim.id!r} ({claim.origin}) lacks inputs: {', '.join(missing)}")
    return [claim.inputs[k] for k in keys]


def _resolve(claim: Claim, model: Any) -> Any:
    """The claim's model; one that names code to import only when the claim may run code (see papers/load.py)."""
    if looks_like_callable_ref(str(model)) and not claim.allow_code:
        raise UserError(f"claim {claim.id!r} ({claim.origin}) names Python code to import ({model!r}); claims run no "
                        "code unless the file is given on the command line with --allow-code")
    return resolve(str(model))


def _train_flops(claim: Claim, model: str, seq: int) -> FlopSummary:
    """The traced training step of a catalog model at batch 1."""
    return flop_summary(traced_step(_resolve(claim, model), Workload(mode="train", batch=1, seq=seq)))


def not_checkable(claim: Claim, why: str) -> Outcome:
    return Outcome(None, NOT_CHECKABLE, why, list(claim.missing))


@checker("train_flops")
def train_flops(claim: Claim) -> Outcome:
    """Traced training FLOPs per token of a catalog model × tokens."""

    model, tokens, seq = _need(claim, "model", "tokens", "seq")
    f = _train_flops(claim, model, int(seq))
    per_token_full = f.model / f.tokens
    per_token_no_attn = (f.model - f.attention) / f.tokens
    convention = claim.inputs.get("convention", "full")
    per_token = per_token_no_attn if convention == "6ND" else per_token_full
    ours = per_token * tokens
    other = (per_token_full if convention == "6ND" else per_token_no_attn) * tokens
    detail = (f"traced {model} train step at seq {seq}: {si(per_token, 'FLOP', 4)} of model work per token "
              f"{'without' if convention == '6ND' else 'with'} attention × {si(tokens)} tokens; "
              f"{'with' if convention == '6ND' else 'without'} the attention square: {si(other, 'FLOP', 4)}")
    return Outcome(ours, "", detail, machinery=TRACED_COUNT)


@checker("train_flops_from_params")
def train_flops_params(claim: Claim) -> Outcome:

    params, tokens = _need(claim, "params", "tokens")
    ours = train_flops_from_params(float(params), float(tokens))
    return Outcome(ours, "", f"the source's 6·N·D with N = {si(params)} parameters, D = {si(tokens)} tokens (a "
                   "definition check: no architecture is published, so nothing can be traced)")


@checker("mfu_from_achieved_flops")
def mfu_from_achieved(claim: Claim) -> Outcome:

    achieved, hardware, dtype = _need(claim, "achieved_flop_per_s", "hardware", "dtype")
    device = get_device(hardware)
    peak = device.peak_for(dtype)
    return Outcome(achieved / peak, "", f"a definition check: the published {achieved / 1e12:.4g} TFLOP/s over "
                   f"{device.name}'s dense {dtype} peak of {peak / 1e12:.4g} TFLOP/s (catalog)")


@checker("footprint_runs")
def footprint_runs(claim: Claim) -> Outcome:
    """CO2e of runs given as device-hours × power, through the footprint chain.

    With ``region`` (and ``facility`` or ``pue``) the grid intensity and PUE come from the sourced catalog:
    a recomputation. With ``intensity_g_per_kwh`` typed in, it is the source's own arithmetic (consistent at best).
    """
    (runs,) = _need(claim, "runs")
    site = {k: claim.inputs[k] for k in ("region", "facility", "pue", "intensity_g_per_kwh") if k in claim.inputs}
    if "region" not in site and "intensity_g_per_kwh" not in site:
        raise UserError(f"claim {claim.id!r} ({claim.origin}) needs a catalog 'region' or an 'intensity_g_per_kwh'")
    total_g = 0.0
    parts, used = [], ""
    for run in runs:
        r = compute_footprint(device_hours=float(run["device_hours"]), power_w=float(run["power_w"]), **site,
                              origins=_claim_origins(claim, ["device_hours", "power_w", *site]))
        total_g += r.co2e_g
        parts.append(f"{run.get('name', '?')} {r.co2e_g / 1e6:.2f} t")
        used = ", ".join(f"{name} {i.value} {i.unit} ({i.source.split(',')[0]})" for name, i in r.inputs.items()
                         if name in ("pue", "intensity_g_per_kwh"))
    from_catalog = "intensity_g_per_kwh" not in site
    return Outcome(total_g / 1e6, "", f"device-hours × power × PUE × grid intensity ({used}): " + ", ".join(parts),
                   machinery=("footprint",) if from_catalog else ())


# --- memory ---------------------------------------------------------------------------------------------

def _states_bytes(params: float, inputs: dict[str, Any], dp: int, zero: int, offload: str = "none") -> dict[str, float]:
    """Per-device model states for a model known only by its parameter count (one flat tensor)."""

    flat = [ParamInfo(name="params", shape=(int(params),), dtype="float32", trainable=True, group=0)]
    lay = StateLayout(precision=str(inputs.get("precision", "fp16-mixed")), optimizer=str(inputs.get("optimizer", "adam")),
                      training=True, zero=int(zero), dp=int(dp), offload=offload)
    st = model_states(flat, lay)
    buffers = float(st.working_buffers_bytes)
    device = float(st.model_states_bytes)
    return {"device": float(device), "host": float(st.host_bytes), "weights": float(st.weights_bytes),
            "gradients": float(st.gradients_bytes), "optimizer": float(st.optimizer_bytes), "buffers": buffers}


def _device(hardware: str) -> Any:
    return get_device(hardware)


def _workload(claim: Claim, inputs: dict[str, Any] | None = None, **fixed: Any) -> Workload:
    """The workload a claim publishes (its inputs, or ``inputs``, named as Workload fields), with ``fixed`` on top."""
    inputs = claim.inputs if inputs is None else inputs
    given = {k: inputs[k] for k in _WORKLOAD_KEYS if k in inputs}
    given.update(fixed)
    return Workload(**given)


@checker("model_states")
def model_states_claim(claim: Claim) -> Outcome:
    params, dp, zero = _need(claim, "params", "dp", "zero")
    b = _states_bytes(float(params), claim.inputs, int(dp), int(zero))
    extra = (f"; the memory model adds {plain_number(b['buffers'] / 1e9, 3)} GB of framework buffers (DeepSpeed's reduce bucket, "
             "ZeRO-3's gathered blocks) that are not model states") if b["buffers"] else ""
    return Outcome(b["device"] / 1e9, "", f"memory model, ZeRO stage {zero} over {dp} devices: model states "
                   f"{plain_number(b['device'] / 1e9)} GB per device (GB = 1,000,000,000 bytes){extra}", machinery=("memory",))


@checker("fits_model_states")
def fits_model_states(claim: Claim) -> Outcome:
    params, hardware = _need(claim, "params", "hardware")
    dev = _device(hardware)
    b = _states_bytes(float(params), claim.inputs, int(claim.inputs.get("dp", 1)), int(claim.inputs.get("zero", 0)),
                      str(claim.inputs.get("offload", "none")))
    fits = b["device"] <= dev.memory_bytes
    return Outcome(fits, "", f"model states on the device {plain_number(b['device'] / 1e9, 3)} GB of {plain_number(dev.memory_bytes / 1e9, 3)} GB "
                   f"({dev.name}); offloaded to host {plain_number(b['host'] / 1e9, 3)} GB; activations not included",
                   machinery=("memory",))


@checker("memory_fit")
def memory_fit(claim: Claim) -> Outcome:
    """The whole memory model (weights, gradients, optimizer, activations, buffers) of a traced catalog model."""
    model, hardware = _need(claim, "model", "hardware")
    dev = _device(hardware)
    wl = _workload(claim, hardware=hardware)
    spec = _resolve(claim, model)
    est = estimate_memory(spec, wl, traced_step(spec, wl), device_bytes=int(dev.memory_bytes))
    host = est.host_bytes
    moved = (f", activation offload {wl.offload_activations:g}: {plain_number(est.activations_host_bytes / 1e9)} GB of activations "
             f"on the host, {plain_number(est.activation_offload_traffic_bytes / 1e9)} GB over the host link per step, "
             f"{plain_number(est.activations_offloaded_bytes / 1e9)} GB off the device peak") if wl.offload_activations else ""
    return Outcome(bool(est.fits), "", f"traced {model} ({wl.mode}, batch {wl.batch:,}, seq {wl.seq:,}, {wl.precision}, recompute {wl.recompute}, "
                   f"ZeRO {wl.zero}, offload {wl.offload}{moved}): peak {plain_number(est.peak_bytes / 1e9, 3)} GB of "
                   f"{plain_number(dev.memory_bytes / 1e9, 3)} GB ({dev.name})" + (f"; {plain_number(host / 1e9, 3)} GB on the host" if host else ""),
                   machinery=TRACED_MEMORY)


@checker("largest_params_model_states")
def largest_params(claim: Claim) -> Outcome:
    (hardware,) = _need(claim, "hardware")
    dev = _device(hardware)
    dp, zero, off = int(claim.inputs.get("dp", 1)), int(claim.inputs.get("zero", 0)), str(claim.inputs.get("offload", "none"))
    lo, hi = 1.0, 1e13
    while hi / lo > 1.0001:  # model states grow linearly in the parameter count: bisect on it
        mid = (lo * hi) ** 0.5
        if _states_bytes(mid, claim.inputs, dp, zero, off)["device"] <= dev.memory_bytes:
            lo = mid
        else:
            hi = mid
    per = _states_bytes(1e9, claim.inputs, dp, zero, off)["device"] / 1e9
    return Outcome(lo, "", f"largest parameter count whose model states ({per:.3g} bytes/parameter) fit {dev.name}'s "
                   f"{plain_number(dev.memory_bytes / 1e9, 3)} GB, with no room left for activations", machinery=("memory",))


@checker("devices_for_model_states")
def devices_for_states(claim: Claim) -> Outcome:
    params, hardware = _need(claim, "params", "hardware")
    dev = _device(hardware)
    n = 1
    while _states_bytes(float(params), claim.inputs, n, 3)["device"] > dev.memory_bytes:
        n *= 2
    lo, hi = n // 2 + 1, n
    while lo < hi:  # smallest n whose fully sharded (ZeRO-3) states fit one device
        mid = (lo + hi) // 2
        if _states_bytes(float(params), claim.inputs, mid, 3)["device"] <= dev.memory_bytes:
            hi = mid
        else:
            lo = mid + 1
    total = _states_bytes(float(params), claim.inputs, 1, 0)["device"]
    return Outcome(lo, "", f"{total / 1e12:.3g} TB of mixed-precision Adam model states spread over {dev.name}s of "
                   f"{plain_number(dev.memory_bytes / 1e9, 3)} GB: {lo} devices with every byte used by model states",
                   machinery=("memory",))


@checker("largest_fitting_family_model")
def largest_family_model(claim: Claim) -> Outcome:
    """Trace each model of a family with the workload and keep the largest whose peak fits the device."""

    family, hardware = _need(claim, "family", "hardware")
    dev = _device(hardware)
    keys = ("mode", "optimizer", "precision", "batch", "seq", "zero", "offload")
    wl = Workload(**{k: claim.inputs[k] for k in keys if k in claim.inputs})
    best = None
    seen = []
    # smallest first, and memory grows with the model: bisect for the last that fits (log2 of the family's traces)
    lo, hi = 0, len(family) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        name = family[mid]
        spec = _resolve(claim, name)
        tr = traced_step(spec, wl)
        est = estimate_memory(spec, wl, tr, device_bytes=int(dev.memory_bytes))
        seen.append((mid, f"{name} {plain_number(est.peak_bytes / 1e9, 3)} GB"))
        if est.fits:
            best = (name, parameter_stats(tr).total)
            lo = mid + 1
        else:
            hi = mid - 1
    peaks = ", ".join(text for _, text in sorted(seen))
    if best is None:
        return Outcome(0, "", f"no model of the family fits {dev.name}: " + peaks, machinery=TRACED_MEMORY)
    return Outcome(float(best[1]), "", f"largest that fits {dev.name} ({plain_number(dev.memory_bytes / 1e9, 3)} GB): {best[0]}; "
                   f"traced peaks: " + peaks, machinery=TRACED_MEMORY)


# --- prediction -----------------------------------------------------------------------------------------

@checker("zeropp_volume_ratio")
def zeropp_ratio(claim: Claim) -> Outcome:

    params, dp = _need(claim, "params", "dp")
    psi = 2.0 * float(params)  # fp16 weights gathered and fp16 gradients reduced (the paper's setting)
    base = dp_volume(psi, psi, int(dp), zero=3)
    pp = dp_volume(psi, psi, int(dp), zero=3, zeropp=True, dp_per_node=8)
    ours = (base.inter_bytes + base.intra_bytes) / pp.inter_bytes
    # The volumes are the paper's own accounting (3Ψ and 0.75Ψ, as predict/comm.py takes them): a definition check.
    return Outcome(ours, "", f"the paper's volumes, as predict uses them: cross-node bytes per device per step, "
                   f"ZeRO-3 {base.formula} vs {pp.formula}")


@checker("mfu_from_throughput")
def mfu_throughput(claim: Claim) -> Outcome:

    tokens_per_s, devices, hardware, dtype = _need(claim, "tokens_per_s", "devices", "hardware", "dtype")
    peak = _device(hardware).peak_for(dtype)
    if "model" in claim.inputs:

        seq = int(claim.inputs.get("seq", 2048))
        f = _train_flops(claim, claim.inputs["model"], seq)
        per_token = f.model / f.tokens
        how = f"traced {claim.inputs['model']} train step at seq {seq}: {si(per_token, 'FLOP', 4)} of model work per token"
        machinery: tuple[str, ...] = TRACED_COUNT
    else:
        params, layers, heads, head_dim, seq = _need(claim, "params", "layers", "heads", "head_dim", "seq")
        per_token = palm_flops_per_token(float(params), int(layers), int(heads), int(head_dim), int(seq))
        how = f"the source's formula 6N + 12·L·H·Q·T = {si(per_token, 'FLOP', 4)} of model work per token"
        machinery = ()
    r = mfu_from_throughput(per_token, float(tokens_per_s), int(devices), peak)
    return Outcome(r.mfu, "", f"{how} × {si(tokens_per_s, digits=4)} tokens/s over {devices} × {peak / 1e12:.4g} TFLOP/s",
                   machinery=machinery)


_STEP_METRICS = {
    "step_s": lambda p: p.step_s,
    "tokens_per_s_per_device": lambda p: p.tokens_per_s / p.devices,
    "mfu": lambda p: p.mfu,
    "flop_per_s_per_device": lambda p: p.achieved_flops_per_device,  # model FLOPs (the MFU numerator) per second
    "flop_per_s": lambda p: p.model_flops / p.step_s,  # the same, summed over the devices
}


@checker("predict_step")
def predict_step_claim(claim: Claim) -> Outcome:
    """A published training layout, traced and predicted: step time, tokens/s per device or MFU."""
    model, hardware, devices = _need(claim, "model", "hardware", "devices")
    metric = str(claim.inputs.get("metric", "step_s"))
    if metric not in _STEP_METRICS:
        raise UserError(f"claim {claim.id!r} ({claim.origin}): metric must be one of {', '.join(_STEP_METRICS)}")
    wl = _workload(claim, mode="train", hardware=hardware, devices=int(devices))
    spec = _resolve(claim, model)
    pred = predict_step(spec, wl, traced_step(spec, wl, checkpoint_early_stop=False), hardware)
    return Outcome(_STEP_METRICS[metric](pred), "",
                   f"predicted {model} on {devices} × {pred.device.name}, {pred.layout.label()}, global batch {wl.batch} × "
                   f"seq {wl.seq:,}, {wl.precision}: step {seconds(pred.step_s)}, {pred.tokens_per_s / pred.devices:,.0f} "
                   f"tokens/s per device, {pred.achieved_flops_per_device / 1e12:.4g} TFLOP/s per device, MFU "
                   f"{100 * pred.mfu:.1f}%, HFU {100 * pred.hfu:.1f}% (bottleneck: {pred.bottleneck})",
                   machinery=("trace", "predict"))


@checker("scaling_efficiency")
def scaling_efficiency_claim(claim: Claim) -> Outcome:
    """A published weak-scaling efficiency: the scaled run's predicted model FLOP/s per device over the single-device
    baseline's (``inputs.baseline``: its own model and workload), both predicted from their published layouts."""
    model, hardware, devices, base = _need(claim, "model", "hardware", "devices", "baseline")
    if not isinstance(base, dict) or "model" not in base:
        raise UserError(f"claim {claim.id!r} ({claim.origin}): 'baseline' must be a table with the baseline's model "
                        "and workload (e.g. baseline = {{ model = \"gpt2\", devices = 1, batch = 8 }})")
    runs = []
    for inputs, name in ((claim.inputs, model), (base, base["model"])):
        hw = str(inputs.get("hardware", hardware))
        wl = _workload(claim, inputs, mode="train", hardware=hw, devices=int(inputs.get("devices", 1)))
        spec = _resolve(claim, name)
        runs.append(predict_step(spec, wl, traced_step(spec, wl, checkpoint_early_stop=False), hw))
    scaled, one = runs
    ours = scaled.achieved_flops_per_device / one.achieved_flops_per_device
    return Outcome(ours, "",
                   f"predicted {model} on {scaled.devices} × {scaled.device.name} ({scaled.layout.label()}): "
                   f"{scaled.achieved_flops_per_device / 1e12:.4g} TFLOP/s per device; {base['model']} on "
                   f"{one.devices} ({one.layout.label()}): {one.achieved_flops_per_device / 1e12:.4g} TFLOP/s; "
                   f"efficiency {100 * ours:.1f}% (model FLOPs)",
                   machinery=("trace", "predict"))


@checker("memory_peak")
def memory_peak(claim: Claim) -> Outcome:
    """Peak device memory (GB) of a traced catalog model under the published workload."""
    (model,) = _need(claim, "model")
    hardware = claim.inputs.get("hardware")
    wl = _workload(claim, **({"hardware": hardware} if hardware else {}))
    spec = _resolve(claim, model)
    est = estimate_memory(spec, wl, traced_step(spec, wl))
    parts = ", ".join(f"{k.removesuffix('_bytes')} {v / 1e9:.3g}" for k, v in est.at_peak.items() if v) \
        if getattr(est, "at_peak", None) else ""
    return Outcome(est.peak_bytes / 1e9, "", f"traced {model} ({wl.mode}, {wl.optimizer}, {wl.precision}, batch {wl.batch}, "
                   f"seq {wl.seq:,}, offload {wl.offload}): peak {plain_number(est.peak_bytes / 1e9)} GB per device"
                   + (f" ({parts} GB)" if parts else "") + f"; {plain_number(est.host_bytes / 1e9)} GB on the host",
                   machinery=TRACED_MEMORY)


_FOOTPRINT_METRICS = {"cost_usd": ("cost_usd", 1.0), "co2e_t": ("co2e_g", 1e-6),
                      "energy_mwh": ("facility_energy_j", 1 / 3.6e9)}


@checker("footprint")
def footprint_claim(claim: Claim) -> Outcome:
    """Cost, CO2e or energy of published device-hours, with the device's power, price, grid and facility
    taken from the sourced catalogs (nothing typed in but what the source publishes)."""
    device_hours, hardware = _need(claim, "device_hours", "hardware")
    metric = str(claim.inputs.get("metric", "cost_usd"))
    if metric not in _FOOTPRINT_METRICS:
        raise UserError(f"claim {claim.id!r} ({claim.origin}): metric must be one of {', '.join(_FOOTPRINT_METRICS)}")
    site = {k: claim.inputs[k] for k in ("region", "facility", "power_w", "utilization") if k in claim.inputs}
    r = compute_footprint(device_hours=float(device_hours), hardware=str(hardware), **site,
                          origins=_claim_origins(claim, ["device_hours", "hardware", *site]))
    field_name, scale = _FOOTPRINT_METRICS[metric]
    value = getattr(r, field_name)
    if value is None:
        return not_checkable(claim, f"the footprint chain gives no {metric} for {hardware}")
    used = "; ".join(f"{k} {v.value} {v.unit} ({v.source.split(',')[0]})" for k, v in r.inputs.items()
                     if k in ("price_usd_per_device_hour", "power_w", "pue", "intensity_g_per_kwh"))
    return Outcome(value * scale, "", f"{float(device_hours):,.0f} device-hours of {hardware} through the footprint "
                   f"chain: {used}", machinery=("footprint",))


@checker("devices_for_budget")
def devices_for_budget(claim: Claim) -> Outcome:
    """Devices needed to deliver a FLOP budget at an MFU within a time (or a device lifespan):
    devices = FLOPs / (MFU × peak × seconds). The source's own arithmetic unless the FLOPs are traced."""
    hardware, mfu = _need(claim, "hardware", "mfu")
    missing = [k for k in ("flops", "days") if k not in claim.inputs]
    if missing:
        names = {"flops": "the training FLOPs of the model", "days": "the training time (or device lifespan) in days"}
        return Outcome(None, NOT_CHECKABLE, "devices = FLOPs / (MFU × peak × time) needs " +
                       " and ".join(names[m] for m in missing), [names[m] for m in missing])
    peak = _device(hardware).peak_for(str(claim.inputs.get("dtype", "bf16")))
    seconds = float(claim.inputs["days"]) * 86400
    n = float(claim.inputs["flops"]) / (float(mfu) * peak * seconds)
    return Outcome(n, "", f"{float(claim.inputs['flops']):.3g} FLOPs / ({mfu:g} MFU × {peak / 1e12:.4g} TFLOP/s × "
                   f"{claim.inputs['days']:g} days) = {n:,.0f} devices")


@checker("plan")
def plan_claim(claim: Claim) -> Outcome:
    """Is the published layout (tp, pp) among the planner's top N for the published model, devices and batch?"""
    from ..analysis.predict.planner import plan as plan_layouts

    model, hardware, devices, tp, pp = _need(claim, "model", "hardware", "devices", "tp", "pp")
    top = int(claim.inputs.get("top", 10))
    wl = _workload(claim, mode="train", hardware=hardware)
    wl = wl.with_changes(recompute="none", zero=0, micro_batch=None, dp=1, tp=1, pp=1, cp=1, vp=1, devices=None)
    spec = _resolve(claim, model)
    res = plan_layouts(spec, wl, traced_step(spec, wl, checkpoint_early_stop=False), hardware, int(devices), top=1000)
    ranks = [i + 1 for i, c in enumerate(res.layouts) if c.par.tp == int(tp) and c.par.pp == int(pp)]
    best = res.best.par
    where = f"rank {ranks[0]} of {len(res.layouts)} fitting layouts" if ranks else \
        f"not among the {len(res.layouts)} fitting layouts"
    return Outcome(bool(ranks) and ranks[0] <= top, "",
                   f"the planner on {devices} × {hardware} ranks the published tp{tp} pp{pp} {where} (top {top} asked); "
                   f"its best: {best.label()}, {seconds(res.best.st.step_s)} per step",
                   machinery=("trace", "predict", "memory"))


@checker("count")
def count_claim(claim: Claim) -> Outcome:
    """Parameters of a catalog model, counted from its trace."""
    (model,) = _need(claim, "model")
    spec = _resolve(claim, model)
    stats = parameter_stats(traced_step(spec, Workload(batch=1, seq=int(claim.inputs.get("seq", 8)))))
    return Outcome(float(stats.total), "", f"traced {model}: {stats.total:,} parameters", machinery=TRACED_COUNT)


@checker("speedup")
def speedup_claim(claim: Claim) -> Outcome:
    """A published speedup, baseline time / improved time (or improved / baseline throughput): the source's own
    ratio, so a definition check at best; not checkable when the source gives only the ratio."""
    pairs = (("baseline_s", "improved_s"), ("improved_per_s", "baseline_per_s"))
    for num, den in pairs:
        if num in claim.inputs and den in claim.inputs:
            ours = float(claim.inputs[num]) / float(claim.inputs[den])
            return Outcome(ours, "", f"{num} {si(claim.inputs[num], digits=4)} / {den} {si(claim.inputs[den], digits=4)} = {ours:.3g}×")
    wanted = ["the baseline's and the improved system's step times or throughputs on the same job"]
    return Outcome(None, NOT_CHECKABLE, "a speedup is a ratio of two measurements; the source gives only the ratio",
                   wanted)


def _claim_origins(claim: Any, names: list[str]) -> dict[str, str]:
    """Footprint inputs taken from a claim's own inputs (the claims file), not typed on the command line."""
    return {name: f"the claim's inputs ({claim.id})" for name in names}
