"""Measured memory: what a real step holds at its peak.

Three methods, each named in the report (``memory_method``):

* **CUDA** — the caching allocator's statistics
  (``torch.cuda.max_memory_allocated``): the peak bytes held by live tensors on
  the device, exact and free to read. ``max_memory_reserved`` (what the
  allocator took from the driver, including its cache) is reported beside it.
* **CPU, bench** — the method of mlfootprint's memory module
  (``mlfootprint.measure.peak.measure_peak``): CPU allocator events from
  ``torch.profiler(profile_memory=True)``, the model built and warmed up inside
  the profiled region, replayed to the largest live total during one step.
  Where that module is not installed, :class:`LiveTensorMemory`: a ``TorchDispatchMode`` over real
  tensors: every storage an operator returns is counted when it appears and
  uncounted when it is freed (a weak-reference finalizer on the storage, the
  same mechanism as the trace's memory events), on top of the storages alive
  when measuring starts (weights, buffers, gradients, optimizer state,
  inputs). Its peak is the peak of live tensor bytes — the quantity the memory
  estimate predicts — without allocator caching, fragmentation or the Python
  runtime. It intercepts every operator, so `bench` runs it in one extra,
  untimed step.
* **CPU, track** — the process's peak resident set size (``getrusage``
  ``ru_maxrss``): one system call, cheap enough for every step of a training
  loop, but it counts everything the process holds (the Python runtime, libraries,
  the data loader), so it is an upper bound on tensor memory.
"""
from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

LIVE_TENSORS_METHOD = ("live tensor storages (TorchDispatchMode over real tensors, weak-reference frees): "
                       "peak bytes of tensors alive at once; no allocator cache, no Python runtime")
PROFILER_METHOD = ("CPU allocator events (torch.profiler profile_memory, as mlfootprint.measure.peak): peak live "
                   "bytes of one step; allocations outside c10 (oneDNN/MKL scratch, Python objects) not included")
CUDA_METHOD = "CUDA caching allocator statistics (torch.cuda.max_memory_allocated): peak bytes of live tensors"
RSS_METHOD = ("process peak resident set size (getrusage ru_maxrss): everything the process holds, "
              "including the Python runtime and libraries; an upper bound on tensor memory")


class LiveTensorMemory(TorchDispatchMode):
    """Peak bytes of live tensor storages while active, on real tensors (any device).

    ``existing``: tensors alive before the region (weights, gradients,
    optimizer state, inputs); they make up ``baseline_bytes`` and count as
    freed if they die inside the region.
    """

    def __init__(self, existing: Iterable[Any] = ()) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self._finalizers: list[weakref.finalize] = []
        self.current_bytes = 0
        self.peak_bytes = 0
        for t in existing:
            if isinstance(t, torch.Tensor):
                self._add(t)
        self.baseline_bytes = self.current_bytes

    def _add(self, t: torch.Tensor) -> None:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return  # tensor subclasses without a storage
        key = st._cdata
        if key in self._live:
            return
        nbytes = st.nbytes()
        self._live[key] = nbytes
        self.current_bytes += nbytes
        if self.current_bytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes
        self._finalizers.append(weakref.finalize(st, self._free, key))

    def _free(self, key: int) -> None:
        nbytes = self._live.pop(key, None)
        if nbytes is not None:
            self.current_bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat, _ = tree_flatten(out)
        for t in flat:
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out

    def __exit__(self, *exc: Any) -> Any:
        try:
            return super().__exit__(*exc)
        finally:
            for f in self._finalizers:
                f.detach()
            self._finalizers.clear()


def tensors_of(*objects: Any) -> list[torch.Tensor]:
    """Every tensor reachable from modules (parameters, gradients, buffers), optimizers (state) and containers."""
    out: list[torch.Tensor] = []
    for obj in objects:
        if obj is None:
            continue
        if isinstance(obj, torch.Tensor):
            out.append(obj)
        elif isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                out.append(p)
                if p.grad is not None:
                    out.append(p.grad)
            out.extend(obj.buffers())
        elif isinstance(obj, torch.optim.Optimizer):
            for state in obj.state.values():
                out.extend(v for v in state.values() if isinstance(v, torch.Tensor))
        elif isinstance(obj, dict):
            out.extend(tensors_of(*obj.values()))
        elif isinstance(obj, (list, tuple)):
            out.extend(tensors_of(*obj))
    return out


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size in bytes, or None where getrusage is missing (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def current_rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - psutil missing or the platform refuses
        return None
