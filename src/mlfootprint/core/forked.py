"""Independent work split over forked copies of this process, each sending its results back through a pipe.

Where work items each cost seconds of Python (``claims`` traces about twenty models on fake tensors), N processes
finish in about 1/N of the time. A forked child starts with everything this process has imported (torch,
transformers' model code) and everything it has computed (traces already made), where a spawned worker would
import torch and transformers again: that start-up cost more than the work it took over (tried: a two-worker
spawn pool made a warm ``claims`` 2.3× slower).

Forking is used only where it is safe: on Linux (``os.fork``; macOS system frameworks are not fork-safe), from a
process running one Python thread (a thread holding a lock at the fork would leave the child's copy of it held
forever: start forked work before a progress display starts its refresh thread). A child runs torch on one thread:
OpenMP's pool is not copied by a fork, and a child entering a parallel region would wait for it forever (the
memory model's real-tensor arithmetic did, under a test process that had multiplied matrices before). Elsewhere,
or with one job, the work runs here, in order. A child prints nothing (its output goes to ``/dev/null``; progress
is this process's to show). A child that dies, cannot send its results, or stalls (no CPU used for
:data:`STALL_S` seconds) has its share redone here; a :class:`UserError` raised in a child is raised here, after
every child has ended.
"""
from __future__ import annotations

import os
import pickle
import select
import sys
import threading
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import UserError
from . import progress

T = TypeVar("T")
R = TypeVar("R")

# Above this many processes the shares of a ~20-item job become too small to balance, and each process holds its
# own traces (~0.5 GB at most): four keeps the total near 2 GB.
MAX_JOBS = 4
# A child idle this long (no CPU used) before its results have all come is stuck; polled every _POLL_S seconds.
STALL_S = 30.0
_POLL_S = 1.0


def can_fork() -> bool:
    """Whether this process may fork workers now: Linux, and no other thread running."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


def default_jobs() -> int:
    """The processes a job uses by default: the CPUs this process may run on, at most :data:`MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def check_jobs(jobs: Any) -> int:
    """``jobs`` as a whole number ≥ 1 (None: :func:`default_jobs`); a UserError otherwise."""
    if jobs is None:
        return default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"jobs must be a whole number of processes, 1 or more (1: no worker processes), got {jobs!r}")
    return jobs


def balanced_shares(items: Sequence[T], weight: Callable[[T], float], group: Callable[[T], Any],
                    jobs: int) -> list[list[int]]:
    """Item positions in ``jobs`` shares of about equal weight; items of one group stay in one share (they reuse
    each other's work). Largest groups first, each to the lightest share; each share in the items' order."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(group(item), []).append(i)
    loads = [0.0] * jobs
    shares: list[list[int]] = [[] for _ in range(jobs)]
    for members in sorted(groups.values(), key=lambda m: (-sum(weight(items[i]) for i in m), m[0])):
        k = min(range(jobs), key=lambda j: (loads[j], j))
        shares[k].extend(members)
        loads[k] += sum(weight(items[i]) for i in members)
    return [sorted(s) for s in shares if s]


def run_shares(work: Callable[[list[T]], list[R]], shares: list[list[T]],
               done: Callable[[int, list[R]], None] | None = None) -> list[list[R]]:
    """``work(share)`` for each share: the first here, the others in forked children when :func:`can_fork` (else
    here, in order). ``done(k, results)`` is called as each share's results arrive here."""
    if len(shares) <= 1 or not can_fork():
        out = []
        for k, share in enumerate(shares):
            out.append(work(share))
            if done:
                done(k, out[-1])
        return out
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # what is buffered would otherwise be written again by each child
    children: list[tuple[int, int]] = []  # (pid, read end)
    try:
        for share in shares[1:]:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(read)
                _child(work, share, write)
            os.close(write)
            children.append((pid, read))
        results: list[list[R] | None] = [work(shares[0])]
        if done:
            done(0, results[0])
        user_error: str | None = None
        for k, (pid, read) in enumerate(children, start=1):
            status, payload = _collect(pid, read)
            children[k - 1] = (0, -1)
            if status == "ok":
                results.append(payload)
            elif status == "user" and user_error is None:
                user_error = payload
                results.append(None)
            else:  # the child died or could not send its results: its share is redone here
                results.append(work(shares[k]) if user_error is None else None)
            if done and results[-1] is not None:
                done(k, results[-1])
        if user_error is not None:
            raise UserError(user_error)
        return [r for r in results if r is not None]
    finally:
        for pid, read in children:  # interrupted: no child outlives this call
            if pid:
                _end(pid, read)


def _child(work: Callable[[list[T]], list[R]], share: list[T], write: int) -> None:
    code = 0
    try:
        torch = sys.modules.get("torch")
        if torch is not None:
            # OpenMP's worker threads are not copied by a fork, and a child entering a parallel region that the
            # parent's pool served waits for them forever (GNU libgomp): one thread, no parallel region.
            torch.set_num_threads(1)
        progress.install(None)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # new streams: no lock another thread held at the fork
        try:
            payload = pickle.dumps(("ok", work(share)))
        except UserError as exc:
            payload = pickle.dumps(("user", str(exc)))
        with os.fdopen(write, "wb") as out:
            out.write(payload)
    except BaseException:  # noqa: BLE001 - the parent redoes this share; nothing may unwind past the fork
        code = 1
    finally:
        os._exit(code)


def _collect(pid: int, read: int) -> tuple[str, Any]:
    """Read a child's results to the end, then reap it: ("ok", results), ("user", message) or ("failed", None).

    A child that uses no CPU for :data:`STALL_S` seconds while its results have not all come is taken as stuck (a
    lock or a thread pool the fork did not copy; the work here is CPU-bound) and killed: its share is redone here."""
    chunks = []
    last, still = _cpu_ticks(pid), 0.0
    while True:
        ready, _, _ = select.select([read], [], [], _POLL_S)
        if ready:
            chunk = os.read(read, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            still = 0.0
            continue
        ticks = _cpu_ticks(pid)
        still = still + _POLL_S if ticks is not None and ticks == last else 0.0
        last = ticks
        if still >= STALL_S:
            _end(pid, read)
            return "failed", None
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not chunks:
        return "failed", None
    try:
        kind, payload = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - a truncated message: redo the share
        return "failed", None
    return kind, payload


def _cpu_ticks(pid: int) -> int | None:
    """User + system CPU time of ``pid`` in clock ticks (/proc/PID/stat fields 14 and 15), None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _end(pid: int, read: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
    try:
        os.close(read)
    except OSError:
        pass
