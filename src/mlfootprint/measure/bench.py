"""`bench`: real runs of a workload on this machine, measured next to the prediction.

One *step* is what the trace describes: a training step (forward, backward and
the optimizer step; with ``--grad-accum N``, N forward+backward passes on
micro-batches then one optimizer step), one inference forward pass, or one
``generate`` call producing ``--gen-tokens`` tokens (Hugging Face causal LMs).

How it measures:

1. the model is built for real on the device (Hugging Face models get
   deterministic weights: N(0, 0.02) matrices, zero biases, unit norm scales —
   uninitialized memory could hold denormals that slow CPUs down);
2. ``warmup`` untimed steps (allocator warm-up, optimizer state creation, lazy kernels);
3. timed steps, each bracketed by ``torch.cuda.synchronize`` on CUDA, repeated
   until the 95% confidence interval of the median is within ``threshold``
   of it (relative half-width; at least ``min_repeats`` steps), or for exactly
   ``repeats`` steps when given, or until ``max_time_s`` has passed;
4. peak memory from the CUDA allocator during the timed steps, or on the CPU
   from one extra untimed step measured the way mlfootprint's memory module
   does it (CPU allocator events from ``torch.profiler``: ``mlfootprint.measure.memory.measure_peak``);
5. energy of the timed steps from :func:`~mlfootprint.measure.energy.auto_meter`
   (measured, or modeled when only a TDP is known: labelled).

An out-of-memory error (``torch.OutOfMemoryError``, a ``RuntimeError``
saying "out of memory", or ``MemoryError``) makes the bench retry with half the
batch; the report says which batch was asked for, which failed, and the largest
that ran, and measures that one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from ..core.errors import UserError
from ..models.build import build
from ..trace.optim import make_optimizer, zo_sgd_perturb
from ..core.state import isolated_global_state
from ..trace.transforms import prepare_model
from ..workload import Workload
from . import stats
from .energy import MeterUnavailable, SafeMeter, auto_meter
from .memory import CUDA_METHOD, PROFILER_METHOD, measure_peak
from .reference import energy_reason, resolve_device
from ..core.units import plain_number

DEFAULT_THRESHOLD = 0.05
DEFAULT_MAX_TIME_S = 30.0
DEFAULT_WARMUP = 2
DEFAULT_MIN_REPEATS = 5
MAX_ADAPTIVE_REPEATS = 1000

ERROR_CONVENTION = ("error_fraction = (predicted - measured) / measured: positive when the prediction is higher; "
                    "for step_s that means predicted slower, for throughput and MFU predicted faster")


class _OutOfMemory(Exception):
    def __init__(self, batch: int, message: str) -> None:
        super().__init__(message)
        self.batch = batch
        self.message = message


# More timed runs than any statistic needs (a p99 is stable from a few thousand): a bigger count is a typo, and
# --repeats is not bounded by --max-time.
MAX_REPEATS = 100_000

def is_oom(exc: BaseException) -> bool:
    """Out of device or host memory, as PyTorch and Python report it."""
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


# --------------------------------------------------------------------------- setup


def torch_device(device: str | torch.device | None) -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UserError(f"unknown --device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: PyTorch sees no CUDA device on this machine; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise UserError(f"--device {text}: bench runs on cpu or cuda devices")
    return dev


def check_workload(wl: Workload) -> None:
    """What bench cannot run on one device, said before anything is built."""
    multi = [f"--{k} {getattr(wl, k)}" for k in ("dp", "tp", "pp", "ep") if getattr(wl, k) != 1]
    if wl.devices not in (None, 1):
        multi.append(f"--devices {wl.devices}")
    if multi:
        raise UserError(f"bench runs on one device, not {', '.join(multi)}; measure a multi-device job from inside "
                        "it with mlfootprint.track (under torchrun), and predict it with 'mlfootprint predict'")
    if wl.zero or wl.offload != "none":
        raise UserError("bench does not run ZeRO or offloading (one device, plain PyTorch); drop --zero/--offload")
    if wl.quant != "none":
        raise UserError(f"bench does not run quantized weights (--quant {wl.quant}); bench the unquantized model, "
                        "or estimate the quantized one with 'mlfootprint predict'")


def _init_weights(module: torch.nn.Module, seed: int) -> None:
    """Deterministic, ordinary values for weights built without initialization."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.dtype.is_floating_point:
                continue
            if p.dim() >= 2:
                values = torch.randn(p.shape, generator=gen, dtype=torch.float32, device="cpu") * 0.02
                p.copy_(values.to(p.dtype))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def _effective_batch(spec: Any, wl: Workload) -> int:
    if spec.source == "factory" and "batch" not in wl.given and spec.input_specs:
        return int(spec.input_specs[0].shape[0])
    return wl.batch


def _with_batch(wl: Workload, batch: int) -> Workload:
    return wl.with_changes(batch=batch)


@dataclasses.dataclass
class _Run:
    """One built workload, ready to step."""

    step: Callable[[], Any]
    module: torch.nn.Module
    optimizer: Any
    inputs: tuple[tuple[Any, ...], dict[str, Any]]
    tokens: int  # per step (all micro-batches)
    token_unit: str
    notes: list[str]
    samples: int  # sequences / images per step (all micro-batches)


def _autocast(wl: Workload, dev: torch.device):
    if not wl.autocast:  # full precision, or 16-bit working weights (the model is built in its compute dtype)
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=getattr(torch, wl.precision_info.compute_dtype))


def _build(spec: Any, wl: Workload, dev: torch.device, seed: int) -> _Run:
    notes: list[str] = []
    accum = wl.grad_accum if wl.training else 1
    micro_wl = wl
    if accum > 1:
        micro = wl.micro_batch or max(1, wl.batch // accum)
        micro_wl = _with_batch(wl, micro)
        notes.append(f"a training step is {accum} forward+backward passes on micro-batches of {micro}, "
                     "then one optimizer step")
    torch.manual_seed(seed)
    with torch.device(dev):
        try:
            built = build(spec, micro_wl)
        except UserError:
            raise
        except Exception as exc:
            if is_oom(exc):
                raise
            raise UserError(f"cannot build {spec.name!r} on {dev}: {type(exc).__name__}: {exc}") from None
        module = built.module
        if spec.source != "factory":
            _init_weights(module, seed)
        notes.extend(prepare_model(module, micro_wl))
        args, kwargs = built.make_inputs()
    module.train(wl.training)
    samples = _first_dim(args, kwargs) or micro_wl.batch
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = None
    if wl.training:
        optimizer, opt_notes = make_optimizer(wl, params)
        notes.extend(opt_notes)
    cast = lambda: _autocast(wl, dev)  # noqa: E731

    if wl.mode == "generate":
        generate = getattr(module, "generate", None)
        if generate is None or spec.task != "causal-lm":
            raise UserError(f"--mode generate needs a Hugging Face causal language model; {spec.name!r} is not one "
                            "(bench it with --mode inference)")
        gen_kwargs = {k: v for k, v in kwargs.items() if k not in ("use_cache", "labels")}
        ids = gen_kwargs.get("input_ids")
        context = spec.facts.get("context")
        if context and ids is not None and ids.shape[-1] + wl.gen_tokens > context:
            raise UserError(f"--seq {ids.shape[-1]} + --gen-tokens {wl.gen_tokens} exceeds {spec.name}'s context of "
                            f"{context} positions; shorten the prompt (--seq) or generate fewer tokens")
        if ids is not None:
            gen_kwargs.setdefault("attention_mask", torch.ones_like(ids))
        cfg = getattr(module, "generation_config", None)
        pad = getattr(cfg, "pad_token_id", None) if cfg is not None else None
        if pad is None:
            pad = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        if isinstance(pad, (list, tuple)):
            pad = pad[0] if pad else None
        n = wl.gen_tokens

        def step() -> Any:
            with torch.inference_mode(), cast():
                return generate(*args, **gen_kwargs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                pad_token_id=pad if pad is not None else 0)

        batch = int(ids.shape[0]) if ids is not None else wl.batch
        notes.append(f"generate: greedy decoding of exactly {n} new tokens per sequence after the prompt "
                     "(prefill included in the latency); throughput counts generated tokens")
        return _Run(step, module, None, (args, kwargs), batch * n, "generated tokens", notes, batch)

    if not wl.training:
        def step() -> Any:
            with torch.inference_mode(), cast():
                return module(*args, **kwargs)

        return _Run(step, module, None, (args, kwargs), built.tokens, built.token_unit, notes, samples)

    if wl.optimizer == "zo-sgd":
        def step() -> Any:
            with torch.no_grad(), cast():
                zo_sgd_perturb(params, 1e-3)
                built.loss(module(*args, **kwargs))
                zo_sgd_perturb(params, -2e-3)
                loss = built.loss(module(*args, **kwargs))
                zo_sgd_perturb(params, 1e-3)
                zo_sgd_perturb(params, -1e-3)
            return loss

        return _Run(step, module, None, (args, kwargs), built.tokens * accum, built.token_unit, notes, samples * accum)

    assert optimizer is not None

    def step() -> Any:
        optimizer.zero_grad(set_to_none=True)
        for _ in range(accum):
            with cast():
                loss = built.loss(module(*args, **kwargs))
            (loss / accum if accum > 1 else loss).backward()
        optimizer.step()
        return None

    if wl.precision == "fp16-mixed":
        notes.append("fp16-mixed: steps run without a gradient scaler (same work; the scaler's few "
                     "elementwise ops are not timed)")
    return _Run(step, module, optimizer, (args, kwargs), built.tokens * accum, built.token_unit, notes, samples * accum)


def _first_dim(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    for t in list(args) + list(kwargs.values()):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return None


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _free(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar on stderr (only on a terminal unless forced); a no-op otherwise."""

    def __init__(self, enabled: bool | None, total: int | None, label: str) -> None:
        self._progress = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(label, total=total, info="")
        except Exception:  # noqa: BLE001 - a progress bar is never worth failing for
            self._progress = None

    def update(self, description: str | None = None, advance: int = 0, info: str = "", total: int | None = None) -> None:
        if self._progress is None:
            return
        kw: dict[str, Any] = {"advance": advance, "info": info}
        if description:
            kw["description"] = description
        if total is not None:
            kw["total"] = total
        self._progress.update(self._task, **kw)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# --------------------------------------------------------------------------- measuring


@dataclasses.dataclass
class Timings:
    times: list[float]
    warmup: int
    stopped: str
    tokens: int
    token_unit: str
    batch: int
    samples: int
    peak_memory_bytes: int | None
    memory_method: str
    reserved_memory_bytes: int | None
    energy: Any  # EnergyReading | None
    energy_why: str
    notes: list[str]


def _measure_at(spec: Any, wl: Workload, dev: torch.device, *, repeats: int | None, warmup: int,
                max_time_s: float | None, threshold: float, min_repeats: int, seed: int, meter_factory: Callable[[], Any] | None,
                progress: _Progress, clock: Callable[[], float]) -> Timings:
    try:
        run = _build(spec, wl, dev, seed)
    except Exception as exc:
        if is_oom(exc):
            raise _OutOfMemory(wl.batch, _oom_text(exc)) from None
        raise
    batch = wl.batch
    try:
        for i in range(warmup):
            progress.update(f"warm-up {i + 1}/{warmup} (batch {batch})")
            run.step()
            _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        meter = None
        energy_why = ""
        if meter_factory is not None:
            try:
                meter = meter_factory()
            except MeterUnavailable as exc:
                energy_why = energy_reason(exc.reason, "name a device that has a TDP with --hardware ID")
        if meter is not None:
            meter.start()
        times: list[float] = []
        limit = max_time_s
        if limit is None and repeats is None:
            limit = DEFAULT_MAX_TIME_S
        progress.update(f"timing (batch {batch})", total=repeats)
        started = clock()
        stopped = ""
        while True:
            _sync(dev)
            t0 = clock()
            run.step()
            _sync(dev)
            times.append(clock() - t0)
            if meter is not None:
                meter.poll()  # outside the timed bracket; keeps wrapping counters right, cheap
            n = len(times)
            ci = stats.median_ci_fraction(times) if n >= 2 else math.inf
            progress.update(advance=1, info=f"median {plain_number(statistics.median(times) * 1e3, 3)} ms ±{min(ci, 9.99):.1%}")
            if repeats is not None:
                if n >= repeats:
                    stopped = f"{repeats} repeats (--repeats)"
                    break
            elif n >= min_repeats and ci <= threshold:
                stopped = (f"stable: the 95% confidence interval of the median is within ±{ci:.1%} "
                           f"(threshold ±{threshold:.0%})")
                break
            elif n >= MAX_ADAPTIVE_REPEATS:
                stopped = f"{MAX_ADAPTIVE_REPEATS} repeats (the cap) before the median was within ±{threshold:.0%}"
                break
            if limit is not None and clock() - started >= limit:
                stopped = (f"time limit of {limit:g} s (--max-time) after {n} repeats; the median's "
                           f"95% confidence interval is ±{ci:.1%}" if n >= 2 else
                           f"time limit of {limit:g} s (--max-time) after 1 repeat")
                break
        reading = meter.stop() if meter is not None else None
        if meter is not None:
            meter.close()
        reserved = None
        peak, method = 0, ""
        if dev.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(dev))
            reserved = int(torch.cuda.max_memory_reserved(dev))
            method = CUDA_METHOD
        done = Timings(times, warmup, stopped, run.tokens, run.token_unit, batch, run.samples, None, "", reserved,
                        reading, energy_why, run.notes)
        if dev.type == "cuda":
            done.peak_memory_bytes, done.memory_method = peak, method
        else:
            progress.update("measuring peak memory (one extra step)")
            run = None  # measure_peak builds its own copy inside the profiled region: free this one first
            _free(dev)
            result = measure_peak(lambda: _build(spec, wl, dev, seed), lambda r: r.step(), warmup=1)
            done.peak_memory_bytes, done.memory_method = int(result.peak_bytes), PROFILER_METHOD
        return done
    except Exception as exc:
        if is_oom(exc):
            raise _OutOfMemory(batch, _oom_text(exc)) from None
        raise
    finally:
        del run
        _free(dev)


def _oom_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class BenchRun:
    """What one bench measured: the workload that ran, its timings, and how the device was chosen."""

    workload: Workload  # the workload that ran (its batch halved after out-of-memory errors, if any)
    device: torch.device
    timings: Timings
    requested_batch: int
    failures: list[tuple[int, str]]  # (batch, error) of the runs that ran out of memory
    hardware: Any  # the catalog Device for the peak and the predictions, or None
    hardware_why: str  # how it was chosen, or why there is none
    hardware_notes: list[str]


def check_options(wl: Workload, repeats: int | None, warmup: int, max_time_s: float | None, threshold: float) -> None:
    check_workload(wl)
    if repeats is not None and (isinstance(repeats, bool) or not isinstance(repeats, int)
                                or not 1 <= repeats <= MAX_REPEATS):
        raise UserError(f"--repeats must be a whole number from 1 to {MAX_REPEATS:,} (--max-time bounds the "
                        f"runs without it), got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise UserError(f"--warmup must be a whole number >= 0, got {warmup!r}")
    if wl.training and warmup < 1:
        raise UserError("--warmup must be at least 1 in --mode train: the first step creates the optimizer state")
    if max_time_s is not None and (not math.isfinite(max_time_s) or max_time_s <= 0):
        raise UserError(f"--max-time must be a positive number of seconds, got {max_time_s!r}")
    if not 0 < threshold < 1:
        raise UserError(f"--threshold must be a fraction between 0 and 1 (e.g. 0.05 for ±5%), got {threshold!r}")


def run_bench(spec: Any, wl: Workload, *, repeats: int | None = None, warmup: int = DEFAULT_WARMUP,
              max_time_s: float | None = None, threshold: float = DEFAULT_THRESHOLD,
              min_repeats: int = DEFAULT_MIN_REPEATS, device: str | None = "auto", energy: bool = True,
              progress: bool | None = None, seed: int = 0, clock: Callable[[], float] = time.perf_counter,
              meter_factory: Callable[[], Any] | None = None) -> BenchRun:
    """Run the workload for real on this machine, halving the batch after an out-of-memory error."""
    check_options(wl, repeats, warmup, max_time_s, threshold)
    dev = torch_device(device)
    hw, hw_why, hw_notes = resolve_device(wl.hardware, dev)
    if hw is not None and wl.hardware and (hw.kind == "cpu") != (dev.type == "cpu"):
        # a CPU run set beside a GPU's prediction (or the reverse) compares two machines, not a prediction with
        # its measurement
        raise UserError(f"bench runs on this machine's {dev.type}, but --hardware {wl.hardware} is a {hw.kind}: its "
                        "prediction and peak do not describe this run; drop --hardware (after 'mlfootprint hardware "
                        f"calibrate' the profile 'this' is used), or run bench where the {hw.kind} is")
    if meter_factory is None and energy:
        tdp = getattr(hw, "tdp_w", None) if hw is not None and (hw.kind == "cpu") == (dev.type == "cpu") else None
        meter_factory = lambda: SafeMeter(auto_meter(dev, fallback_tdp_w=tdp))  # noqa: E731
    elif not energy:
        meter_factory = None
    requested = _effective_batch(spec, wl)
    batch = requested
    failures: list[tuple[int, str]] = []
    bar = _Progress(progress, repeats, "bench")
    try:
        # transformers stays quiet while it builds, and its log level, torch's default dtype and deterministic
        # flags are the caller's again afterwards
        with isolated_global_state():
            while True:
                # the batch measured, also when it is the --input shapes' (the workload's batch left at 1)
                wl_b = wl if batch == wl.batch else _with_batch(wl, batch)
                try:
                    timings = _measure_at(spec, wl_b, dev, repeats=repeats, warmup=warmup, max_time_s=max_time_s,
                                          threshold=threshold, min_repeats=min_repeats, seed=seed,
                                          meter_factory=meter_factory, progress=bar, clock=clock)
                    break
                except _OutOfMemory as oom:
                    failures.append((batch, oom.message))
                    if batch <= 1:
                        raise UserError(
                            f"out of memory on {dev} even at batch 1 ({oom.message}); tried batch "
                            f"{', '.join(str(b) for b, _ in failures)}. Try a shorter --seq, --precision bf16, "
                            "--recompute full, or a device with more memory") from None
                    batch = max(1, batch // 2)
                    bar.update(f"out of memory: retrying with batch {batch}")
                except (UserError, KeyboardInterrupt):
                    raise
                except Exception as exc:
                    text = " ".join(str(exc).split())[:300]
                    raise UserError(f"running {spec.name!r} failed ({type(exc).__name__}: {text}); check that the model "
                                    "runs with these inputs and this workload (--mode, --precision, --input)") from None
    finally:
        bar.close()
    return BenchRun(wl_b, dev, timings, requested, failures, hw, hw_why, hw_notes)


def device_label(dev: torch.device) -> str:
    if dev.type == "cuda":
        try:
            return f"{dev} ({torch.cuda.get_device_name(dev)})"
        except Exception:  # noqa: BLE001
            return str(dev)
    return f"cpu ({torch.get_num_threads()} threads)"
