"""`mlfootprint history`: the SQLite store of reports and its command."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.report import Report
from mlfootprint.report.history import HISTORY_SCHEMA_VERSION, History, default_path, save_to_history


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # Never touch the real user's history.
    monkeypatch.setenv("MLFOOTPRINT_HISTORY", str(tmp_path / "default" / "history.sqlite"))


def make_report(model="gpt2", verb="count", params=124_439_808, flops=3.0e12, peak=5e9, step=None, fits=True) -> Report:
    data = {
        "schema": "mlfootprint.report/1",
        "verb": verb,
        "model": {"name": model, "layers": 12},
        "params": {"total": params, "trainable": params},
        "flops": {
            "forward": flops / 3,
            "total": flops,
            "by_module": {"name": "root", "forward": flops / 3, "children": [
                {"name": "embed", "forward": 0}, {"name": "blocks", "forward": flops / 3}]},
        },
        "memory": {"peak_bytes": peak, "fits": fits},
        "provenance": {"params.total": "counted"},
        "assumptions": ["batch 1"],
    }
    if step is not None:
        data["time"] = {"step_s": step, "mfu": 0.4}
    return Report.from_dict(data)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*argv: str, env_db: Path | None = None) -> subprocess.CompletedProcess:
    from conftest import run_cli as run

    return run(*argv, env={"MLFOOTPRINT_HISTORY": str(env_db)} if env_db is not None else None)


def filled_db(tmp_path: Path, n: int = 30) -> Path:
    db = tmp_path / "h.sqlite"
    h = History(db)
    for i in range(n):
        h.add(make_report(model=f"m{i % 3}", flops=1e12 * (i + 1)), label="x" * (i % 2))
    return db


# -- the store -------------------------------------------------------------------
def test_round_trip_add_list_filter_show_diff(tmp_path):
    db = tmp_path / "sub" / "dir" / "h.sqlite"
    h = History(db)
    assert h.list() == [] and not db.exists()  # reading never creates the file
    # a path the user names must be in an existing folder (as -o's): a typo does not start a history elsewhere
    with pytest.raises(UserError, match=r"folder .*sub/dir does not exist; create it or pass (--)?db with a path"):
        h.add(make_report("gpt2", "count"))
    assert not (tmp_path / "sub").exists()
    db.parent.mkdir(parents=True)
    a = h.add(make_report("gpt2", "count"), label="baseline")
    b = h.add(make_report("gpt2", "predict", flops=3.3e12, step=0.25, fits=False))
    c = h.add(make_report("Llama-2-7b", "memory", params=6_738_415_616))
    assert len({a, b, c}) == 3 and db.exists()

    entries = h.list()
    assert [e.id for e in entries] == [c, b, a]  # newest first
    first = entries[-1]
    assert (first.verb, first.model, first.label) == ("count", "gpt2", "baseline")
    assert first.params_total == 124_439_808 and first.flops_total == 3.0e12 and first.peak_memory_bytes == 5e9
    assert first.step_s is None and first.co2e_g is None  # absent, not zero
    assert first.created_at.endswith("Z") and "T" in first.created_at
    assert entries[1].step_s == 0.25 and entries[1].mfu == 0.4

    assert [e.id for e in h.list(model="GPT2")] == [b, a]
    assert [e.id for e in h.list(model="llama*")] == [c]
    assert [e.id for e in h.list(verb="predict")] == [b]
    assert [e.id for e in h.list(label="baseline")] == [a]
    assert [e.id for e in h.list(limit=2)] == [c, b]
    assert len(h.list(since="2000-01-01")) == 3
    assert h.list(since="2999-01-01T00:00:00Z") == []
    with pytest.raises(UserError):
        h.list(since="yesterday-ish")

    got = h.get(b)
    assert isinstance(got, Report)
    assert got.sections == make_report("gpt2", "predict", flops=3.3e12, step=0.25, fits=False).sections
    assert got.provenance == {"params.total": "counted"} and got.assumptions == ["batch 1"]

    rows = h.diff(a, b)
    by_path = {r.path: r for r in rows}
    path, va, vb, rel = by_path["flops.total"]  # rows unpack as 4-tuples
    assert (path, va, vb) == ("flops.total", 3.0e12, 3.3e12) and rel == pytest.approx(0.1)
    assert by_path["params.total"].rel_change == 0.0
    assert by_path["memory.fits"].a is True and by_path["memory.fits"].b is False
    assert by_path["time.step_s"].a is None and by_path["time.step_s"].rel_change is None
    assert by_path["flops.by_module[blocks].forward"].rel_change == pytest.approx(0.1)
    assert by_path["flops.by_module[embed].forward"].rel_change == 0.0  # 0 → 0 is no change
    assert "model.name" not in by_path  # numeric leaves only by default
    changed = {r.path for r in h.diff(a, b, changed_only=True)}
    assert "params.total" not in changed and {"flops.total", "memory.fits", "time.step_s"} <= changed
    with pytest.raises(UserError, match="no history entry 999"):
        h.get(999)
    with pytest.raises(UserError, match="no history entry"):
        h.diff(a, 999)


def test_default_location_and_save_helper(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFOOTPRINT_HISTORY", str(tmp_path / "env.sqlite"))
    assert default_path() == tmp_path / "env.sqlite"
    monkeypatch.delenv("MLFOOTPRINT_HISTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform != "win32":
        assert default_path() == tmp_path / "xdg" / "mlfootprint" / "history.sqlite"
    entry = save_to_history(make_report(), db=tmp_path / "saved.sqlite", label="run 1")
    assert History(tmp_path / "saved.sqlite").list()[0].id == entry
    assert History(tmp_path / "saved.sqlite").list()[0].label == "run 1"
    if sys.platform != "win32":  # the default location's folders are made; a named path's must exist
        assert History().add(make_report()) == 1 and default_path().is_file()
        monkeypatch.setenv("MLFOOTPRINT_HISTORY", str(tmp_path / "typo" / "h.sqlite"))
        with pytest.raises(UserError, match=r"folder .*typo does not exist; create it or set \$MLFOOTPRINT_HISTORY"):
            History().add(make_report())


def test_empty_file_is_a_new_history(tmp_path):
    db = tmp_path / "empty.sqlite"
    db.touch()
    assert History(db).list() == []
    assert History(db).add(make_report()) == 1


_WRITER = textwrap.dedent(
    """
    import sys, time
    from mlfootprint.report import Report
    from mlfootprint.report.history import History
    db, who, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rep = Report.from_dict({"schema": "mlfootprint.report/1", "verb": "count",
                            "model": {"name": who}, "params": {"total": 1}})
    h = History(db)
    while time.time() < start:
        time.sleep(0.001)
    ids = [h.add(rep, label=who) for _ in range(100)]
    print(" ".join(map(str, ids)))
    """
)


def test_two_processes_writing_concurrently_lose_nothing(tmp_path):
    db = tmp_path / "h.sqlite"  # both also race to create it
    start = time.time() + 1.5
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db), who, str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for who in ("p1", "p2")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    reported = [int(x) for out, _ in outs for x in out.split()]
    h = History(db)
    entries = h.list()
    assert len(entries) == 200 == h.count()
    assert len({e.id for e in entries}) == 200
    assert sorted(reported) == sorted(e.id for e in entries)
    assert len(h.list(label="p1")) == 100 and len(h.list(label="p2")) == 100


def _corruptions(valid: bytes) -> dict[str, bytes]:
    return {
        "half": valid[: len(valid) // 2],
        "whole_pages": valid[: 4096 * 3],
        "garbage": bytes((i * 131 + 7) % 256 for i in range(len(valid))),
        "text": b"this is my thesis, not a database\n" * 50,
        "header_only": valid[:60],
    }


@pytest.mark.parametrize("kind", ["half", "whole_pages", "garbage", "text", "header_only"])
def test_corrupt_database_is_refused_and_untouched(tmp_path, kind):
    valid = filled_db(tmp_path).read_bytes()
    db = tmp_path / f"{kind}.sqlite"
    db.write_bytes(_corruptions(valid)[kind])
    before = sha(db)
    h = History(db)
    for op in (lambda: h.add(make_report()), h.list, lambda: h.get(1), lambda: h.diff(1, 2), h.count):
        with pytest.raises(UserError) as info:
            op()
        msg = str(info.value)
        assert "\n" not in msg and str(db) in msg and "not touched" in msg
        assert sha(db) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(kind)) == [db.name]  # no journal left


@pytest.mark.parametrize("argv", [("add", "{report}"), ("list",), ("show", "1"), ("diff", "1", "2")])
def test_cli_corrupt_database_exit_2_one_line(tmp_path, argv):
    valid = filled_db(tmp_path).read_bytes()
    db = tmp_path / "broken.sqlite"
    db.write_bytes(valid[: len(valid) // 2])
    before = sha(db)
    report = tmp_path / "r.json"
    report.write_text(make_report().to_json())
    args = [a.format(report=report) for a in argv]
    proc = run_cli("history", *args, "--db", str(db))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlfootprint: error:") and "not touched" in lines[0]
    assert "Traceback" not in proc.stderr
    assert sha(db) == before
    # the same through the environment variable
    proc = run_cli("history", "list", env_db=db)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert sha(db) == before


def test_newer_schema_is_refused_and_untouched(tmp_path):
    db = filled_db(tmp_path, n=3)
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(HISTORY_SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    before = sha(db)
    h = History(db)
    for op in (lambda: h.add(make_report()), h.list, lambda: h.get(1)):
        with pytest.raises(UserError, match="newer mlfootprint.*upgrade"):
            op()
        assert sha(db) == before
    report = tmp_path / "r.json"
    report.write_text(make_report().to_json())
    proc = run_cli("history", "add", str(report), "--db", str(db))
    assert proc.returncode == 2 and "newer mlfootprint" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sha(db) == before


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path):
    db = tmp_path / "other.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE notes (body TEXT)")
    con.execute("INSERT INTO notes VALUES ('precious')")
    con.commit()
    con.close()
    before = sha(db)
    with pytest.raises(UserError, match="not an mlfootprint history"):
        History(db).add(make_report())
    assert sha(db) == before


def test_hot_journal_from_a_crashed_writer_is_rolled_back(tmp_path):
    db = filled_db(tmp_path, n=5)
    crash = textwrap.dedent(
        f"""
        import os, sqlite3
        con = sqlite3.connect({str(db)!r}, isolation_level=None)
        con.execute("PRAGMA cache_size = 2")
        con.execute("BEGIN IMMEDIATE")
        for _ in range(300):
            con.execute("INSERT INTO entries (created_at, verb, report_schema, report_json) VALUES ('t', 'crash', 's', ?)", ("y" * 3000,))
        os._exit(1)
        """
    )
    subprocess.run([sys.executable, "-c", crash], check=False, timeout=60)
    if not Path(str(db) + "-journal").exists():
        pytest.skip("SQLite did not spill the transaction to disk; no hot journal to recover")
    h = History(db)
    assert len(h.list()) == 5 and all(e.verb == "count" for e in h.list())
    assert h.add(make_report()) == 6


# -- the command ---------------------------------------------------------------------
def test_cli_add_list_show_diff(tmp_path, capsys):
    db = tmp_path / "cli.sqlite"
    r1, r2 = tmp_path / "a.json", tmp_path / "b.json"
    r1.write_text(make_report("gpt2").to_json())
    r2.write_text(make_report("gpt2", flops=6e12, step=0.5).to_json())
    assert main(["history", "add", str(r1), "--label", "base", "--db", str(db)]) == 0
    assert "as entry 1" in capsys.readouterr().out
    assert main(["history", "add", str(r2), "--db", str(db), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["history"]["added"][0]["id"] == 2

    assert main(["history", "list", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "gpt2" in out and "base" in out
    assert main(["history", "list", "--db", str(db), "--format", "json", "--label", "base"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in listed["history"]["entries"]] == [1]
    assert main(["history", "list", "--db", str(db), "--format", "md", "--limit", "1"]) == 0
    md = capsys.readouterr().out
    assert "| id |" in md and "| 2 |" in md and "| 1 |" not in md

    assert main(["history", "show", "2", "--db", str(db), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["schema"] == "mlfootprint.report/1" and shown["flops"]["total"] == 6e12

    out_file = tmp_path / "diff.json"
    assert main(["history", "diff", "1", "2", "--db", str(db), "-o", str(out_file)]) == 0
    diff = json.loads(out_file.read_text())
    rows = {r["path"]: r for r in diff["history"]["rows"]}
    assert rows["flops.total"]["rel_change"] == pytest.approx(1.0)
    assert "params.total" not in rows  # unchanged figures only with --all
    assert main(["history", "diff", "1", "2", "--db", str(db), "--all"]) == 0
    out = capsys.readouterr().out
    assert "+100.00%" in out and "params.total" in out

    assert main(["history", "show", "42", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no history entry 42" in err


def test_cli_add_rejects_non_reports(tmp_path):
    db = tmp_path / "h.sqlite"
    not_report = tmp_path / "config.json"
    not_report.write_text(json.dumps({"hidden_size": 768}))
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema": "mlfootprint.report/99", "verb": "count"}))
    not_json = tmp_path / "notes.json"
    not_json.write_text("hello")
    for bad in (not_report, newer, not_json, tmp_path / "missing.json"):
        proc = run_cli("history", "add", str(bad), "--db", str(db))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mlfootprint: error:") and "Traceback" not in proc.stderr
    assert not db.exists()
    # one bad file among good ones adds nothing
    good = tmp_path / "good.json"
    good.write_text(make_report().to_json())
    assert main(["history", "add", str(good), str(not_report), "--db", str(db)]) == 2
    assert History(db).list() == []


def test_diff_of_two_models_lists_their_figures_not_their_module_trees(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "140")  # paths whole on one line (a narrow terminal folds them)
    # gpt2 against opt-125m once printed 2,791 rows, every module's path and type among them, and a module's
    # parameters in FLOP ("flops.by_module.params 124 MFLOP"): the trees come with --all, their params as counts
    from mlfootprint.cli import main

    db = str(tmp_path / "h.sqlite")
    for model in ("gpt2", "opt-125m"):
        assert main(["count", model, "--seq", "32", "--save", "--db", db]) == 0
    capsys.readouterr()
    assert main(["history", "diff", "1", "2", "--db", db]) == 0
    short = capsys.readouterr().out
    assert "by_module" not in short and "flops.model" in short and len(short.splitlines()) < 60
    assert main(["history", "diff", "1", "2", "--db", db, "--all"]) == 0
    full = capsys.readouterr().out
    assert "flops.by_module.params" in full and "124,439,808" in full and "124 MFLOP" not in full


@pytest.mark.parametrize("columns", [80, 120])
def test_history_tables_follow_the_terminal_width(tmp_path, columns):
    # like every table, history's follow COLUMNS (they were drawn 160 wide whatever the terminal)
    from conftest import run_cli as run
    db = filled_db(tmp_path, n=3)
    for argv in (["list"], ["diff", "1", "2", "--all"]):
        proc = run("history", *argv, "--db", str(db), env={"COLUMNS": str(columns)})
        assert proc.returncode == 0, proc.stderr
        assert max(len(line) for line in proc.stdout.splitlines()) <= columns, proc.stdout


def test_diff_takes_a_list_of_values_as_one_value_and_leaves_out_the_tools_timings():
    # workload.defaults of two analyze runs differed by one item, and compared index by index every later item read
    # as a change (38 rows); the trace's own wall time changes on every run
    from mlfootprint.report.history import diff_reports

    def report(defaults, trace_s):
        rep = make_report().to_dict()
        rep["workload"] = {"batch": 1, "defaults": defaults}
        rep["flops"]["trace_s"] = trace_s
        return Report.from_dict(rep)

    a = report(["batch", "cp", "cp_comm", "dp", "ep"], 0.002)
    b = report(["cp", "cp_comm", "dp", "ep"], 0.009)
    rows = {r.path: r for r in diff_reports(a, b, changed_only=True, include_text=True, trees=False)}
    assert set(rows) == {"workload.defaults"}
    assert rows["workload.defaults"].a == "batch, cp, cp_comm, dp, ep" and rows["workload.defaults"].b == "cp, cp_comm, dp, ep"
    every = {r.path for r in diff_reports(a, b, changed_only=True, include_text=True, trees=True)}
    assert every == {"workload.defaults", "flops.trace_s"}  # --all keeps them


@pytest.mark.parametrize("name", ["h.csv", "h.tex"])
def test_history_refuses_the_formats_it_does_not_write(tmp_path, name):
    # -o h.csv exited 0 with every entry as one Python dict in a cell; history writes table, json, md and html
    from conftest import run_cli as run
    db = filled_db(tmp_path, n=2)
    proc = run("history", "list", "--db", str(db), "-o", str(tmp_path / name))
    assert proc.returncode == 2 and "which this command does not write (table, json, md, html)" in proc.stderr
    assert not (tmp_path / name).exists()


def test_a_damaged_entry_is_named_not_a_traceback(tmp_path, capsys):
    # a listing column changed outside mlfootprint (text where a figure belongs) ended 'history list' in a TypeError
    import sqlite3
    from mlfootprint.cli import main

    db = tmp_path / "h.db"
    rep = tmp_path / "a.json"
    assert main(["count", "tests/data/configs/tiny-gpt2", "--seq", "8", "-o", str(rep)]) == 0
    assert main(["history", "add", "--db", str(db), str(rep)]) == 0
    con = sqlite3.connect(db)
    con.execute("UPDATE entries SET params_total = 'abc'")
    con.commit()
    con.close()
    capsys.readouterr()
    assert main(["history", "list", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfootprint: error: history entry 1 in ") and "is damaged: params_total holds 'abc'" in err
    assert "\n" not in err


def test_a_report_with_a_figure_beyond_any_float_is_refused_in_one_line(tmp_path, capsys):
    # params.total = 10**400 passed the number check and ended report/compare/history add in an OverflowError
    import json
    from mlfootprint.cli import main

    good = tmp_path / "a.json"
    assert main(["count", "tests/data/configs/tiny-gpt2", "--seq", "8", "-o", str(good)]) == 0
    data = json.loads(good.read_text())
    data["params"]["total"] = 10**400
    bad = tmp_path / "t4.json"
    bad.write_text(json.dumps(data))
    for argv in (["report", str(bad)], ["compare", str(good), str(bad)],
                 ["history", "add", "--db", str(tmp_path / "h.db"), str(bad)]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("mlfootprint: error: ") and "params.total: expected a number" in err and "\n" not in err
