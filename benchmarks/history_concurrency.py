"""The history under concurrent writers that get killed: failed adds, lost rows, integrity, time.

W writer processes each add N reports of about R bytes to one SQLite history. Meanwhile the driver SIGKILLs a
random live writer every 0.2–1.2 s (K kills in all) and restarts it; a restarted writer goes on from the add
after the last one it recorded. Each writer appends ``ok <i> <id>`` (or ``fail <i> <error>``) to its ledger
after each add. At the end:

* ``failed_adds``: adds that returned an error (must be 0: a writer that is not killed never fails);
* ``lost_rows``: ledger ids missing from the database, or holding another writer's add (must be 0);
* ``missing_adds``: (writer, i) with no row at all (must be 0: every add eventually landed);
* ``unrecorded_commits``: rows committed by a writer killed before it wrote its ledger line (allowed: the
  restarted writer adds that report again);
* ``integrity``: ``PRAGMA integrity_check`` of the final file (must be ``ok``).

    python benchmarks/history_concurrency.py [--writers 4] [--adds 200] [--report-bytes 500000] [--kills 40]

The issue-14 figures (3 writers × 0.5 MB for 75 s before the fix): 138 of 759 adds failed with a false
"database disk image is malformed", 817 with kills. tests/test_history_concurrency.py runs this driver scaled
down.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

WRITER = textwrap.dedent(
    """
    import sys
    from mlfootprint.core.errors import UserError
    from mlfootprint.report import Report
    from mlfootprint.report.history import History

    db, who, adds, size, ledger = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    try:
        with open(ledger, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    lines = [line for line in text.split("\\n")[:-1] if line.startswith(("ok ", "fail "))]  # complete lines only
    pad = "x" * 996
    report = Report.from_dict({"schema": "mlfootprint.report/1", "verb": "count", "model": {"name": who},
                               "params": {"total": 1}, "assumptions": [pad] * max(1, size // 1000)})
    history = History(db)
    with open(ledger, "a", encoding="utf-8") as out:
        if text and not text.endswith("\\n"):
            out.write("\\n")  # a line cut short by a kill
        for i in range(len(lines), adds):
            try:
                line = f"ok {i} {history.add(report, label=f'{who}:{i}')}"
            except UserError as exc:
                line = "fail " + str(i) + " " + " ".join(str(exc).split())
            out.write(line + "\\n")
            out.flush()
    """
)


def _start(db: Path, who: str, adds: int, size: int, ledger: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), who, str(adds), str(size), str(ledger)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def run(db: Path, writers: int = 4, adds: int = 200, report_bytes: int = 500_000, kills: int = 40,
        seed: int = 14, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Drive the writers (see the module doc) and return the figures."""
    db = Path(db)
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
    rng = random.Random(seed)
    names = [f"w{k}" for k in range(writers)]
    ledgers = {w: db.with_name(f"{db.name}.{w}.ledger") for w in names}
    for path in ledgers.values():
        path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    procs = {w: _start(db, w, adds, report_bytes, ledgers[w], env) for w in names}
    crashed: list[str] = []
    done_kills = 0
    next_kill = time.perf_counter() + rng.uniform(0.2, 1.2)
    while True:
        for w, p in procs.items():
            if p.poll() is not None and p.returncode != 0 and p.returncode != -signal.SIGKILL:
                crashed.append(f"{w} exited {p.returncode}: {(p.stderr.read() if p.stderr else '')[-400:]}")
                procs[w] = _start(db, w, adds, report_bytes, ledgers[w], env)
        alive = [w for w, p in procs.items() if p.poll() is None]
        if not alive:
            break
        if time.perf_counter() - t0 > timeout_s:
            for p in procs.values():
                p.kill()
            raise TimeoutError(f"writers still running after {timeout_s:g} s")
        if done_kills < kills and time.perf_counter() >= next_kill:
            w = rng.choice(alive)
            procs[w].send_signal(signal.SIGKILL)
            procs[w].wait()
            done_kills += 1
            procs[w] = _start(db, w, adds, report_bytes, ledgers[w], env)
            next_kill = time.perf_counter() + rng.uniform(0.2, 1.2)
        time.sleep(0.02)
    for p in procs.values():
        if p.stderr:
            p.stderr.close()
    elapsed = time.perf_counter() - t0
    return {**check(db, ledgers, adds), "writers": writers, "adds_per_writer": adds, "report_bytes": report_bytes,
            "kills": done_kills, "crashed_writers": crashed, "elapsed_s": elapsed}


def check(db: Path, ledgers: dict[str, Path], adds: int) -> dict[str, Any]:
    """Compare the ledgers with the database (read with plain sqlite3, not through mlfootprint)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        labels = dict(con.execute("SELECT id, label FROM entries").fetchall())
        integrity = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
    finally:
        con.close()
    recorded: dict[int, str] = {}
    failures: list[str] = []
    for who, path in ledgers.items():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split(" ", 2)
            if parts[0] == "ok" and len(parts) == 3:
                recorded[int(parts[2])] = f"{who}:{parts[1]}"
            elif parts[0] == "fail":
                failures.append(f"{who}: {line}")
    lost = sorted(i for i, label in recorded.items() if labels.get(i) != label)
    present = set(labels.values())
    missing = sorted(f"{w}:{i}" for w in ledgers for i in range(adds) if f"{w}:{i}" not in present)
    return {"rows": len(labels), "recorded_adds": len(recorded), "failed_adds": len(failures),
            "failures": failures[:5], "lost_rows": len(lost), "lost_ids": lost[:20], "missing_adds": len(missing),
            "missing": missing[:20], "unrecorded_commits": len(set(labels) - set(recorded)),
            "integrity": integrity[0] if integrity == ["ok"] else "; ".join(integrity[:5])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--adds", type=int, default=200, help="adds per writer")
    ap.add_argument("--report-bytes", type=int, default=500_000, help="size of each report's JSON")
    ap.add_argument("--kills", type=int, default=40, help="SIGKILLs of random writers (each restarted)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--db", help="history file to use (default: a new one in a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "history.sqlite"
        out = run(db, args.writers, args.adds, args.report_bytes, args.kills, args.seed)
        out["db_bytes"] = db.stat().st_size
    print(json.dumps(out, indent=1))
    n = out["writers"] * out["adds_per_writer"]
    print(f"{out['writers']} writers × {out['adds_per_writer']} adds of {out['report_bytes'] / 1e6:g} MB, "
          f"{out['kills']} kills: {out['failed_adds']} failed adds, {out['lost_rows']} lost rows, "
          f"{out['missing_adds']} missing, integrity {out['integrity']}; {out['elapsed_s']:.1f} s "
          f"({n / out['elapsed_s']:.1f} adds/s)")


if __name__ == "__main__":
    main()
