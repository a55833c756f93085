"""Checkers: one per kind of claim, each recomputing the figure with mlfootprint's own machinery
(catalog model + trace, memory model, prediction, footprint) — never a formula written for one claim."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..analysis.count.estimate import train_flops_from_params
from ..analysis.count.flops import FlopSummary, flop_summary
from ..analysis.count.params import parameter_stats
from ..analysis.footprint import compute_footprint
from ..analysis.memory.model import estimate_memory
from ..analysis.memory.states import ParamInfo, StateLayout, model_states
from ..analysis.predict.prediction import mfu_from_throughput, palm_flops_per_token
from ..analysis.predict.comm import dp_volume
from ..core.errors import UserError
from ..hardware.catalog import get_device
from ..models import resolve
from ..models.factory import looks_like_callable_ref
from ..trace.run import trace
from ..workload import Workload
from .model import NOT_CHECKABLE, Claim, Outcome

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
    return flop_summary(trace(_resolve(claim, model), Workload(mode="train", batch=1, seq=seq)))


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
    detail = (f"traced {model} train step at seq {seq}: {per_token:.4g} model FLOPs/token "
              f"{'without' if convention == '6ND' else 'with'} attention × {tokens:.3g} tokens; "
              f"{'with' if convention == '6ND' else 'without'} the attention square: {other:.4g}")
    return Outcome(ours, "", detail)


@checker("train_flops_from_params")
def train_flops_params(claim: Claim) -> Outcome:

    params, tokens = _need(claim, "params", "tokens")
    ours = train_flops_from_params(float(params), float(tokens))
    return Outcome(ours, "", f"6·N·D with N = {params:.3g}, D = {tokens:.3g} (no architecture published: attention term unknown)")


@checker("mfu_from_achieved_flops")
def mfu_from_achieved(claim: Claim) -> Outcome:

    achieved, hardware, dtype = _need(claim, "achieved_flop_per_s", "hardware", "dtype")
    device = get_device(hardware)
    peak = device.peak_for(dtype)
    return Outcome(achieved / peak, "", f"{achieved / 1e12:.4g} TFLOP/s over {device.name}'s dense {dtype} peak of {peak / 1e12:.4g} TFLOP/s")


@checker("footprint_runs")
def footprint_runs(claim: Claim) -> Outcome:

    runs, pue, intensity = _need(claim, "runs", "pue", "intensity_g_per_kwh")
    total_g = 0.0
    parts = []
    for run in runs:
        r = compute_footprint(device_hours=float(run["device_hours"]), power_w=float(run["power_w"]), pue=float(pue),
                              intensity_g_per_kwh=float(intensity))
        total_g += r.co2e_g
        parts.append(f"{run.get('name', '?')} {r.co2e_g / 1e6:.2f} t")
    return Outcome(total_g / 1e6, "", f"device-hours × power × PUE {pue} × {intensity} gCO2e/kWh: " + ", ".join(parts))


# --- memory ---------------------------------------------------------------------------------------------

def _states_bytes(params: float, inputs: dict[str, Any], dp: int, zero: int, offload: str = "none") -> dict[str, float]:
    """Per-device model states for a model known only by its parameter count (one flat tensor)."""

    flat = [ParamInfo(name="params", shape=(int(params),), dtype="float32", trainable=True, group=0)]
    lay = StateLayout(precision=str(inputs.get("precision", "fp16-mixed")), optimizer=str(inputs.get("optimizer", "adam")),
                      training=True, zero=int(zero), dp=int(dp), offload=offload)
    st = model_states(flat, lay)
    # The papers' "model states" are the sharded weights, gradients and optimizer states; the memory model
    # also itemizes framework working buffers (DeepSpeed's reduce bucket, ZeRO-3's gathered blocks), kept apart here.
    buffers = float(sum(v for k, v in st.breakdown.items() if "bucket" in k or "gathered" in k))
    device = st.weights_bytes + st.gradients_bytes + st.optimizer_bytes - buffers
    return {"device": float(device), "host": float(st.host_bytes), "weights": float(st.weights_bytes),
            "gradients": float(st.gradients_bytes), "optimizer": float(st.optimizer_bytes), "buffers": buffers}


def _device(hardware: str) -> Any:

    return get_device(hardware)


@checker("model_states")
def model_states_claim(claim: Claim) -> Outcome:
    params, dp, zero = _need(claim, "params", "dp", "zero")
    b = _states_bytes(float(params), claim.inputs, int(dp), int(zero))
    extra = (f"; the memory model adds {b['buffers'] / 1e9:.3g} GB of framework buffers (DeepSpeed's reduce bucket, "
             "ZeRO-3's gathered blocks) that are not model states") if b["buffers"] else ""
    return Outcome(b["device"] / 1e9, "", f"memory model, ZeRO stage {zero} over {dp} devices: model states "
                   f"{b['device'] / 1e9:.4g} GB per device (GB = 1e9 bytes){extra}")


@checker("fits_model_states")
def fits_model_states(claim: Claim) -> Outcome:
    params, hardware = _need(claim, "params", "hardware")
    dev = _device(hardware)
    b = _states_bytes(float(params), claim.inputs, int(claim.inputs.get("dp", 1)), int(claim.inputs.get("zero", 0)),
                      str(claim.inputs.get("offload", "none")))
    fits = b["device"] <= dev.memory_bytes
    return Outcome(fits, "", f"model states on the device {b['device'] / 1e9:.3g} GB of {dev.memory_bytes / 1e9:.3g} GB "
                   f"({dev.name}); offloaded to host {b['host'] / 1e9:.3g} GB; activations not included")


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
                   f"{dev.memory_bytes / 1e9:.3g} GB, with no room left for activations")


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
                   f"{dev.memory_bytes / 1e9:.3g} GB: {lo} devices with every byte used by model states")


@checker("largest_fitting_family_model")
def largest_family_model(claim: Claim) -> Outcome:
    """Trace each model of a family with the workload and keep the largest whose peak fits the device."""

    family, hardware = _need(claim, "family", "hardware")
    dev = _device(hardware)
    keys = ("mode", "optimizer", "precision", "batch", "seq", "zero", "offload")
    wl = Workload(**{k: claim.inputs[k] for k in keys if k in claim.inputs})
    best = None
    seen = []
    for name in family:  # smallest first; memory grows with the model, so stop at the first that does not fit
        spec = _resolve(claim, name)
        tr = trace(spec, wl)
        est = estimate_memory(spec, wl, tr, device_bytes=int(dev.memory_bytes))
        seen.append(f"{name} {est.peak_bytes / 1e9:.3g} GB")
        if not est.fits:
            break
        best = (name, parameter_stats(tr).total)
    if best is None:
        return Outcome(0, "", f"no model of the family fits {dev.name}: " + ", ".join(seen))
    return Outcome(float(best[1]), "", f"largest that fits {dev.name} ({dev.memory_bytes / 1e9:.3g} GB): {best[0]}; "
                   f"traced peaks: " + ", ".join(seen))


# --- prediction -----------------------------------------------------------------------------------------

@checker("zeropp_volume_ratio")
def zeropp_ratio(claim: Claim) -> Outcome:

    params, dp = _need(claim, "params", "dp")
    grad_bytes = 2.0 * float(params)  # fp16/bf16 gradients
    base = dp_volume(grad_bytes, int(dp), zero=3)
    pp = dp_volume(grad_bytes, int(dp), zero=3, zeropp=True, node_group=8)
    ours = (base.inter_bytes + base.intra_bytes) / pp.inter_bytes
    return Outcome(ours, "", f"cross-node bytes per device per step: ZeRO-3 {base.formula} vs {pp.formula}")


@checker("mfu_from_throughput")
def mfu_throughput(claim: Claim) -> Outcome:

    tokens_per_s, devices, hardware, dtype = _need(claim, "tokens_per_s", "devices", "hardware", "dtype")
    peak = _device(hardware).peak_for(dtype)
    if "model" in claim.inputs:

        seq = int(claim.inputs.get("seq", 2048))
        f = _train_flops(claim, claim.inputs["model"], seq)
        per_token = f.model / f.tokens
        how = f"traced {claim.inputs['model']} train step at seq {seq}: {per_token:.4g} model FLOPs/token"
    else:
        params, layers, heads, head_dim, seq = _need(claim, "params", "layers", "heads", "head_dim", "seq")
        per_token = palm_flops_per_token(float(params), int(layers), int(heads), int(head_dim), int(seq))
        how = f"6N + 12·L·H·Q·T = {per_token:.4g} model FLOPs/token"
    r = mfu_from_throughput(per_token, float(tokens_per_s), int(devices), peak)
    return Outcome(r.mfu, "", f"{how} × {tokens_per_s:.4g} tokens/s over {devices} × {peak / 1e12:.4g} TFLOP/s")
