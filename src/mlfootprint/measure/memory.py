"""Measured memory: what a real step holds at its peak.

Three methods, each named in the report (``memory_method``):

* **CUDA** — the caching allocator's statistics
  (``torch.cuda.max_memory_allocated``): the peak bytes held by live tensors on
  the device, exact and free to read. ``max_memory_reserved`` (what the
  allocator took from the driver, including its cache) is reported beside it.
* **CPU, bench** — :func:`measure_peak`: CPU allocator events from
  ``torch.profiler(profile_memory=True)``, the model built and warmed up inside
  the profiled region, replayed to the largest live total during one step (below).
* **CPU, track** — the process's peak resident set size (``getrusage``
  ``ru_maxrss``): one system call, cheap enough for every step of a training
  loop, but it counts everything the process holds (the Python runtime, libraries,
  the data loader), so it is an upper bound on tensor memory.
"""
from __future__ import annotations

import contextlib
import gc
import os
import resource
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from torch.profiler import ProfilerActivity, profile, record_function

PROFILER_METHOD = ("CPU allocator events (torch.profiler profile_memory, as measure_peak): peak live "
                   "bytes of one step; allocations outside c10 (oneDNN/MKL scratch, Python objects) not included")
CUDA_METHOD = "CUDA caching allocator statistics (torch.cuda.max_memory_allocated): peak bytes of live tensors"
RSS_METHOD = ("process peak resident set size (getrusage ru_maxrss): everything the process holds, "
              "including the Python runtime and libraries; an upper bound on tensor memory")


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def current_rss_bytes() -> int | None:
    try:
        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - psutil missing or the platform refuses
        return None


# ---- CPU: peak memory of a real step from the allocator's events (bench)
#
# Peak memory of a real step on the CPU, measured from PyTorch's allocator through torch.profiler.
#
# CPU tensors have no allocator statistics API (``torch.cuda.max_memory_allocated``
# has no CPU twin), so the measurement uses the profiler's memory events:
# with ``profile_memory=True`` every allocation and free made through c10's CPU
# allocator (every CPU tensor storage: parameters, optimizer states,
# activations, and the temporaries kernels allocate with ``at::empty``) is
# reported with its address and size. :func:`measure_peak` runs ``setup()`` and
# the warm-up steps *inside* the profiled region, so every live byte of the
# measured step was allocated where it can be seen; it then replays the events in
# time order, keeping the bytes of blocks allocated in that region and not yet
# freed, and returns the largest total seen during the measured step.
#
# Blind spots, stated: memory a library allocates outside c10 (oneDNN/MKL
# scratch space, OpenMP stacks, Python objects) is not included, and CPU
# allocations are exact sizes (no caching-allocator rounding, unlike CUDA).

STEP_MARK = "mlfootprint.measured_step"


@dataclass
class MeasuredPeak:
    peak_bytes: int  # largest live bytes during the measured step (everything allocated since setup)
    start_bytes: int  # live bytes when the measured step began (weights, optimizer states, inputs)
    end_bytes: int  # live bytes when it ended
    allocations: int  # allocation events during the measured step


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (native libraries' logging) for the duration; Python's stderr is flushed first."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def measure_peak(setup: Callable[[], Any], step: Callable[[Any], None], warmup: int = 1) -> MeasuredPeak:
    """Measure the peak live CPU-allocator bytes of one ``step(state)`` after ``warmup`` steps (see module doc)."""
    gc.collect()
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_native_stderr():  # libkineto logs "profiler_start/stop" lines straight to fd 2
        prof.start()
    try:
        state = setup()
        for _ in range(warmup):
            step(state)
        # no gc.collect() here: a real training loop does not collect between steps, and garbage held in
        # reference cycles (e.g. by an early-stopped checkpoint recomputation) is part of what a step sees
        with record_function(STEP_MARK):
            step(state)
        del state
    finally:
        with _quiet_native_stderr():
            prof.stop()
    window = None
    for e in prof.profiler.kineto_results.events():
        if e.name() == STEP_MARK:
            window = (e.start_ns(), e.end_ns())
    if window is None:  # pragma: no cover - the profiler always records user annotations
        raise RuntimeError("the profiler did not record the measured step")
    allocs: list[tuple[int, int, int]] = []

    def walk(node: Any) -> None:
        extra = node.extra_fields
        if type(extra).__name__ == "_ExtraFields_Allocation" and str(extra.device).startswith("cpu"):
            allocs.append((node.start_time_ns, int(extra.ptr), int(extra.alloc_size)))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    allocs.sort(key=lambda a: a[0])
    live: dict[int, int] = {}
    current = 0
    start = end = None
    peak = 0
    count = 0
    for t, ptr, size in allocs:
        if start is None and t >= window[0]:
            start = current
            peak = current
        if end is None and t > window[1]:
            end = current
        if size > 0:
            live[ptr] = size
            current += size
        else:
            current -= live.pop(ptr, 0)
        if window[0] <= t <= window[1]:
            peak = max(peak, current)
            count += size > 0
    start = current if start is None else start
    end = current if end is None else end
    return MeasuredPeak(peak_bytes=peak, start_bytes=start, end_bytes=end, allocations=count)
