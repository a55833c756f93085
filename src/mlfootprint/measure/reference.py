"""What measurements are compared against: this machine's device profile, its peak, and the predictions.

Where a prediction fails for a workload, the figure is reported as ``"not available (<reason>)"``, never as
a number.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from ..analysis.memory.model import estimate_memory
from ..analysis.predict.prediction import inference_latency, predict_step
from ..core.errors import UserError
from ..hardware.catalog import Device, dtype_for_precision, get_device, load_devices
import torch

logger = logging.getLogger("mlfootprint.measure")

NO_PROFILE = ("no device profile for this machine: run 'mlfootprint hardware calibrate', "
              "or name the device with --hardware ID")


def _kind_matches(device: Any, torch_device_type: str) -> bool:
    kind = getattr(device, "kind", "")
    if torch_device_type == "cpu":
        return kind == "cpu"
    return kind != "cpu"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def match_catalog_gpu(gpu_name: str) -> Any | None:
    """The catalog device whose name matches a CUDA device name ('NVIDIA H200' → h200), if exactly one does."""
    want = _norm(gpu_name).removeprefix("nvidia").removeprefix("amd")
    if not want:
        return None
    hits = []
    for dev in load_devices().values():
        if dev.kind == "cpu":
            continue
        name = _norm(dev.name).removeprefix("nvidia").removeprefix("amd")
        if name and (name == want or name in want or want in name):
            hits.append(dev)
    exact = [d for d in hits if _norm(d.name).removeprefix("nvidia").removeprefix("amd") == want]
    if len(exact) == 1:
        return exact[0]
    return hits[0] if len(hits) == 1 else None


def resolve_device(hardware: Any, torch_device: Any = "cpu") -> tuple[Any | None, str, list[str]]:
    """The catalog Device for peak FLOP/s and predictions.

    Returns ``(device or None, how it was chosen or why there is none, assumptions)``.
    ``hardware``: a Device, a catalog id (a bad id is the user's error and
    raises), or None: then the calibrated profile ``this`` when it describes
    this kind of device, else (on CUDA) the catalog GPU whose name matches.
    """
    dev_type = getattr(torch_device, "type", str(torch_device).split(":")[0])
    if isinstance(hardware, Device):
        return hardware, f"given: {hardware.id}", []
    if hardware:
        dev = get_device(str(hardware))
        notes = []
        if not _kind_matches(dev, dev_type):
            notes.append(f"the run is on {dev_type} but the device named ({dev.id}, a {dev.kind}) is another kind: "
                         "MFU and the predictions refer to that device's figures")
        return dev, f"given: {dev.id}", notes
    try:
        profile = get_device("this")
    except UserError:
        profile = None
    if profile is not None and _kind_matches(profile, dev_type):
        return profile, "calibrated profile 'this' (mlfootprint hardware calibrate)", []
    if dev_type == "cuda":
        try:
            index = getattr(torch_device, "index", None)
            name = torch.cuda.get_device_name(index if index is not None else torch.cuda.current_device())
        except Exception:  # noqa: BLE001 - no CUDA here after all
            name = ""
        dev = match_catalog_gpu(name) if name else None
        if dev is not None:
            return dev, f"catalog device {dev.id} (matched to {name})", [
                f"this GPU ({name}) was matched to the catalog device '{dev.id}' for its peak FLOP/s; "
                "pass --hardware ID to choose another"]
        if name:
            return None, f"{name} matches no single catalog device; {NO_PROFILE}", []
    return None, NO_PROFILE, []


def peak_flops(device: Any, precision: str, torch_device: Any = "cpu") -> tuple[float | None, str, list[str]]:
    """Dense peak FLOP/s of ``device`` for a workload precision: (value or None, dtype used or why not, notes).

    fp32 matmuls on a CUDA device run as TF32 when PyTorch allows it
    (``torch.backends.cuda.matmul.allow_tf32`` / ``set_float32_matmul_precision``):
    the TF32 peak is then the right denominator, and a note says so.
    """
    if device is None:
        return None, "no device", []
    dtype = dtype_for_precision(precision)
    notes: list[str] = []
    dev_type = getattr(torch_device, "type", str(torch_device).split(":")[0])
    if dtype == "fp32" and dev_type == "cuda" and "tf32" in device.peak_flops:
        try:
            tf32 = bool(torch.backends.cuda.matmul.allow_tf32) or torch.get_float32_matmul_precision() != "highest"
        except Exception:  # noqa: BLE001
            tf32 = False
        if tf32:
            dtype = "tf32"
            notes.append("fp32 matmuls run as TF32 here (PyTorch allows it), so MFU uses the TF32 peak")
    try:
        return device.peak_for(dtype), dtype, notes
    except UserError as exc:
        return None, str(exc), notes


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if not isinstance(exc, UserError) else text[:300]


def predictions(spec: Any, wl: Any, trace: Any, device: Any, device_why: str) -> dict[str, tuple[Any, str]]:
    """Predicted figures for this workload on ``device``: figure → (value or None, source or 'not available (why)')."""
    out: dict[str, tuple[Any, str]] = {}
    time_keys = ("step_s", "tokens_per_s", "samples_per_s", "mfu", "hfu")
    eager = ""
    if getattr(wl, "fusion", None) is None and device is not None and device.kind != "cpu":
        # What is measured is the model run as given, eagerly: each operator its own kernel, keeping its own output.
        # A GPU's default stack is a fused one (Megatron-LM / NeMo); compared with an eager run, that would be wrong
        # by the elementwise activations (a fifth of GPT-2's training peak on an H200, benchmarks/results/). A CPU's
        # default is already eager.
        wl = wl.with_changes(fusion="none")
        eager = ", eager kernels (--fusion none, as measured)"
    if device is None:
        for k in time_keys:
            out[k] = (None, f"not available ({device_why})")
    elif getattr(wl, "mode", "") == "generate":
        lat, error = None, ""
        try:
            lat = inference_latency(spec, wl, trace, device)
        except Exception as exc:  # noqa: BLE001
            logger.warning("prediction failed: %s", _short(exc))
            error = _short(exc)
        for k in time_keys:
            out[k] = (None, "not available (no MFU prediction for decoding)")
        if lat is not None and lat.generate is not None:
            out["step_s"] = (lat.generate.total_s, f"inference_latency (prefill + decode) on {device.id}")
            out["tokens_per_s"] = (lat.generate.tokens_per_s, f"inference_latency on {device.id}")
        else:
            why = error or "the prediction has no decode model for this architecture"
            out["step_s"] = out["tokens_per_s"] = (None, f"not available ({why})")
    else:
        try:
            pred = predict_step(spec, wl, trace, device)
        except Exception as exc:  # noqa: BLE001 - a prediction failure is a missing figure, not a failed bench
            logger.warning("prediction failed: %s", _short(exc))
            for k in time_keys:
                out[k] = (None, f"not available (prediction failed: {_short(exc)})")
        else:
            for k in time_keys:
                value = getattr(pred, k, None)
                out[k] = (value, f"predict_step on {device.id}{eager}") if value is not None else (
                    None, "not available (the prediction has no such figure)")
    try:
        # What is measured is tensor memory (allocator statistics / events), so the estimate's framework
        # allowance (CUDA context, workspaces, fragmentation: other_bytes) is left out of the comparison.
        est = estimate_memory(spec, wl, trace, other_bytes=0)
        out["peak_bytes"] = (est.peak_bytes, f"estimate_memory (tensors only: other_bytes=0, like the "
                                              f"measurement{eager})")
    except Exception as exc:  # noqa: BLE001 - an estimate failure is a missing figure, not a failed bench
        logger.warning("memory estimate failed: %s", _short(exc))
        out["peak_bytes"] = (None, f"not available (memory estimate failed: {_short(exc)})")
    return out


_TDP_HINT = "; pass a TDP (fallback_tdp_w) to use a modeled estimate instead"


def energy_reason(reason: str, how: str) -> str:
    """auto_meter's reason, with its API hint replaced by what this caller's user can do (``how``)."""
    if reason.endswith(_TDP_HINT):
        return reason[: -len(_TDP_HINT)] + f"; for a modeled estimate (labelled), {how}"
    return reason
