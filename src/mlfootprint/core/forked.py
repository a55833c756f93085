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

import contextlib
import os
import pickle
import select
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
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


class Speculation:
    """Work that will probably be asked for later, started now in one forked child on a CPU this process leaves
    idle: ``work(item)`` for each item in order, each result kept (in a private temporary folder) as it is finished.

    When the work is asked for, :meth:`share` divides it: the child keeps the item it is on and goes on through the
    others, this process takes the next unclaimed one, and so on (each item is claimed by whoever gets to it first,
    with a file created exclusively); items not asked for are claimed away from the child, and asked-for items it
    was never given are offered to it too. :meth:`take` instead ends the child and returns what it finished.

    The child runs at a lower priority (this process's own work comes first on a busy machine). Told to stop, it
    unwinds (a file it was writing is removed by its writer's own clean-up, ``core/usercache.replace_atomically``)
    and is killed if it has not ended within :data:`STOP_S`. Nothing is started with one job, where forking is not
    safe (:func:`can_fork`), with nothing to do, or where no temporary folder or process can be had; a child that
    fails or dies leaves its items to this process."""

    STOP_S = 1.0

    def __init__(self, work: Callable[[T], R], items: Sequence[T], jobs: int | None = None) -> None:
        import tempfile

        self.items = list(items)
        self.pid = 0
        self.folder: str | None = None
        if not self.items or (jobs if jobs is not None else default_jobs()) < 2 or not can_fork():
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            self.folder = tempfile.mkdtemp(prefix="mlfootprint-speculation-")
            pid = os.fork()
        except OSError:  # no temporary folder, or no process to be had: the work is done here, when asked
            self._discard()
            return
        if pid == 0:  # the child: never returns
            _speculate(work, self.items, self.folder)
        self.pid = pid

    @property
    def running(self) -> bool:
        return bool(self.pid)

    def share(self, wanted: Sequence[T], work: Callable[[T], R]) -> list[R]:
        """The results of ``work`` for each of ``wanted`` (hashable items), in its order, done between the child
        and this process (``work`` here); then the child is ended."""
        wanted = list(wanted)
        if not self.pid or self.folder is None:
            done = self.take()
            return [done[self.items.index(w)] if w in self.items and self.items.index(w) in done else work(w)
                    for w in wanted]
        try:
            return self._share(wanted, work, self.folder)
        finally:
            self._discard()

    def _share(self, wanted: list[T], work: Callable[[T], R], folder: str) -> list[R]:
        index = {i: w for i, w in enumerate(self.items)}
        extra = list(dict.fromkeys(w for w in wanted if w not in self.items))
        for j, w in enumerate(extra):
            index[len(self.items) + j] = w
        if extra:  # offered to the child after its own items
            part = os.path.join(folder, "extra.part")
            with open(part, "wb") as f:
                pickle.dump(extra, f)
            os.replace(part, os.path.join(folder, "extra"))
        position = {w: i for i, w in reversed(list(index.items()))}
        order = list(dict.fromkeys(position[w] for w in wanted))
        for i, w in index.items():
            if w not in wanted:
                _claim(folder, i)  # not asked for: the child skips it
        results: dict[int, R] = {}
        for i in order:
            if _claim(folder, i):
                results[i] = work(index[i])
        # the child's items: finished, or taken back here if the child is gone or stalled (no CPU used for STALL_S)
        last, still = _cpu_ticks(self.pid), 0.0
        while True:
            results.update(self._finished([i for i in order if i not in results]))
            missing = [i for i in order if i not in results]
            if not missing:
                break
            if not self._alive() or still >= STALL_S:
                self._stop()
                for i in missing:
                    results[i] = work(index[i])
                break
            time.sleep(0.01)
            ticks = _cpu_ticks(self.pid)
            still = still + 0.01 if ticks is not None and ticks == last else 0.0
            last = ticks
        return [results[position[w]] for w in wanted]  # in wanted's order

    def take(self) -> dict[int, R]:
        """End the child; the results it finished, by the item's position."""
        self._stop()
        done = self._finished(range(len(self.items))) if self.folder is not None else {}
        self._discard()
        return done

    def _discard(self) -> None:
        """End the child and remove its folder, results and all."""
        import shutil

        self._stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _finished(self, positions: Any) -> dict[int, R]:
        done: dict[int, R] = {}
        for i in positions:
            try:
                with open(os.path.join(str(self.folder), f"{i}.done"), "rb") as f:
                    done[i] = pickle.load(f)
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                continue
        return done

    def _alive(self) -> bool:
        if not self.pid:
            return False
        try:
            ended = os.waitpid(self.pid, os.WNOHANG)[0]
        except ChildProcessError:
            ended = True
        if ended:
            self.pid = 0
        return not ended

    def _stop(self) -> None:
        import signal

        if not self._alive():
            return
        pid, self.pid = self.pid, 0
        with _suppressed():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.STOP_S
        while True:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            if time.monotonic() > deadline:
                with _suppressed():
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                return
            time.sleep(0.005)

    def __del__(self) -> None:
        if self.pid or self.folder:
            self._discard()  # no child outlives the caller's interest in it


def _claim(folder: str, i: int) -> bool:
    """Claim item ``i`` for this process: True if no one had (the claim file created exclusively)."""
    try:
        os.close(os.open(os.path.join(folder, f"{i}.claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


class _Stop(BaseException):
    """Raised in a speculating child told to stop, so that what it was writing is cleaned up as it unwinds."""


def _speculate(work: Callable[[T], R], items: list[T], folder: str) -> None:
    import signal

    def stop(*_: Any) -> None:
        raise _Stop

    code = 0
    try:
        signal.signal(signal.SIGTERM, stop)
        _as_child()
        with _suppressed():
            os.nice(10)  # speculative: the parent's own work comes first on a busy machine
        i = 0
        while True:
            todo = list(items)
            with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError):
                with open(os.path.join(folder, "extra"), "rb") as f:
                    todo += pickle.load(f)  # asked for by the parent, beyond the guess
            if i >= len(todo):
                break
            if _claim(folder, i):
                payload = pickle.dumps(work(todo[i]), protocol=pickle.HIGHEST_PROTOCOL)
                part = os.path.join(folder, f"{i}.part")
                with open(part, "wb") as f:
                    f.write(payload)
                os.replace(part, os.path.join(folder, f"{i}.done"))
            i += 1
    except BaseException:  # noqa: BLE001 - told to stop, or failed: the parent does the rest itself
        code = 1
    finally:
        os._exit(code)


@contextlib.contextmanager
def _suppressed() -> Iterator[None]:
    with contextlib.suppress(OSError, ChildProcessError):
        yield


def _as_child() -> None:
    """A forked child's set-up: torch on one thread, no progress display, output to /dev/null."""
    torch = sys.modules.get("torch")
    if torch is not None:
        # OpenMP's worker threads are not copied by a fork, and a child entering a parallel region that the
        # parent's pool served waits for them forever (GNU libgomp): one thread, no parallel region.
        torch.set_num_threads(1)
    progress.install(None)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # new streams: no lock another thread held at the fork


def _child(work: Callable[[list[T]], list[R]], share: list[T], write: int) -> None:
    code = 0
    try:
        _as_child()
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
