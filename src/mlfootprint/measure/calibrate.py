"""Calibration: measure what this machine achieves, and keep it as the profile "this".

``calibrate()`` times, on the CPU (or a CUDA device when one is available):

- **matmul FLOP/s** per dtype (fp32, bf16, fp16, and tf32 on Ampere or newer
  GPUs): ``torch.mm`` on a few square sizes; for each size the median of
  several timed blocks (the sustained rate), and the best size wins;
- **memory bandwidth**: a large tensor copy, bytes read + written per second
  (median of several blocks);
- **per-op overhead**: an in-place add on a one-element tensor, the median
  time per op — what a tiny kernel costs from Python (dispatch + launch).

Every figure is labelled ``measured`` with how it was measured. The result is
a :class:`~mlfootprint.hardware.catalog.Device` with id ``"this"``;
``save_profile`` writes it where ``get_device("this")`` finds it.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.datafiles import check_ours_to_overwrite
from ..core.files import write_text
from ..core.errors import UserError
from ..hardware.catalog import PROFILE_ID, Device, device_to_toml, load_devices_file, profile_path
import torch

GENERATOR = "mlfootprint hardware calibrate"

#: progress(message, fraction_done) — fraction in [0, 1].
ProgressFn = Callable[[str, float], None]

_CPU_SIZES = (256, 512, 1024, 2048)
_GPU_SIZES = (1024, 2048, 4096, 8192)
_MAX_BLOCKS = 50


def calibrate(device: str = "auto", progress: ProgressFn | None = None, budget_s: float = 45) -> Device:
    """Measure this machine; returns the profile ``Device`` (id ``"this"``), not yet saved.

    ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``
    or ``"cuda:N"``. ``budget_s`` bounds the timed work; the whole run takes
    about that long plus allocation (every figure gets at least one
    measurement, however small the budget).
    """
    try:
        budget = float(budget_s)
    except (TypeError, ValueError):
        raise UserError(f"--budget-s must be a number of seconds, got '{budget_s}'") from None
    if not math.isfinite(budget) or budget <= 0:
        raise UserError(f"--budget-s must be a positive number of seconds, got {budget_s}")

    dev = _resolve_device(torch, device)
    is_cuda = dev.type == "cuda"
    if is_cuda:
        torch.cuda.set_device(dev)

        def sync() -> None:
            torch.cuda.synchronize(dev)
    else:
        def sync() -> None:
            return None

    report = progress or (lambda message, fraction: None)
    today = _dt.date.today().isoformat()
    env = f"torch {torch.__version__}, " + (
        f"{torch.cuda.get_device_name(dev)}" if is_cuda else f"{torch.get_num_threads()} threads"
    )

    dtypes: list[tuple[str, Any, bool]] = [("fp32", torch.float32, False)]
    if is_cuda and torch.cuda.get_device_capability(dev)[0] >= 8:
        dtypes.append(("tf32", torch.float32, True))
    dtypes += [("bf16", torch.bfloat16, False), ("fp16", torch.float16, False)]

    # Shares of the budget: matmul 60% (split over dtypes), bandwidth 25%, overhead 15%.
    plan = [("matmul", d, 0.60 / len(dtypes)) for d in dtypes] + [("bandwidth", None, 0.25), ("overhead", None, 0.15)]
    start = time.perf_counter()
    done_share = 0.0

    peaks: dict[str, float] = {}
    sources: dict[str, dict[str, str]] = {}
    bandwidth = overhead = None
    sizes = _GPU_SIZES if is_cuda else _CPU_SIZES

    for what, spec, share in plan:
        done_share += share
        deadline = start + budget * done_share
        report(_label(what, spec), (done_share - share))
        if what == "matmul":
            name, dt, tf32 = spec
            result = _measure_matmul(torch, dev, dt, tf32, sizes, deadline, sync)
            if result is None:
                report(f"matmul {name}: not supported here, skipped", done_share)
                continue
            rate, best_n, tried, blocks = result
            peaks[name] = rate
            sources[f"peak_flops.{name}"] = _src(
                f"measured by {GENERATOR}: best sustained torch.mm rate over square sizes "
                f"{', '.join(map(str, tried))} (best n={best_n}, median of {blocks} timed blocks); {env}",
                today,
                "achieved on this machine, not a datasheet peak",
            )
            report(f"matmul {name}: {_fmt_rate(rate, 'FLOP/s')} (n={best_n})", done_share)
        elif what == "bandwidth":
            bandwidth, nbytes, blocks = _measure_bandwidth(torch, dev, is_cuda, budget, deadline, sync)
            sources["memory_bandwidth_bytes_per_s"] = _src(
                f"measured by {GENERATOR}: copy of a {nbytes / 2**20:.0f} MiB tensor, bytes read + written "
                f"per second (median of {blocks} timed blocks); {env}",
                today,
                "achieved copy bandwidth, not a datasheet peak",
            )
            report(f"memory bandwidth: {_fmt_rate(bandwidth, 'B/s')}", done_share)
        else:
            overhead, ops, blocks = _measure_overhead(torch, dev, deadline, sync)
            sources["per_op_overhead_s"] = _src(
                f"measured by {GENERATOR}: median time per in-place add on a 1-element tensor "
                f"({blocks} blocks of {ops} ops); {env}",
                today,
            )
            report(f"per-op overhead: {overhead * 1e6:.2f} µs", done_share)

    if not peaks:  # pragma: no cover - fp32 matmul always works
        raise UserError(f"calibration could not run a matmul on {dev}")

    if is_cuda:
        props = torch.cuda.get_device_properties(dev)
        memory = int(props.total_memory)
        name = torch.cuda.get_device_name(dev)
        vendor = "AMD" if getattr(torch.version, "hip", None) else "NVIDIA"
        count = torch.cuda.device_count()
        sources["memory_bytes"] = _src("torch.cuda.get_device_properties().total_memory on this machine", today)
        sources["devices_per_node"] = _src("torch.cuda.device_count() on this machine", today)
    else:
        memory = _host_memory_bytes()
        model, vendor = _cpu_model()
        name = f"{model} ({torch.get_num_threads()} threads)"
        count = 1
        sources["memory_bytes"] = _src("psutil.virtual_memory().total on this machine", today)
        sources["devices_per_node"] = _src("one CPU device (this machine)", today)

    report("done", 1.0)
    return Device(
        id=PROFILE_ID,
        name=name,
        vendor=vendor,
        kind="gpu" if is_cuda else "cpu",
        peak_flops=peaks,
        memory_bytes=memory,
        memory_bandwidth_bytes_per_s=bandwidth,
        devices_per_node=count,
        per_op_overhead_s=overhead,
        sources=sources,
        origin="measured by " + GENERATOR,
    )


def save_profile(device: Device, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the profile as TOML (atomically); never overwrites a file it did not write."""
    target = check_profile_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {target.parent}: {exc.strerror or exc}") from None
    if device.id != PROFILE_ID:
        from dataclasses import replace

        device = replace(device, id=PROFILE_ID)
    header = (
        f"Calibration profile of this machine, written by `{GENERATOR}` on {_dt.date.today().isoformat()}.\n"
        "Figures are what this machine achieved, not datasheet peaks. Re-run the command to refresh."
    )
    write_text(target, device_to_toml(device, generator=GENERATOR, header=header), force=True)  # ours: checked above
    return target


def check_profile_target(path: str | os.PathLike[str] | None = None) -> Path:
    """Where ``save_profile`` would write; UserError if that would overwrite a file it did not write."""
    target = Path(path) if path is not None else profile_path()
    check_ours_to_overwrite(target, GENERATOR)
    return target


def load_profile(path: str | os.PathLike[str] | None = None) -> Device:
    """The saved profile of this machine; UserError telling how to make one when there is none."""
    target = Path(path) if path is not None else profile_path()
    if not target.is_file():
        raise UserError(
            f"this machine has no calibrated profile (looked for {target}); run: mlfootprint hardware calibrate"
        )
    devices = load_devices_file(target)
    if PROFILE_ID not in devices:
        raise UserError(
            f"hardware file {target}: defines no [devices.{PROFILE_ID}]; re-run: mlfootprint hardware calibrate"
        )
    return devices[PROFILE_ID]


# --------------------------------------------------------------------------- measurements


def _measure_matmul(torch: Any, dev: Any, dt: Any, tf32: bool, sizes, deadline: float, sync):
    """(best sustained FLOP/s, its n, sizes tried, blocks) or None when the dtype is unsupported."""
    prev_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        try:
            probe = torch.ones(8, 8, device=dev, dtype=dt)
            torch.mm(probe, probe)
            sync()
        except (RuntimeError, TypeError, NotImplementedError):
            return None
        results: list[tuple[float, int, int]] = []
        tried: list[int] = []
        for i, n in enumerate(sizes):
            now = time.perf_counter()
            if results and now >= deadline:
                break
            per_size = max(deadline - now, 0.0) / (len(sizes) - i)
            try:
                a = torch.randn(n, n, device=dev).to(dt)
                b = torch.randn(n, n, device=dev).to(dt)
                c = torch.empty(n, n, device=dev, dtype=dt)
            except (RuntimeError, MemoryError):  # out of memory at this size
                break
            one = _time(lambda: torch.mm(a, b, out=c), 1, sync)  # warm-up (kernel selection, thread pool)
            if results and one * 3 > per_size:
                break  # this size would not get a fair measurement in the time left
            one = min(one, _time(lambda: torch.mm(a, b, out=c), 1, sync))
            reps = max(1, int(per_size / 6 / max(one, 1e-9)))
            flop = 2.0 * n**3 * reps
            rates = _blocks(lambda: torch.mm(a, b, out=c), reps, sync, time.perf_counter() + per_size, flop)
            results.append((statistics.median(rates), n, len(rates)))
            tried.append(n)
            del a, b, c
        if not results:  # pragma: no cover - the first size always runs
            return None
        rate, n, blocks = max(results)
        return rate, n, tried, blocks
    finally:
        torch.set_float32_matmul_precision(prev_precision)


def _measure_bandwidth(torch: Any, dev: Any, is_cuda: bool, budget: float, deadline: float, sync):
    if is_cuda:
        free, _total = torch.cuda.mem_get_info(dev)
        nbytes = int(min(2**30, free // 4))
    else:
        nbytes = 256 * 2**20 if budget >= 10 else 64 * 2**20
        nbytes = int(min(nbytes, _host_memory_bytes() // 16))
    n = max(nbytes // 4, 1)
    nbytes = n * 4
    src = torch.empty(n, device=dev, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    one = _time(lambda: dst.copy_(src), 1, sync)  # warm-up: first touch of dst
    one = min(one, _time(lambda: dst.copy_(src), 1, sync))
    remaining = max(deadline - time.perf_counter(), 0.0)
    reps = max(1, int(remaining / 6 / max(one, 1e-9)))
    rates = _blocks(lambda: dst.copy_(src), reps, sync, deadline, 2.0 * nbytes * reps)
    del src, dst
    return statistics.median(rates), nbytes, len(rates)


def _measure_overhead(torch: Any, dev: Any, deadline: float, sync):
    x = torch.zeros(1, device=dev)
    for _ in range(50):  # warm-up
        x.add_(1.0)
    sync()
    ops = 200
    per_op: list[float] = []
    while True:
        t = _time(lambda: x.add_(1.0), ops, sync)
        per_op.append(t / ops)
        if time.perf_counter() >= deadline or len(per_op) >= 200:
            break
    return statistics.median(per_op), ops, len(per_op)


def _time(fn: Callable[[], Any], reps: int, sync) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return time.perf_counter() - t0


def _blocks(fn: Callable[[], Any], reps: int, sync, deadline: float, work: float) -> list[float]:
    """Rates (work per second) of timed blocks of ``reps`` calls, until the deadline (at least one)."""
    rates: list[float] = []
    while True:
        t = _time(fn, reps, sync)
        rates.append(work / max(t, 1e-12))
        if time.perf_counter() >= deadline or len(rates) >= _MAX_BLOCKS:
            return rates


# --------------------------------------------------------------------------- helpers


def check_device(device: str) -> None:
    """A UserError now, before any measuring or message, when ``device`` is not one this machine has."""
    import torch

    _resolve_device(torch, device)


def _resolve_device(torch: Any, device: str):
    d = str(device).strip().lower()
    if d == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if d == "cpu":
        return torch.device("cpu")
    if d == "cuda" or d.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device is available here; use --device cpu or auto")
        try:
            dev = torch.device(d)
        except RuntimeError:
            raise UserError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N") from None
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    raise UserError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N")


def _src(source: str, date: str, note: str | None = None) -> dict[str, str]:
    out = {"source": source, "date": date, "provenance": "measured"}
    if note:
        out["note"] = note
    return out


def _label(what: str, spec: Any) -> str:
    if what == "matmul":
        return f"matmul {spec[0]} …"
    return {"bandwidth": "memory bandwidth …", "overhead": "per-op overhead …"}[what]


def _fmt_rate(v: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if v >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def _host_memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover - psutil is a dependency
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _cpu_model() -> tuple[str, str]:
    model, vendor_id = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "vendor_id" and not vendor_id:
                    vendor_id = value.strip()
                if model and vendor_id:
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "CPU"
    vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vendor_id)
    if vendor is None:
        low = model.lower()
        known = [v for v in ("Apple", "Intel", "AMD") if v.lower() in low]
        vendor = known[0] if known else (platform.machine() or "unknown")
    return model, vendor
