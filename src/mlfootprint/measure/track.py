"""`mlfootprint.track`: step time, tokens/s, MFU/HFU, memory and energy from your own training loop.

    import mlfootprint as mf

    with mf.track(model=model, hardware="a100-80gb", grad_accum=4, report="run.json") as t:
        for batch in loader:
            loss = model(**batch).loss / 4
            loss.backward()
            t.step(tokens=batch["input_ids"].numel())   # once per micro-batch
            if t.micro_step == 0:                         # the 4th call closed an optimizer step
                optimizer.step(); optimizer.zero_grad()

What a *step* is: one optimizer step. Call ``t.step()`` once per micro-batch
(forward + backward); with ``grad_accum=N`` every N-th call closes a step, and
its tokens are the sum over its micro-batches. ``t.step(optimizer_step=True)``
closes a step at any call (variable accumulation; the last, short
accumulation of an epoch). Without gradient accumulation, call it once per
step. ``tokens=`` are this rank's tokens (or samples, for models that do not
take tokens); when omitted, ``tokens_per_step`` (per optimizer step) / N is used.

What is recorded, per step: its wall time (between two step boundaries), the
tokens, the micro-batches; at most every ``sample_interval_s`` seconds the
peak memory and the energy so far. From these: step-time distribution,
tokens/s, MFU and HFU (model and hardware FLOPs per step over the step time ×
the device's dense peak for the precision in use).

FLOPs per step come from a trace of your model taken once, lazily: a forward
pre-hook records the shapes of the first training forward's inputs, and at the
end of the first step the model is traced on fake tensors (no memory, your
model untouched; the pause is left out of the step times). Or give
``flops_per_token=`` (and ``hardware_flops_per_token=``) yourself.

Cost: ``t.step()`` reads the clock and appends to lists — no device
synchronization (``sync=True`` adds one per step, for exact per-step times on
CUDA), no I/O except a buffered write every ``flush_interval_s`` when writing
per-rank files. The benchmark ``benchmarks/bench_track_overhead.py`` measures it.

Failures never stop the loop: an energy meter that fails is logged once and
its figure becomes unavailable (the joules measured before are kept); a meter
call that blocks is abandoned after ``meter_timeout_s`` (it runs in a daemon
thread) with the same result; a model that cannot be traced leaves MFU
unavailable with the reason. ``step()`` with bad arguments (tokens that are
not a number >= 0: a string, a list, NaN, a negative count) still counts the
micro-batch (``micro_step`` follows the loop) but leaves its optimizer step
out of the figures, with one warning per run and a note in the report. NaN or
infinite figures are written as null with a note: the report is strict JSON.

Nested trackers are exact, not refused: a library may track inside a loop the
user tracks. What one tracker does for itself (tracing its model, building and
writing its report) is left out of every other running tracker's current step,
and its forward hook neither fires during another tracker's trace nor travels
into the deep copy a trace makes. A report path
that cannot be written is reported when tracking starts and again at the end
(logged, and printed on stderr); the report stays in memory (``t.report``) and
``t.save(path)`` writes it elsewhere. Nothing raises out of ``step()`` or out
of the ``with`` block's exit. Bad arguments (an unknown hardware id, a
negative ``grad_accum``) raise :class:`~mlfootprint.core.errors.UserError` when the
tracker is made, before any training.

Under ``torch.distributed`` (``torchrun``) every rank tracks its own steps and
rank 0 writes one report with per-rank and global figures; see
:mod:`mlfootprint.measure.distributed`.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
import numbers
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.errors import UserError
from ..workload import Workload
from . import distributed as dist_mod
from .bounded import CallTimeout, call_bounded
from .energy import EnergyMeter, MeterUnavailable, SafeMeter, auto_meter
from .memory import CUDA_METHOD, RSS_METHOD, peak_rss_bytes
from ..hardware.catalog import Device, dtype_for_precision
from .reference import energy_reason, peak_flops, resolve_device
from .track_model import InputShapes, model_device, optimizer_name, param_precision, trace_flops, unwrap
from ..core.units import plain_number

logger = logging.getLogger("mlfootprint.track")

_ACTIVE: list[Tracker] = []
_SERIAL = [0]  # distributed trackers started in this process: the store key of each run
_SERIAL_LOCK = threading.Lock()

MODES = ("train", "inference")


def current_tracker() -> Tracker | None:
    """The innermost tracker running in this process (for code decorated with ``@track(...)``)."""
    return _ACTIVE[-1] if _ACTIVE else None


def _positive(name: str, value: Any, integer: bool = False, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not (value > 0) or (not integer and not math.isfinite(value)):
        kind = "a positive whole number" if integer else "a positive number"
        raise UserError(f"track: {name} must be {kind}, got {value!r}")


def _check_device(device: Any) -> torch.device:
    """The torch device the loop runs on; a UserError for a name torch does not know or a device not here."""
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise UserError(f"track: device must be a torch device or its name (e.g. 'cpu', 'cuda:0'), "
                        f"got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"track: device {device!r} is not a torch device; use e.g. 'cpu', 'cuda' or 'cuda:0'") from None
    if dev.type == "meta":
        raise UserError("track: device 'meta' runs nothing to measure; pass the device the loop runs on")
    backend = getattr(torch, dev.type, None) if dev.type != "cpu" else None
    if backend is not None and hasattr(backend, "is_available"):  # a type torch has no module for (xla): trusted
        try:
            available = bool(backend.is_available())
            count = int(backend.device_count()) if available and hasattr(backend, "device_count") else None
        except Exception:  # noqa: BLE001 - a backend that cannot even say: not available
            available, count = False, None
        if not available:
            raise UserError(f"track: device {str(dev)!r} is not available here (torch finds no {dev.type} device); "
                            "pass device='cpu' or run on a machine with one")
        if count is not None and dev.index is not None and dev.index >= count:
            raise UserError(f"track: device {str(dev)!r} does not exist: torch sees {count} {dev.type} device(s), "
                            f"{dev.type}:0 to {dev.type}:{count - 1}")
    return dev


def _check_report(report: Any) -> Path | None:
    if report is None:
        return None
    if not isinstance(report, (str, os.PathLike)) or isinstance(report, bytes):
        raise UserError(f"track: report must be a file path (str or Path), got {type(report).__name__} {report!r}"[:200])
    text = os.fspath(report)
    if not isinstance(text, str) or not text.strip():
        raise UserError("track: report must be a file path, got an empty one")
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"track: report path {text!r} cannot be used ({exc})") from None


def _check_flag(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, bool):
        raise UserError(f"track: {name} must be True or False, got {value!r}"[:200])


def _bad_tokens(tokens: Any) -> str | None:
    """Why `tokens` cannot be a step's token count (None when it can). Tensors are checked without a device sync:
    their value is checked when the step is recorded."""
    if isinstance(tokens, torch.Tensor):
        if tokens.is_complex() or tokens.dtype == torch.bool:
            return f"a {tokens.dtype} tensor"
        return None
    if isinstance(tokens, bool) or not isinstance(tokens, numbers.Real):
        return f"{type(tokens).__name__} {tokens!r}"[:80]
    value = float(tokens)
    if not math.isfinite(value):
        return f"{value} (not a finite number)"
    if value < 0:
        return f"{tokens!r} (negative)"
    return None


class _CaptureHook:
    """The forward pre-hook on the user's model. A deep copy of the model (the trace's fake copy, the user's
    EMA copy) gets a hook that does nothing: neither copies of the tracker nor calls from copies reach it."""

    def __init__(self, tracker: Tracker | None) -> None:
        self.tracker = tracker

    def __call__(self, module: Any, args: Any, kwargs: Any) -> None:
        if self.tracker is not None and threading.get_ident() not in _TRACING_THREADS:
            self.tracker._capture(module, args, kwargs)

    def __deepcopy__(self, memo: Any) -> _CaptureHook:
        return _CaptureHook(None)


_TRACING_THREADS: set[int] = set()  # threads tracing a model now: their forwards are not the user's


class _OwnWork:
    """Context: the time it takes is shifted out of every *other* running tracker's current step."""

    def __init__(self, owner: Tracker) -> None:
        self.owner = owner
        self.before: list[tuple[Tracker, float]] = []

    def __enter__(self) -> _OwnWork:
        for tr in list(_ACTIVE):
            if tr is not self.owner and tr._running:
                try:
                    self.before.append((tr, tr._clock()))
                except Exception:  # noqa: BLE001
                    pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for tr, t0 in self.before:
            try:
                pause = tr._clock() - t0
                if pause > 0:
                    tr._t_prev += pause
                    tr._paused_s += pause
            except Exception:  # noqa: BLE001
                pass


class Tracker:
    """Tracks a training (or inference) loop; use through :func:`track`."""

    def __init__(self, model: Any = None, *, hardware: Any = None, precision: str | None = None,
                 tokens_per_step: float | None = None, grad_accum: int = 1,
                 flops_per_token: float | None = None, hardware_flops_per_token: float | None = None,
                 report: str | os.PathLike[str] | None = None, name: str | None = None,
                 energy: bool | EnergyMeter = True, device: Any = None, sync: bool = False,
                 warmup_steps: int = 1, optimizer: Any = None, mode: str = "train", trace: bool = True,
                 sample_interval_s: float = 1.0, flush_interval_s: float = 10.0, gather_timeout_s: float = 60.0,
                 meter_timeout_s: float = 2.0, rank_files: bool | None = None, log_every: int | None = None,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.perf_counter,
                 report_builder: Callable[..., Any] | None = None) -> None:
        _positive("grad_accum", grad_accum, integer=True, allow_none=False)
        _positive("tokens_per_step", tokens_per_step)
        _positive("flops_per_token", flops_per_token)
        _positive("hardware_flops_per_token", hardware_flops_per_token)
        _positive("log_every", log_every, integer=True)
        if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 0:
            raise UserError(f"track: warmup_steps must be a whole number >= 0, got {warmup_steps!r}")
        for label, v in (("sample_interval_s", sample_interval_s), ("flush_interval_s", flush_interval_s),
                         ("gather_timeout_s", gather_timeout_s), ("meter_timeout_s", meter_timeout_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                raise UserError(f"track: {label} must be a number of seconds >= 0, got {v!r}")
        if mode not in MODES:
            raise UserError(f"track: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if model is not None and not isinstance(model, torch.nn.Module):
            raise UserError(f"track: model must be a torch.nn.Module, got {type(model).__name__}")
        if precision is not None:
            if not isinstance(precision, str):
                raise UserError(f"track: precision must be a name like 'bf16-mixed', got {precision!r}"[:200])
            dtype_for_precision(precision)  # UserError for an unknown precision
        if hardware is not None and not isinstance(hardware, (str, Device)):
            raise UserError(f"track: hardware must be a catalog device id like 'a100-80gb', got {hardware!r}"[:200])
        if name is not None and not isinstance(name, str):
            raise UserError(f"track: name must be a string, got {type(name).__name__}")
        if not isinstance(energy, (bool, EnergyMeter)) and energy is not None:
            raise UserError(f"track: energy must be True, False or an EnergyMeter, got {energy!r}"[:200])
        for label, flag in (("sync", sync), ("trace", trace)):
            _check_flag(label, flag)
        _check_flag("rank_files", rank_files, allow_none=True)
        if log is not None and not callable(log):
            raise UserError(f"track: log must be a callable taking a string, got {type(log).__name__}")
        if not callable(clock):
            raise UserError(f"track: clock must be a callable returning seconds, got {type(clock).__name__}")
        if isinstance(optimizer, str):
            Workload(optimizer=optimizer)  # UserError for an unknown optimizer name
        report_path = _check_report(report)
        torch_device = _check_device(device) if device is not None else None
        self.model = model
        self._inner = unwrap(model)
        self.precision = precision
        self.tokens_per_step = tokens_per_step
        self.grad_accum = grad_accum
        self.flops_per_token = flops_per_token
        self.hardware_flops_per_token = hardware_flops_per_token
        self.report_path = report_path
        self.name = name or (type(self._inner).__name__ if self._inner is not None else "training loop")
        self._energy_opt = energy
        self.sync = sync
        self.warmup_steps = warmup_steps
        self.optimizer = optimizer
        self.mode = mode
        self._trace_wanted = trace and flops_per_token is None
        self.sample_interval_s = float(sample_interval_s)
        self.flush_interval_s = float(flush_interval_s)
        self.gather_timeout_s = float(gather_timeout_s)
        self.meter_timeout_s = float(meter_timeout_s)
        self._rank_files_opt = rank_files
        self.log_every = log_every
        self._log = log
        self._clock = clock
        dev = model_device(self._inner)
        self.device = torch_device if torch_device is not None else (dev or torch.device("cpu"))
        self.hardware, self._hardware_why, self._hardware_notes = resolve_device(hardware, self.device)
        self._report_builder = report_builder  # (records, warmup=, meta=) -> Report; None: records only
        self.report = None  # the Report, once stopped
        self.report_error: str | None = None
        self.records: list[dict[str, Any]] = []
        self._running = False
        self._stopped = False
        self._reset()

    # -------------------------------------------------------------- state
    def _reset(self) -> None:
        self._step_s: list[float] = []
        self._tokens: list[Any] = []
        self._micro: list[int] = []
        self._t_end: list[float] = []
        self._acc_tokens: Any = 0
        self._acc_missing = False
        self._acc_micro = 0
        self._mem_samples: list[dict[str, Any]] = []
        self._energy_samples: list[dict[str, Any]] = []
        self._notes: list[str] = []
        self._failed_once: set[str] = set()
        self._flops: dict[str, Any] = {}
        self._captured: tuple[InputShapes, InputShapes, Any] | None = None
        self._hook = None
        self._meter: SafeMeter | None = None
        self._energy_why = ""
        self._flushed = 0
        self._rank_log: dist_mod.RankLog | None = None
        self._prev_sigterm: Any = None
        self._status = "running"
        self._trace_s: float | None = None
        self._energy_final: Any = None
        self._flops_flushed = False
        self._forwards = 0  # training forwards seen during the first step
        self._final_written = False
        self._acc_bad = False  # this step got a call with bad arguments: it is left out of the figures
        self._bad_calls = 0
        self._ignored_steps = 0
        self._paused_s = 0.0  # other trackers' own work (their trace, their report) left out of this one's steps
        self._energy_partial: float | None = None

    @property
    def steps(self) -> int:
        """Optimizer steps recorded so far."""
        return len(self._step_s)

    @property
    def micro_step(self) -> int:
        """Micro-batches since the last optimizer step (0 right after a step closed)."""
        return self._acc_micro

    # -------------------------------------------------------------- start / stop
    def __enter__(self) -> Tracker:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        status = "complete" if exc_type is None else f"failed: {exc_type.__name__}: {exc}"[:300]
        if exc_type is KeyboardInterrupt:
            status = "interrupted (KeyboardInterrupt)"
        self.stop(status=status)
        return False

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Use as a decorator: the function runs inside the tracker (it gets it as ``tracker=`` if it asks)."""
        try:
            wants = "tracker" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            wants = False

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if wants:
                kwargs.setdefault("tracker", self)
            with self:
                return fn(*args, **kwargs)

        return wrapper

    def start(self) -> Tracker:
        if self._running:
            return self
        self._reset()
        self._stopped = False
        self.rank, self.world_size, _ = dist_mod.rank_info()
        self._started_unix = time.time()
        self._check_report_path()
        self._start_energy()
        self._start_memory()
        if self._trace_wanted and self._inner is not None:
            try:
                self._hook = self._inner.register_forward_pre_hook(_CaptureHook(self), with_kwargs=True)
            except Exception as exc:  # noqa: BLE001
                self._note_failure("hook", f"cannot watch the model's forward ({exc}); MFU needs flops_per_token=")
        elif self._trace_wanted:
            self._flops["why"] = "no model given: pass model= (to trace it) or flops_per_token="
        if self.flops_per_token is not None:
            self._flops.update({"model_flops_per_token": float(self.flops_per_token),
                                "hardware_flops_per_token": float(self.hardware_flops_per_token or self.flops_per_token),
                                "flops_source": "given (flops_per_token)"})
            if self.hardware_flops_per_token is None:
                self._notes.append("hardware FLOPs per token not given: HFU is computed with the model FLOPs")
        self._start_distributed()
        _ACTIVE.append(self)
        self._running = True
        self._t0 = self._t_prev = self._last_sample = self._last_flush = self._clock()
        return self

    def _check_report_path(self) -> None:
        p = self.report_path
        if p is None:
            return
        parent = p.parent
        problem = None
        if not parent.is_dir():
            problem = f"folder {parent} does not exist"
        elif not os.access(parent, os.W_OK):
            problem = f"folder {parent} is not writable"
        elif p.is_dir():
            problem = f"{p} is a folder"
        elif p.exists() and not os.access(p, os.W_OK):
            problem = f"{p} is not writable"
        if problem:
            self.report_error = problem
            if self._is_writer():
                self._say(f"mlfootprint.track: cannot write the report to {p} ({problem}); tracking goes on and "
                          "the report is kept in memory: use tracker.report, or tracker.save(PATH) to write it elsewhere")

    def _is_writer(self) -> bool:
        return getattr(self, "rank", 0) == 0

    def _say(self, text: str) -> None:
        # With no logging configured, Python's last-resort handler prints warnings on stderr: always seen.
        logger.warning(text)

    def _start_energy(self) -> None:
        opt = self._energy_opt
        self._meter = None
        if opt is False or opt is None:
            self._energy_why = "energy not measured (energy=False)"
            return
        try:
            if isinstance(opt, EnergyMeter):
                meter = opt if isinstance(opt, SafeMeter) else SafeMeter(opt)
            else:
                tdp = None
                hw = self.hardware
                if hw is not None and getattr(hw, "tdp_w", None) and (
                        (hw.kind == "cpu") == (self.device.type == "cpu")):
                    tdp = hw.tdp_w
                meter = SafeMeter(auto_meter(self.device, fallback_tdp_w=tdp))
            self._meter = meter
            self._meter_call("start")  # SafeMeter never raises; a failure is in its readings
        except MeterUnavailable as exc:
            self._energy_why = energy_reason(exc.reason, "pass hardware= a device of this kind that has a TDP, "
                                                         "or energy= a meter of your own")
        except Exception as exc:  # noqa: BLE001 - energy is never worth stopping for
            self._energy_why = f"no energy meter: {type(exc).__name__}: {exc}"

    def _start_memory(self) -> None:
        self._mem_method = None
        self._mem_why = ""
        try:
            if self.device.type == "cuda":
                self._mem_method = CUDA_METHOD
                self._mem_start = int(torch.cuda.memory_allocated(self.device))
            else:
                start = peak_rss_bytes()
                if start is None:
                    self._mem_why = "getrusage is not available on this platform"
                else:
                    self._mem_method = RSS_METHOD
                    self._mem_start = start
        except Exception as exc:  # noqa: BLE001
            self._mem_why = f"memory cannot be read: {exc}"

    def _start_distributed(self) -> None:
        use_files = (self._rank_files_opt if self._rank_files_opt is not None
                     else self.world_size > 1 and self.report_path is not None)
        if self.world_size > 1:
            with _SERIAL_LOCK:
                _SERIAL[0] += 1
                self._serial = _SERIAL[0]
        else:
            self._serial = 0
        self._ranks_dir = None
        if use_files:
            if self.report_path is not None:
                self._ranks_dir = dist_mod.ranks_dir(self.report_path)
            else:
                self._ranks_dir = Path.cwd() / "mlfootprint-track.ranks"
            self._rank_log = dist_mod.RankLog(dist_mod.rank_file(self._ranks_dir, self.rank))
            self._rank_log.write({"kind": "header", "record": self._record_head()})
        if self.world_size > 1 and threading.current_thread() is threading.main_thread():
            try:
                prev = signal.getsignal(signal.SIGTERM)
                if prev in (signal.SIG_DFL, None):
                    signal.signal(signal.SIGTERM, self._on_sigterm)
                    self._prev_sigterm = prev
            except (ValueError, OSError, AttributeError):
                pass

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        try:
            self._emergency("terminated (SIGTERM)")
        finally:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

    def _final_record(self, status: str) -> dict[str, Any]:
        """Close the energy reading, make this rank's final record and log it for rank 0."""
        self._finish_energy()
        rec = self._record(status)
        self.records = [rec]
        if self._rank_log is not None:
            self._flush(force=True)
            self._rank_log.write({"kind": "final", "record": rec})
        self._final_written = True
        return rec

    def _emergency(self, status: str) -> None:
        """Write what we have, now, without waiting for anyone (the process is about to end)."""
        try:
            if not self._final_written:
                self._final_record(status)
            if (self._is_writer() and self.report_path is not None and self._ranks_dir is not None
                    and self._report_builder is not None):
                records, warmup, meta = dist_mod.gather_rank_records([self._ranks_dir], warmup=self.warmup_steps)
                self._write(self._report_builder(records, warmup=warmup, meta=meta))
        except Exception as exc:  # noqa: BLE001 - dying anyway; say why the data may be incomplete
            logger.warning("mlfootprint.track: could not save everything on %s: %s", status, exc)

    def stop(self, status: str = "complete") -> Any:
        """End tracking, gather ranks (rank 0) and write the report. Never raises; returns the Report."""
        if not self._running:
            return self.report
        self._running = False
        self._stopped = True
        with self._own_work():
            return self._stop(status)

    def _stop(self, status: str) -> Any:
        try:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            self._remove_hook()
            if self._acc_micro:
                self._notes.append(f"{self._acc_micro} micro-batch(es) after the last optimizer step were not "
                                   "counted (the accumulation did not complete)")
            if self._captured is not None and "model_flops_per_micro_batch" not in self._flops:
                self._run_trace()
            if self._trace_wanted and self._inner is not None and self._captured is None and not self._flops.get("why"):
                self._flops["why"] = ("the model's forward was never called with gradients enabled while tracking; "
                                      "pass flops_per_token=")
            self._sample(force=True)
            self._status = status
            rec = self._final_record(status)
            records = [rec]
            if self.world_size > 1:
                store = dist_mod.default_store()
                if self.rank != 0:
                    dist_mod.publish(store, self._serial, rec, timeout_s=max(1.0, min(self.gather_timeout_s, 10.0)))
                else:
                    # After a failure the other ranks may be gone: do not wait long for them.
                    timeout = self.gather_timeout_s if status == "complete" else min(self.gather_timeout_s, 5.0)
                    records = dist_mod.collect(self.world_size, rec, store=store, serial=self._serial,
                                               directory=self._ranks_dir, timeout_s=timeout)
            self.records = records
            meta = {"assumptions": list(self._hardware_notes)}
            if self._report_builder is not None:
                self.report = self._report_builder(records, warmup=self.warmup_steps, meta=meta)
            if self._is_writer() and self.report_path is not None and self.report is not None:
                self._write(self.report)
        except Exception as exc:  # noqa: BLE001 - the loop is over; say what went wrong, keep what we have
            logger.warning("mlfootprint.track: building the report failed (%s: %s); the recorded steps are in "
                           "tracker.records", type(exc).__name__, exc)
            if not self.records:
                try:
                    self.records = [self._record(status)]
                except Exception:  # noqa: BLE001
                    pass
        finally:
            self._restore_sigterm()
        return self.report

    def _restore_sigterm(self) -> None:
        if self._prev_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._prev_sigterm)
            except (ValueError, OSError):
                pass
            self._prev_sigterm = None

    def _write(self, rep: Any) -> None:
        assert self.report_path is not None
        try:
            dist_mod.write_report(rep, self.report_path)
            self.report_error = None
        except (UserError, OSError) as exc:
            self.report_error = str(exc)
            self._say(f"mlfootprint.track: the report could not be written to {self.report_path} ({exc}); "
                      "nothing is lost: it is in tracker.report, and tracker.save(PATH) writes it elsewhere")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report (after the tracker stopped) to ``path``; raises UserError if that fails."""
        if self.report is None:
            raise UserError("track: no report yet; save() after the tracker has stopped (the end of the with block)")
        dist_mod.write_report(self.report, path)
        return Path(path)

    # -------------------------------------------------------------- per step
    def step(self, tokens: Any = None, *, optimizer_step: bool | None = None) -> None:
        """One micro-batch done (with grad_accum=1: one optimizer step). O(1): no sync, no I/O (see module doc).

        Never raises. ``tokens`` must be a number >= 0 (or a tensor holding one); a call with anything else
        (a string, a list, a negative number, NaN, inf; an ``optimizer_step`` that is not a bool) still counts
        as a micro-batch, so ``micro_step`` follows your loop, but the optimizer step it belongs to is left out
        of the figures, with one warning for the run and a note in the report."""
        try:
            self._step(tokens, optimizer_step)
        except Exception as exc:  # noqa: BLE001 - the user's loop must go on
            self._note_failure("step-error", f"t.step() failed inside the tracker ({type(exc).__name__}: {exc}); "
                                             "the loop goes on, the figures may miss that step")

    def _step(self, tokens: Any, optimizer_step: Any) -> None:
        now = self._clock()
        if not self._running:
            if self._stopped:
                return  # stopped: ignore late calls rather than failing the loop
            self.start()
            now = self._clock()
        tok_type = type(tokens)
        if tok_type is int:  # the common case, checked first (step() is on the hot path)
            bad = None if tokens >= 0 else f"tokens={tokens!r} (negative)"
        elif tokens is None:
            bad = None
        else:
            bad = _bad_tokens(tokens)
            if bad is not None:
                bad = f"tokens={bad}"
        if optimizer_step is not None and optimizer_step is not True and optimizer_step is not False:
            bad = f"optimizer_step={optimizer_step!r} (not True or False)"[:120]
            optimizer_step = None
        if bad is not None:
            tokens = None
            self._acc_bad = True
            self._bad_calls += 1
            self._note_failure("bad-step", f"t.step() got {bad}: tokens must be a number >= 0 (or a tensor "
                                           "holding one); the optimizer step of that call is left out of the "
                                           "figures (warned once; see the report's notes for the count)")
        self._acc_micro += 1
        if tokens is None and self.tokens_per_step is not None:
            tokens = self.tokens_per_step / self.grad_accum
        if tokens is None:
            self._acc_missing = True
        else:
            self._acc_tokens = self._acc_tokens + tokens
        closes = optimizer_step if optimizer_step is not None else self._acc_micro >= self.grad_accum
        if not closes:
            return
        if self.sync and self.device.type == "cuda":
            try:
                torch.cuda.synchronize(self.device)
            except Exception as exc:  # noqa: BLE001
                self._note_failure("sync", f"torch.cuda.synchronize failed: {exc}")
            now = self._clock()
        step_s = now - self._t_prev
        if not (0.0 <= step_s < math.inf):  # False for NaN and inf; a clock giving non-numbers raises here
            self._note_failure("clock", f"the clock gave {now!r}: a step time of {step_s!r} s is left out")
            self._acc_bad = True
            if not (isinstance(now, (int, float)) and math.isfinite(now)):
                now = self._t_prev  # keep measuring from the last good reading
        ignored = self._acc_bad
        if ignored:
            # Left out: its time and tokens are dropped; the next step starts now.
            self._ignored_steps += 1
            if self._hook is not None:
                self._forwards = 0  # the first recorded step's forwards are counted afresh
        else:
            self._step_s.append(step_s)
            self._t_end.append(now - self._t0)
            self._tokens.append(None if self._acc_missing else self._acc_tokens)
            self._micro.append(self._acc_micro)
        self._acc_tokens = 0
        self._acc_missing = False
        self._acc_micro = 0
        self._acc_bad = False
        self._t_prev = now
        try:  # the rare work: none of it may stop the loop
            if now - self._last_sample >= self.sample_interval_s:
                self._sample(now=now)
            if self._rank_log is not None and now - self._last_flush >= self.flush_interval_s:
                self._flush(now=now)
            if ignored:
                return
            if self._hook is not None:
                self._remove_hook()  # the first step is over: its forwards are counted
            if self._captured is not None and "model_flops_per_micro_batch" not in self._flops \
                    and "why" not in self._flops:
                self._run_trace()
                self._t_prev = self._clock()  # the trace's pause is not part of the next step
            if self.log_every and len(self._step_s) % self.log_every == 0:
                self._log_line()
        except Exception as exc:  # noqa: BLE001
            self._note_failure("step", f"tracking work after step {len(self._step_s)} failed "
                                       f"({type(exc).__name__}: {exc}); steps are still recorded")

    # -------------------------------------------------------------- helpers (not per step, or rare)
    def _note_failure(self, kind: str, text: str) -> None:
        if kind in self._failed_once:
            return
        self._failed_once.add(kind)
        self._notes.append(text)
        logger.warning("mlfootprint.track: %s", text)

    def _sample(self, now: float | None = None, force: bool = False) -> None:
        now = self._clock() if now is None else now
        self._last_sample = now
        step = len(self._step_s)
        if self._mem_method is not None:
            try:
                if self.device.type == "cuda":
                    value = int(torch.cuda.max_memory_allocated(self.device))
                else:
                    value = peak_rss_bytes()
                if value is not None:
                    self._mem_samples.append({"step": step, "peak_bytes": value})
            except Exception as exc:  # noqa: BLE001
                self._note_failure("memory", f"reading memory failed ({exc}); memory figures stop there")
                self._mem_method = None
        if self._meter is not None and not force:
            reading = self._meter_call("read")  # SafeMeter never raises; None: it blocked and was abandoned
            if reading is not None and reading.energy_j is not None:
                self._energy_samples.append({"step": step, "energy_j": reading.energy_j})

    def _finish_energy(self) -> None:
        if self._meter is None or self._energy_final is not None:
            return
        reading = self._meter_call("stop")
        if reading is None:
            return  # the meter blocked: abandoned, the reason is in _energy_why
        meter = self._meter
        try:  # releasing the meter's resources: a close that blocks is left behind, the reading is kept
            call_bounded(meter.close, self.meter_timeout_s, f"energy meter {meter.name}")
        except Exception:  # noqa: BLE001 - CallTimeout included
            pass
        self._energy_final = reading
        if reading.energy_j is not None:
            self._energy_samples.append({"step": len(self._step_s), "energy_j": reading.energy_j})

    def _meter_call(self, method: str) -> Any:
        """``self._meter.<method>()``, waited for at most meter_timeout_s. A meter that blocks is abandoned (one
        warning): energy becomes unavailable with the reason, the joules read before are kept as partial."""
        meter = self._meter
        if meter is None:
            return None
        try:
            return call_bounded(getattr(meter, method), self.meter_timeout_s, f"energy meter {meter.name}")
        except CallTimeout:
            self._meter = None
            done = [s["energy_j"] for s in self._energy_samples if s.get("energy_j") is not None]
            self._energy_partial = done[-1] if done else None
            self._energy_why = (f"the energy meter {meter.name!r} did not answer within {self.meter_timeout_s:g} s "
                                f"(its {method}() blocked, at step {len(self._step_s)}); it was abandoned, so "
                                "energy is unavailable (meter_timeout_s= sets the wait)")
            self._note_failure("meter-timeout", self._energy_why)
            return None

    def _capture(self, module: Any, args: Any, kwargs: Any) -> None:
        """Forward pre-hook, during the first step only: record the first training forward's input shapes,
        and count the training forwards (micro-batches) of the first step."""
        try:
            if self.mode == "train" and not torch.is_grad_enabled():
                return  # an evaluation pass: not part of the training step
            self._forwards += 1
            if self._captured is not None:
                return
            dev_type = self.device.type
            autocast = None
            try:
                if torch.is_autocast_enabled(dev_type):
                    autocast = torch.get_autocast_dtype(dev_type)
            except (TypeError, AttributeError, RuntimeError):
                autocast = None
            self._captured = (InputShapes.of(tuple(args)), InputShapes.of(dict(kwargs or {})), autocast)
        except Exception as exc:  # noqa: BLE001
            self._note_failure("capture", f"could not record the forward's inputs ({exc}); pass flops_per_token=")
            self._flops["why"] = "the model's inputs could not be recorded; pass flops_per_token="
            self._remove_hook()

    def _remove_hook(self) -> None:
        if self._hook is not None:
            try:
                self._hook.remove()
            except Exception:  # noqa: BLE001
                pass
            self._hook = None

    def _resolved_precision(self) -> str:
        if self.precision:
            return self.precision
        autocast = self._captured[2] if self._captured else None
        if autocast == torch.bfloat16:
            return "bf16-mixed"
        if autocast == torch.float16:
            return "fp16-mixed"
        return param_precision(self._inner)

    def _run_trace(self) -> None:
        """Trace the user's model once, on fake tensors, with the recorded input shapes (FLOPs per step)."""
        assert self._captured is not None
        with self._own_work():
            self._trace_once()

    def _own_work(self) -> _OwnWork:
        """A pause of this tracker's own (tracing, writing the report): left out of the other running trackers'
        step times, so that nested trackers measure exactly what they would alone."""
        return _OwnWork(self)

    def _trace_once(self) -> None:
        assert self._captured is not None
        t0 = time.perf_counter()
        _TRACING_THREADS.add(threading.get_ident())
        try:
            args_spec, kwargs_spec, _ = self._captured
            precision = self._resolved_precision()
            wl = Workload(mode="train" if self.mode == "train" else "inference", precision=precision,
                          optimizer=optimizer_name(self.optimizer))
            fs, notes = trace_flops(self.name, self._inner, args_spec, kwargs_spec, wl)
            self._notes.extend(notes)
            self._flops.update({"model_flops_per_micro_batch": fs.model,
                                "hardware_flops_per_micro_batch": fs.hardware,
                                "flops_source": "trace of the model (first micro-batch's shapes)"})
            self._per_token_from_first_step(fs)
            if fs.unsupported_ops:
                self._notes.append("operators without a FLOP formula (not counted): "
                                   + ", ".join(f"{k} ×{v}" for k, v in sorted(fs.unsupported_ops.items())))
            if not self.precision:
                self._notes.append(f"precision {precision} (detected from the model's weights and autocast); "
                                   "pass precision= to change it")
        except Exception as exc:  # noqa: BLE001 - MFU is lost, the loop goes on
            text = " ".join(str(exc).split())[:300]
            self._flops["why"] = f"the model could not be traced ({type(exc).__name__}: {text}); pass flops_per_token="
            self._note_failure("trace", self._flops["why"])
        finally:
            _TRACING_THREADS.discard(threading.get_ident())
            self._trace_s = time.perf_counter() - t0
            self._captured = None if "why" in self._flops else self._captured

    def _per_token_from_first_step(self, fs: Any) -> None:
        """The first step ran ``forwards`` training forwards (micro-batches) for ``calls`` step() calls and
        ``tokens`` tokens: FLOPs per token = FLOPs of one forward+backward × forwards / tokens."""
        forwards = self._forwards or 1
        calls = self._micro[0] if self._micro else 1
        first_tokens = self._tokens[0] if self._tokens else None
        if isinstance(first_tokens, torch.Tensor):
            first_tokens = float(first_tokens.detach().sum().item())
        self._flops["forwards_in_first_step"] = forwards
        self._flops["model_flops_per_micro_step"] = fs.model * forwards / calls
        self._flops["hardware_flops_per_micro_step"] = fs.hardware * forwards / calls
        if first_tokens is not None and float(first_tokens) > 0:
            first_f = float(first_tokens)
            self._flops["model_flops_per_token"] = fs.model * forwards / first_f
            self._flops["hardware_flops_per_token"] = fs.hardware * forwards / first_f
            self._notes.append(
                f"FLOPs per token = {fs.model:.4g} model FLOPs per forward+backward (traced, first "
                f"micro-batch's shapes) × {forwards} forward(s) in the first step / its {first_f:g} tokens; "
                "steps with other shapes are assumed to scale linearly with their tokens")

    def _peak(self) -> dict[str, Any]:
        hw = self.hardware
        if hw is None:
            return {"why": self._hardware_why}
        value, dtype, notes = peak_flops(hw, self._resolved_precision(), self.device)
        for n in notes:
            if n not in self._notes:
                self._notes.append(n)
        if value is None:
            return {"why": dtype, "hardware": hw.id}
        src = hw.sources.get(f"peak_flops.{dtype}", {}) if getattr(hw, "sources", None) else {}
        return {"peak_flop_per_s": value, "peak_dtype": dtype, "hardware": hw.id,
                "provenance": src.get("provenance", "published")}

    def _rows(self, start: int = 0) -> list[dict[str, Any]]:
        rows = []
        for i in range(start, len(self._step_s)):
            tok = self._tokens[i]
            if isinstance(tok, torch.Tensor):
                try:
                    tok = float(tok.detach().sum().item())  # the device sync happens here, not in step()
                except Exception as exc:  # noqa: BLE001
                    tok = float("nan")
                    self._note_failure("tokens-tensor", f"reading a tokens tensor failed ({exc})")
                if not math.isfinite(tok) or tok < 0:
                    self._note_failure("tokens-value", f"t.step() got a tokens tensor holding {tok:g} (step {i + 1}); "
                                                       "steps whose tokens are not a number >= 0 are left out")
                    continue
            rows.append({"step": i + 1, "step_s": self._step_s[i], "tokens": tok,
                         "micro_steps": self._micro[i], "t_s": self._t_end[i]})
        return rows

    def _flush(self, now: float | None = None, force: bool = False) -> None:
        if self._rank_log is None:
            return
        self._last_flush = self._clock() if now is None else now
        rows = self._rows(self._flushed)
        self._flushed = len(self._step_s)
        if rows:
            self._rank_log.write({"kind": "steps", "rows": dist_mod.finite_numbers(rows)[0]})
        if self._flops and not self._flops_flushed and (
                "model_flops_per_micro_batch" in self._flops or "model_flops_per_token" in self._flops):
            self._rank_log.write({"kind": "info", "flops": dict(self._flops), "peak": self._peak()})
            self._flops_flushed = True

    def _record_head(self) -> dict[str, Any]:
        params = None
        if isinstance(self._inner, torch.nn.Module):
            try:
                params = sum(p.numel() for p in self._inner.parameters())
            except Exception:  # noqa: BLE001
                params = None
        return {
            "rank": self.rank, "world_size": self.world_size, "host": dist_mod.host_name(), "pid": os.getpid(),
            "device": str(self.device), "warmup_steps": self.warmup_steps, "started_unix": self._started_unix,
            "model": {"name": self.name, "source": "track", "params": params},
            "workload": {"mode": self.mode, "grad_accum": self.grad_accum, "precision": self._resolved_precision(),
                         "hardware": getattr(self.hardware, "id", None), "tokens_per_step": self.tokens_per_step},
            "peak": self._peak(),
        }

    def _record(self, status: str) -> dict[str, Any]:
        rec = self._record_head()
        rec["status"] = status
        rec["series"] = self._rows()
        rec["flops"] = dict(self._flops)
        if self._trace_s is not None:
            rec["flops"]["trace_s"] = self._trace_s
        mem: dict[str, Any] = {}
        if self._mem_method is not None and self._mem_samples:
            mem = {"peak_bytes": max(s["peak_bytes"] for s in self._mem_samples), "method": self._mem_method,
                   "samples": list(self._mem_samples)}
            if self.device.type != "cpu":
                mem["start_bytes"] = getattr(self, "_mem_start", None)
        else:
            mem = {"why": self._mem_why or "memory was not sampled"}
        rec["memory"] = mem
        reading = self._energy_final
        if reading is not None:
            energy = reading.to_dict()
            energy["samples"] = list(self._energy_samples)
        elif self._meter is not None:
            now_reading = self._meter_call("read")
            energy = now_reading.to_dict() if now_reading is not None else {"energy_j": None, "why": self._energy_why}
        else:
            energy = {"energy_j": None, "why": self._energy_why}
        if energy.get("energy_j") is None and self._energy_partial is not None:
            energy.setdefault("partial_energy_j", self._energy_partial)
        rec["energy"] = energy
        notes = list(self._notes)
        if self._ignored_steps:
            why = f"{self._bad_calls} call(s) of t.step() had bad arguments"
            if self._failed_once & {"clock"}:
                why += ", or the clock gave no usable time"
            notes.append(f"{self._ignored_steps} optimizer step(s) left out of the figures: {why}")
        if self._paused_s > 0:
            notes.append(f"{plain_number(self._paused_s, 3)} s of other trackers' own work (their trace, their report) left out "
                         "of this tracker's step times")
        rec["notes"] = notes
        clean, bad = dist_mod.finite_numbers(rec)
        if bad:
            clean["notes"].append("not finite, written as null: " + ", ".join(bad[:10]))
        return clean

    # -------------------------------------------------------------- live figures
    def summary(self) -> dict[str, Any]:
        """Figures so far (this rank): steps, tokens, median step time, tokens/s, MFU — computed on request."""
        rec = {"series": self._rows(), "flops": dict(self._flops), "peak": self._peak()}
        return dist_mod.rank_summary(rec, self.warmup_steps)

    def _log_line(self) -> None:
        try:
            rows = dist_mod.step_rows({"series": self._rows(len(self._step_s) - 1), "flops": self._flops,
                                       "peak": self._peak()})
            r = rows[-1]
            parts = [f"step {r['step']}", f"{r['step_s'] * 1e3:.1f} ms"]
            if r.get("tokens_per_s") is not None:
                parts.append(f"{r['tokens_per_s']:,.0f} tokens/s")
            if r.get("mfu") is not None:
                parts.append(f"MFU {r['mfu']:.1%}")
            text = "mlfootprint.track: " + ", ".join(parts)
            (self._log or logger.info)(text)
        except Exception as exc:  # noqa: BLE001
            self._note_failure("log", f"progress line failed: {exc}")
