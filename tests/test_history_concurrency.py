"""The history under concurrency (issue 14): writers killed at random lose nothing and never see a false
"malformed"; a locked database is a clean one-line error within the busy timeout, never a hang; damage is
reported only when SQLite's quick_check confirms it; mlfootprint opens no file handle of its own on the database.

The test is the issue's full size (4 writers × 200 adds of 0.5 MB, 40 kills); ``python
benchmarks/history_concurrency.py`` prints its figures and timing.
Before the fix, 4 writers × 50 adds of 0.5 MB with 8 kills gave 1–2 failed adds per run ("integrity check
failed: … invalid page number", a false alarm: the final integrity_check was ok).
"""
from __future__ import annotations

import builtins
import hashlib
import importlib.util
import io
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlfootprint.core.errors import UserError
from mlfootprint.report import Report
from mlfootprint.report.history import History

ROOT = Path(__file__).resolve().parents[1]


def _driver():
    spec = importlib.util.spec_from_file_location("history_concurrency", ROOT / "benchmarks" / "history_concurrency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(name: str = "gpt2") -> Report:
    return Report.from_dict({"schema": "mlfootprint.report/1", "verb": "count", "model": {"name": name},
                             "params": {"total": 124_439_808}})


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_four_writers_killed_at_random_lose_nothing(tmp_path):
    db = tmp_path / "h.sqlite"
    out = _driver().run(db, writers=4, adds=200, report_bytes=500_000, kills=40, seed=14, timeout_s=600)
    assert out["crashed_writers"] == []
    assert out["kills"] >= 4  # the writers were really killed mid-run (40 planned; the adds may all land first)
    assert out["failed_adds"] == 0, out["failures"]
    assert out["lost_rows"] == 0, out["lost_ids"]  # every add a writer saw succeed is in the file, as its own
    assert out["missing_adds"] == 0, out["missing"]  # every one of the 800 adds landed (restarts redo the last)
    assert out["integrity"] == "ok"
    # Rows: the 800 recorded adds + those committed just before a kill and redone after the restart.
    assert out["rows"] == 800 + out["unrecorded_commits"] and out["recorded_adds"] == 800
    h = History(db)
    assert h.count() == out["rows"]
    assert len(h.get(h.list(limit=1)[0].id).to_json()) > 500_000  # the 0.5 MB reports read back whole


_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")   # another program holding the database
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.execute("COMMIT")
    """
)


def _hold(db: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_locked_database_is_a_clean_error_within_the_busy_timeout(tmp_path):
    db = tmp_path / "h.sqlite"
    History(db).add(report())
    before = sha(db)
    holder = _hold(db, 120)
    try:
        h = History(db, busy_timeout_s=0.5)
        for op in (h.list, h.count, lambda: h.get(1), lambda: h.add(report("llama"))):
            with pytest.raises(UserError) as info:
                op()
            msg = str(info.value)
            assert "\n" not in msg and "locked by another process" in msg and "after 0.5 s" in msg
            assert str(db) in msg and "try again" in msg
        assert sha(db) == before
        # The command line, with the default timeout: exit 2, one line, no traceback (both at once, in parallel).
        report_file = tmp_path / "r.json"
        report_file.write_text(report("llama").to_json())
        procs = [subprocess.Popen([sys.executable, "-m", "mlfootprint", "history", *argv, "--db", str(db)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for argv in (["list"], ["add", str(report_file)])]
        for proc in procs:
            _, err = proc.communicate(timeout=60)  # BUSY_TIMEOUT_S is 15 s: an answer, not a hang
            assert proc.returncode == 2
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("mlfootprint: error:") and "locked by another process" in err
        assert sha(db) == before
    finally:
        holder.kill()
        holder.wait()
    assert [e.model for e in History(db).list()] == ["gpt2"]  # nothing was added while locked


def test_a_short_lock_is_waited_for(tmp_path):
    db = tmp_path / "h.sqlite"
    History(db).add(report())
    holder = _hold(db, 1.0)
    try:
        assert History(db, busy_timeout_s=30).add(report("llama")) == 2  # waited, then added
    finally:
        holder.wait(timeout=30)
    assert [e.model for e in History(db).list()] == ["llama", "gpt2"]


def test_malformed_is_reported_only_when_quick_check_confirms_it(tmp_path):
    db = tmp_path / "h.sqlite"
    h = History(db)
    h.add(report())
    calls = []

    def flaky(timeout_s: float) -> str:  # a 'malformed' error on a file that is sound
        calls.append(timeout_s)
        if len(calls) == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return "read"

    assert h._run(flaky, writing=False) == "read"  # quick_check found it sound: tried again, no alarm
    assert len(calls) == 2

    def always(timeout_s: float) -> str:
        raise sqlite3.DatabaseError("database disk image is malformed")

    with pytest.raises(UserError) as info:
        h._run(always, writing=True)
    msg = str(info.value)
    assert "finds the file sound" in msg and "unreadable" not in msg and "move it aside" not in msg

    # A really damaged file: the same error, confirmed → the damage message.
    valid = db.read_bytes()
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(valid[: len(valid) // 2])
    with pytest.raises(UserError, match="unreadable.*malformed.*not touched"):
        History(broken)._run(always, writing=False)


def test_no_python_file_handle_is_opened_on_the_database(tmp_path, monkeypatch):
    # Closing any descriptor of the file drops the process's POSIX locks on it (the cause of issue 14's
    # false "malformed"): only SQLite may open it.
    db = tmp_path / "h.sqlite"
    opened: list[str] = []
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def watch(real):
        def opener(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and Path(os.fspath(file)).name.startswith(db.name):
                opened.append(os.fspath(file))
            return real(file, *args, **kwargs)
        return opener

    monkeypatch.setattr(builtins, "open", watch(real_open))
    monkeypatch.setattr(io, "open", watch(real_io_open))
    monkeypatch.setattr(os, "open", watch(real_os_open))
    h = History(db)
    first = h.add(report())
    second = h.add(report("llama"))
    assert [e.id for e in h.list()] == [second, first] and h.count() == 2
    assert h.get(first).sections["params"]["total"] == 124_439_808
    assert h.diff(first, second) is not None
    assert opened == []
