"""Work shared with forked worker processes (core/forked.py) and the claims split over them (papers/engine.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from mlfootprint.core import forked
from mlfootprint.core.errors import UserError
from mlfootprint.papers import load_claims, run_claims

linux_only = pytest.mark.skipif(not forked.can_fork(), reason="forks workers on Linux only, from one thread")


def test_balanced_shares_keep_groups_together_and_balance_the_weight():
    """Groups b (3 + 3 = 6), a (4), c (2), d (1), e (1) over two shares, heaviest first, each to the lighter share:
    b → 0 (loads 6, 0); a → 1 (6, 4); c → 1 (6, 6); d → 0, the lower index at a tie (7, 6); e → 1 (7, 7).
    Each share keeps the items' order."""
    items = [("a", 4), ("b", 3), ("c", 2), ("b", 3), ("d", 1), ("e", 1)]
    shares = forked.balanced_shares(items, weight=lambda x: x[1], group=lambda x: x[0], jobs=2)
    assert shares == [[1, 3, 4], [0, 2, 5]]
    assert [sum(items[i][1] for i in s) for s in shares] == [7, 7]
    # more processes than groups: no empty share
    assert forked.balanced_shares(items[:2], lambda x: x[1], lambda x: x[0], jobs=4) == [[0], [1]]
    assert forked.balanced_shares([], lambda x: 1, lambda x: x, jobs=2) == []


def test_jobs_are_whole_numbers_of_processes():
    assert forked.check_jobs(3) == 3
    assert 1 <= forked.check_jobs(None) == forked.default_jobs() <= forked.MAX_JOBS
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(UserError, match="jobs must be a whole number"):
            forked.check_jobs(bad)


@linux_only
def test_shares_run_in_forked_children_and_come_back_in_order():
    parent = os.getpid()
    arrived = []
    out = forked.run_shares(lambda share: [(x * x, os.getpid()) for x in share], [[1, 2], [3], [4, 5]],
                            done=lambda k, r: arrived.append(k))
    assert [[v for v, _ in r] for r in out] == [[1, 4], [9], [16, 25]]
    pids = [{pid for _, pid in r} for r in out]
    assert pids[0] == {parent}  # the first share runs here
    assert parent not in pids[1] | pids[2] and pids[1] != pids[2]  # each other share in its own child
    assert arrived == [0, 1, 2]


@linux_only
def test_a_child_that_dies_has_its_share_redone_here():
    parent = os.getpid()

    def work(share):
        if os.getpid() != parent:
            os._exit(3)  # a worker killed mid-share
        return [x + 1 for x in share]

    assert forked.run_shares(work, [[1], [2, 3]]) == [[2], [3, 4]]


@linux_only
def test_a_child_that_stalls_is_ended_and_its_share_redone_here(monkeypatch):
    """A child that uses no CPU (stuck on a lock a fork did not release) is killed after STALL_S seconds idle."""
    monkeypatch.setattr(forked, "STALL_S", 2.0)
    monkeypatch.setattr(forked, "_POLL_S", 0.5)
    parent = os.getpid()

    def work(share):
        if os.getpid() != parent:
            threading.Event().wait()  # forever, without CPU
        return [x * 10 for x in share]

    assert forked.run_shares(work, [[1], [2]]) == [[10], [20]]


@linux_only
def test_a_user_error_in_a_child_is_raised_here():
    parent = os.getpid()

    def work(share):
        if os.getpid() != parent:
            raise UserError("claim 'x': bad input")
        return share

    with pytest.raises(UserError, match="claim 'x': bad input"):
        forked.run_shares(work, [[1], [2]])


@linux_only
def test_a_child_computes_with_torch_after_the_parent_used_its_thread_pool(tmp_path):
    """After the parent ran parallel torch kernels (OpenMP's pool started), a forked child's own real-tensor
    arithmetic (the memory model's) must not wait for the pool's threads, which a fork does not copy. In a
    subprocess with a deadline: the defect this guards against is a hang."""
    script = tmp_path / "fork_after_openmp.py"
    script.write_text(
        "import torch\n"
        "from mlfootprint.core import forked\n"
        "torch.set_num_threads(2)\n"
        "a = torch.ones(512, 512); (a @ a).sum()  # the pool runs\n"
        "out = forked.run_shares(lambda s: [float((torch.ones(256, 256) @ torch.ones(256, 256)).sum()) + x\n"
        "                                   for x in s], [[0.0], [1.0]])\n"
        "print(out)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"[[{256.0 ** 3}], [{256.0 ** 3 + 1}]]"


def test_with_another_thread_running_the_work_stays_here():
    """A thread holding a lock at a fork would leave it held in the child: no fork then, the shares run here."""
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not forked.can_fork()
        parent = os.getpid()
        assert forked.run_shares(lambda s: [os.getpid() for _ in s], [[1], [2]]) == [[parent], [parent]]
    finally:
        stop.set()
        t.join()


@linux_only
def test_claims_split_over_two_processes_give_the_same_outcomes():
    """The same claims, one process and two: every outcome equal, in the file's order (a traced count, model
    states, the source's arithmetic)."""
    ids = ["gpt3-train-flops", "zero-stage3", "palm-540b-mfu", "gpt3-params"]
    claims = load_claims([])
    one = run_claims(claims, ids, jobs=1)
    two = run_claims(claims, ids, jobs=2)
    assert [c.id for c, _ in one] == [c.id for c, _ in two] == [c.id for c in claims if c.id in ids]
    assert [o for _, o in one] == [o for _, o in two]


def test_cli_jobs_zero_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "mlfootprint", "claims", "--jobs", "0", "--only", "palm-540b-mfu"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "jobs must be a whole number" in proc.stderr


# ------------------------------------------------------------------------------------------ speculative work


def _wait_for(path, seconds=30.0):
    import time

    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@linux_only
def test_speculative_work_is_shared_claimed_once_and_returned_in_the_order_asked(tmp_path):
    """The child claims its first item at once and holds it until the parent's own work has run (a file tells it);
    the parent, asked for 3, 5 and 1, claims 2 away (not asked for), does 3 itself, and 5 (offered to the child
    too) goes to whoever claims it first; 1 comes back from the child. Each item is worked on once."""
    parent = os.getpid()
    go = tmp_path / "go"

    def work(x):
        (tmp_path / f"did-{x}-{os.getpid()}").touch()
        if os.getpid() == parent:
            go.touch()
        else:
            _wait_for(go)
        return x * x, os.getpid()

    spec = forked.Speculation(work, [1, 2, 3], jobs=2)
    assert spec.running
    _wait_for(os.path.join(spec.folder, "0.claim"))  # the child has item 1
    child = spec.pid
    out = spec.share([3, 5, 1], work)
    assert [v for v, _ in out] == [9, 25, 1]
    assert out[0][1] == parent and out[2][1] == child != parent
    did = sorted(p.name.split("-")[1] for p in tmp_path.glob("did-*"))
    assert did == ["1", "3", "5"]  # 2 was never worked on; nothing twice
    assert not spec.running and spec.folder is None  # the child ended, its folder removed
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # and reaped


@linux_only
def test_take_returns_what_the_child_finished_and_stops_the_rest(tmp_path):
    parent = os.getpid()

    def work(x):
        if x == 2 and os.getpid() != parent:
            threading.Event().wait(600)  # the child would be here for ten minutes
        return -x

    spec = forked.Speculation(work, [1, 2], jobs=2)
    _wait_for(os.path.join(spec.folder, "0.done"))
    _wait_for(os.path.join(spec.folder, "1.claim"))
    folder = spec.folder
    assert spec.take() == {0: -1}  # item 2 was not finished: the caller does it
    assert not os.path.exists(folder) and not spec.running


@linux_only
def test_a_speculating_child_that_dies_leaves_its_items_to_the_parent(tmp_path):
    parent = os.getpid()

    def work(x):
        if os.getpid() != parent:
            os._exit(3)  # dies on its first item
        return x + 100

    spec = forked.Speculation(work, [1, 2], jobs=2)
    _wait_for(os.path.join(spec.folder, "0.claim"))
    assert spec.share([2, 1], work) == [102, 101]


def test_no_speculation_with_one_job_or_nothing_to_do():
    for spec in (forked.Speculation(lambda x: x, [1, 2], jobs=1), forked.Speculation(lambda x: x, [])):
        assert not spec.running and spec.folder is None
        assert spec.share([2, 3], lambda x: x * 2) == [4, 6]
        assert spec.take() == {}


@linux_only
def test_no_speculation_where_no_temporary_folder_can_be_made(monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    spec = forked.Speculation(lambda x: x, [1], jobs=2)
    assert not spec.running and spec.folder is None
    assert spec.share([1], lambda x: x + 1) == [2]
