"""Run history: saved reports in one SQLite file.

The file lives at ``$MLFOOTPRINT_HISTORY`` when that is set, else at
``$XDG_DATA_HOME/mlfootprint/history.sqlite`` (``~/.local/share/...`` when
XDG_DATA_HOME is unset); ``--db PATH`` overrides both.

Promises:

* Nothing already in the file is lost. Every operation opens its own
  connection; a write is one ``BEGIN IMMEDIATE`` transaction under SQLite's
  locks (rollback journal: a writer killed mid-add leaves a hot journal that
  the next connection rolls back, so the file holds every committed entry and
  nothing half-written), so several processes may add reports at once.
* Only SQLite touches the file while it is in use. mlfootprint never opens the
  database with its own file handles (closing any descriptor of a file drops
  every POSIX lock the process holds on it, which lets another writer in under
  a live reader); what is checked is checked through the connection, and
  otherwise only ``stat`` is used.
* A busy database is waited for up to ``busy_timeout_s`` (default
  :data:`BUSY_TIMEOUT_S`), then refused with a one-line "locked by another
  process" :class:`UserError`: never a hang.
* A file that is not an SQLite database, is truncated or damaged, belongs to
  another program, or was written by a newer mlfootprint is refused with a
  one-line :class:`UserError` and left byte for byte as it was (SQLite checks
  the header and the page count when a connection first reads; damage met
  during an add rolls the transaction back). Damage is reported only when
  SQLite says so: its header check (``file is not a database``), or a
  "malformed" error that ``PRAGMA quick_check`` on a fresh connection
  confirms. quick_check is not run before every add: it reads the whole file
  (0.1–1 s at 400 MB), and under four writers that starved one past the busy
  timeout. Schema creation only ever runs on a file that does not exist yet
  (or is empty).

Journal mode: the rollback journal (SQLite's default), not WAL. The history is
written rarely and read rarely; the rollback journal keeps one file (plus a
transient ``-journal``), works with read-only connections without a ``-shm``
file, and on network file systems where WAL's shared memory does not.
"""
from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from ..core.errors import UserError
from ..core.validate import decode_text, is_figure, parse_json
from .schema import Report, _json_default

HISTORY_SCHEMA_VERSION = 1
APPLICATION = "mlfootprint.history"
# PRAGMA application_id: "MLFH" — marks the file as ours in the SQLite header.
APPLICATION_ID = 0x4D4C4648
ENV_VAR = "MLFOOTPRINT_HISTORY"

# Seconds an operation waits for another process's lock before it gives up with a clear error.
# A commit of a 0.5 MB report takes tens of milliseconds; 15 s is many writers' worth of waiting.
BUSY_TIMEOUT_S = 15.0

_T = TypeVar("_T")

_SCHEMA_SQL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        verb TEXT NOT NULL,
        model TEXT,
        label TEXT,
        report_schema TEXT NOT NULL,
        tool TEXT,
        params_total INTEGER,
        flops_total REAL,
        peak_memory_bytes REAL,
        step_s REAL,
        mfu REAL,
        co2e_g REAL,
        report_json TEXT NOT NULL
    )""",
    "CREATE INDEX entries_created_at ON entries(created_at)",
    "CREATE INDEX entries_model ON entries(model COLLATE NOCASE)",
    "CREATE INDEX entries_verb ON entries(verb)",
    "CREATE INDEX entries_label ON entries(label)",
)

# Summary columns: (column, section, key) read from the report.
_SUMMARY = (
    ("params_total", "params", "total"),
    ("flops_total", "flops", "total"),
    ("peak_memory_bytes", "memory", "peak_bytes"),
    ("step_s", "time", "step_s"),
    ("mfu", "time", "mfu"),
    ("co2e_g", "footprint", "co2e_g"),
)
_ENTRY_COLUMNS = ("id", "created_at", "verb", "model", "label", "report_schema", "tool") + tuple(c for c, _, _ in _SUMMARY)


@dataclass(frozen=True)
class Entry:
    """One saved report, as listed: who made it, when, and its headline figures."""

    id: int
    created_at: str  # UTC, ISO 8601 ("2024-05-01T12:34:56Z")
    verb: str
    model: str | None
    label: str | None
    report_schema: str
    tool: str | None
    params_total: int | None = None
    flops_total: float | None = None
    peak_memory_bytes: float | None = None
    step_s: float | None = None
    mfu: float | None = None
    co2e_g: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DiffRow:
    """One leaf of two reports side by side. ``rel_change`` is (b - a) / |a|,
    None where it is undefined (a missing side, a == 0 != b, booleans, text)."""

    path: str
    a: Any
    b: Any
    rel_change: float | None

    def __iter__(self) -> Iterator[Any]:  # unpacks as (path, a, b, rel_change)
        return iter((self.path, self.a, self.b, self.rel_change))

    @property
    def changed(self) -> bool:
        return not same_value(self.a, self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "a": self.a, "b": self.b, "rel_change": self.rel_change}


# -- where the file lives ------------------------------------------------------
def default_path() -> Path:
    """``$MLFOOTPRINT_HISTORY``, else the user's data folder."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        # The XDG spec says relative values are to be ignored.
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "mlfootprint" / "history.sqlite"


def resolve_path(db: str | os.PathLike[str] | None = None) -> Path:
    return Path(db).expanduser() if db not in (None, "") else default_path()


# -- the store -----------------------------------------------------------------
class History:
    """An SQLite store of reports. Each call opens and closes its own connection."""

    def __init__(self, path: str | os.PathLike[str] | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        if isinstance(busy_timeout_s, bool) or not isinstance(busy_timeout_s, (int, float)) \
                or not math.isfinite(busy_timeout_s) or busy_timeout_s < 0:
            raise UserError(f"busy_timeout_s must be a number of seconds >= 0, got {busy_timeout_s!r}")
        self.path = resolve_path(path)
        self.busy_timeout_s = float(busy_timeout_s)
        # where the path came from, for the fix a message names: --db, or the environment variable
        self._from_env = path is None and bool(os.environ.get(ENV_VAR))
        # a path the user named (--db, the environment variable) must be in an existing folder, as -o's must: a typo
        # would otherwise start a new history in a new folder; the default location's folder is made
        self._named = path not in (None, "") or self._from_env

    def _pass_db(self, what: str) -> str:
        """'pass --db with <what>', or, for a path from the environment, 'set $MLFOOTPRINT_HISTORY to ...'."""
        return f"set ${ENV_VAR} to {what}, or pass --db" if self._from_env else f"pass --db with {what}"

    def __repr__(self) -> str:
        return f"History({str(self.path)!r})"

    # public API ----------------------------------------------------------------
    def add(self, report: Report, label: str | None = None) -> int:
        """Store `report`; return its new entry id."""
        if not isinstance(report, Report):
            raise TypeError(f"History.add needs a Report, not {type(report).__name__}")
        data = report.to_dict()
        report_json = json.dumps(data, default=_json_default)
        if label is not None:
            label = " ".join(str(label).split()) or None
        row: dict[str, Any] = {
            "created_at": _utc_now(),
            "verb": str(data.get("verb") or report.verb),
            "model": _model_name(data),
            "label": label,
            "report_schema": str(data.get("schema")),
            "tool": data.get("tool"),
            "report_json": report_json,
        }
        for column, section, key in _SUMMARY:
            row[column] = _summary_number(data.get(section), key, integer=(column == "params_total"))

        if self._file_state() == "new":
            self._ensure_parent()

        def write(timeout_s: float) -> int:
            con = self._connect("rwc", timeout_s)
            try:
                con.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer until COMMIT
                try:
                    # The first read makes SQLite check the header, and that the file holds every page
                    # the header counts (a truncated or foreign file fails here, before any write).
                    if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                        # A new or empty file (or a valid SQLite file with nothing in it). Another process
                        # may have been first: then it is not empty.
                        self._create_schema(con)
                    else:
                        self._check_meta(con)
                    cols = ", ".join(row)
                    marks = ", ".join(f":{c}" for c in row)
                    cur = con.execute(f"INSERT INTO entries ({cols}) VALUES ({marks})", row)
                    new_id = int(cur.lastrowid)
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
                return new_id
            finally:
                con.close()

        return self._run(write, writing=True)

    def list(
        self,
        model: str | None = None,
        verb: str | None = None,
        since: str | datetime | None = None,
        label: str | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Entries, newest first. `model` matches case-insensitively (``*`` is a
        wildcard); `since` is a datetime or ISO date/time (naive means UTC)."""
        if limit is not None and limit <= 0:
            raise UserError(f"--limit must be a positive number, not {limit}")
        where: list[str] = []
        params: list[Any] = []
        if model:
            if "*" in model:
                pattern = model.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
                where.append("model LIKE ? ESCAPE '\\'")
                params.append(pattern)
            else:
                where.append("model = ? COLLATE NOCASE")
                params.append(model)
        if verb:
            where.append("verb = ?")
            params.append(verb)
        if label is not None:
            where.append("label = ?")
            params.append(label)
        if since is not None:
            where.append("created_at >= ?")
            params.append(_normalize_since(since))
        sql = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._read(lambda con: con.execute(sql, params).fetchall())
        return [self._entry_of(r) for r in rows or []]

    def entry(self, entry_id: int) -> Entry:
        """The listing row of one entry."""
        sql = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM entries WHERE id = ?"
        row = self._read(lambda con: con.execute(sql, (int(entry_id),)).fetchone())
        if not row:
            raise self._unknown(entry_id)
        return self._entry_of(row)

    def _entry_of(self, row: Sequence[Any]) -> Entry:
        """A listing row, its columns checked: a database changed by hand, or by another program, says which entry
        is damaged rather than failing in the renderer."""
        entry = Entry(*row)
        for f in fields(Entry):
            value = getattr(entry, f.name)
            if f.name == "id":
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif f.name in ("created_at", "verb", "report_schema"):
                ok = isinstance(value, str)
            elif f.name in ("model", "label", "tool"):
                ok = value is None or isinstance(value, str)
            else:
                ok = value is None or is_figure(value)
            if not ok:
                raise UserError(f"history entry {row[0]!r} in {self.path} is damaged: {f.name} holds {value!r:.40} "
                                "(changed outside mlfootprint); pass another --db")
        return entry

    def get(self, entry_id: int) -> Report:
        """The stored report of entry `entry_id`."""
        row = self._read(lambda con: con.execute("SELECT report_json FROM entries WHERE id = ?", (int(entry_id),)).fetchone())
        if not row:
            raise self._unknown(entry_id)
        origin = f"history entry {entry_id} in {self.path}"
        try:
            text = row[0] if isinstance(row[0], str) else decode_text(bytes(row[0] or b""), origin)
            data = parse_json(text, origin)
        except UserError as exc:
            raise UserError(f"{exc.cli_message}; show another entry (see 'mlfootprint history list')") from None
        report = Report.from_dict(data, origin=origin)
        tool = str(data.get("tool") or "")
        if tool.startswith("mlfootprint "):
            report.tool_version = tool[len("mlfootprint "):]
        return report

    def diff(
        self,
        a: int | Report,
        b: int | Report,
        changed_only: bool = False,
        include_text: bool = False,
        trees: bool = True,
    ) -> list[DiffRow]:
        """Numeric (and boolean) leaves of two reports side by side; each row
        unpacks as ``(path, a_value, b_value, rel_change)``. ``trees=False`` leaves out
        the per-module and per-operator tables (``flops.by_module``, ``flops.by_op``)."""
        ra = a if isinstance(a, Report) else self.get(a)
        rb = b if isinstance(b, Report) else self.get(b)
        return diff_reports(ra, rb, changed_only=changed_only, include_text=include_text, trees=trees)

    def count(self) -> int:
        n = self._read(lambda con: con.execute("SELECT count(*) FROM entries").fetchone()[0])
        return int(n or 0)

    # checks ------------------------------------------------------------------
    def _file_state(self) -> str:
        """'new' (no file, or an empty one) or 'exists'. Only ``stat``: opening the file here could
        drop the POSIX locks of an SQLite connection this process holds on it."""
        p = self.path
        try:
            st = p.stat()
        except FileNotFoundError:
            return "new"
        except OSError as exc:
            raise UserError(f"cannot read history database {p}: {exc.strerror or exc}") from None
        if p.is_dir():
            raise UserError(f"history database {p} is a folder; {self._pass_db('a file path')}")
        return "new" if st.st_size == 0 else "exists"

    def _confirm_damage(self, timeout_s: float) -> str | None:
        """After an error that says 'malformed': what ``PRAGMA quick_check`` finds on a fresh read-only
        connection, or None when it finds the file sound (the error was not the file's fault)."""
        try:
            con = self._connect("ro", timeout_s)
        except sqlite3.Error:
            return None
        try:
            result = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.Error as exc:
            if _is_busy(exc):
                return None  # cannot look now: not confirmed
            if _is_damage(exc) or _errname(exc).startswith("SQLITE_NOTADB"):
                return str(exc)  # SQLite cannot even read the file's first pages
            return None
        finally:
            con.close()
        return None if result == ["ok"] else f"SQLite's integrity check failed: {result[0]}"

    def _check_meta(self, con: sqlite3.Connection) -> None:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in names:
            raise UserError(
                f"{self.path} is an SQLite database but not an mlfootprint history (no 'meta' table); "
                "it was not touched; pass --db with another path"
            )
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("application") != APPLICATION:
            raise UserError(
                f"{self.path} is an SQLite database but not an mlfootprint history; it was not touched; "
                "pass --db with another path"
            )
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise self._corrupt("unreadable schema version") from None
        if version > HISTORY_SCHEMA_VERSION:
            raise UserError(
                f"history database {self.path} was written by a newer mlfootprint (history schema {version}, "
                f"this one reads up to {HISTORY_SCHEMA_VERSION}); upgrade mlfootprint; the file was not touched"
            )
        if version < 1 or "entries" not in names:
            raise self._corrupt(f"its tables do not match history schema {version}")

    def _create_schema(self, con: sqlite3.Connection) -> None:
        """Inside BEGIN IMMEDIATE on a file with no schema: create the tables."""
        for stmt in _SCHEMA_SQL:
            con.execute(stmt)
        con.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("application", APPLICATION), ("schema_version", str(HISTORY_SCHEMA_VERSION)), ("created_at", _utc_now())],
        )
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    # connections -------------------------------------------------------------
    def _connect(self, mode: str, timeout_s: float) -> sqlite3.Connection:
        """A connection with SQLite's busy handler waiting up to `timeout_s` for other processes' locks."""
        uri = self.path.resolve().as_uri() + f"?mode={mode}"
        return sqlite3.connect(uri, uri=True, timeout=max(0.0, timeout_s), isolation_level=None)

    def _ensure_parent(self) -> None:
        parent = self.path.parent
        if self._named and not parent.is_dir():
            raise UserError(f"cannot start a history at {self.path}: folder {parent} does not exist; create it or "
                            f"{self._pass_db('a path in an existing folder')}")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the folder {parent} for the history database: {exc.strerror or exc}") from None

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """Run `query` on a read-only connection; None when there is no history yet (reading never creates one)."""
        if self._file_state() == "new":
            return None

        def run(timeout_s: float) -> _T | None:
            con = self._connect("ro", timeout_s)
            try:
                con.execute("BEGIN")  # deferred: the first read takes a shared lock, held to the end
                if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                    return None  # a valid SQLite file with nothing in it yet
                self._check_meta(con)
                return query(con)
            finally:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                con.close()

        return self._run(run, writing=False)

    def _run(self, fn: Callable[[float], _T], writing: bool) -> _T:
        """Run `fn(seconds left)`, waiting out other processes' locks up to the busy timeout; map SQLite's errors
        to one-line UserErrors. A 'malformed' error is called damage only when quick_check confirms it."""
        deadline = time.monotonic() + self.busy_timeout_s
        recovered = False
        unconfirmed = 0
        while True:
            left = deadline - time.monotonic()
            try:
                return fn(max(0.0, left))
            except sqlite3.Error as exc:
                name = _errname(exc)
                left = deadline - time.monotonic()
                if _is_busy(exc):
                    if left > 0:
                        # SQLite's busy handler gave up early (a lock upgrade it must not wait for): back off.
                        time.sleep(min(left, 0.02 + 0.08 * random.random()))
                        continue
                    raise self._locked() from None
                if name in ("SQLITE_READONLY_ROLLBACK", "SQLITE_READONLY_RECOVERY") and not recovered:
                    # A writer died mid-commit and left a hot journal: a read-write connection rolls it back
                    # (restoring the last commit); then read again.
                    self._recover(max(0.0, left))
                    recovered = True
                    continue
                if _is_damage(exc):
                    found = self._confirm_damage(max(0.0, left))
                    if found is not None:
                        raise self._corrupt(found) from None
                    if unconfirmed < 2:
                        unconfirmed += 1
                        continue
                    verb = "add to" if writing else "read"
                    raise UserError(
                        f"cannot {verb} history database {self.path}: SQLite said '{exc}' but its integrity check "
                        "finds the file sound; nothing was changed; try again") from None
                raise self._map_error(exc, writing) from None

    def _recover(self, timeout_s: float) -> None:
        try:
            con = self._connect("rw", timeout_s)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            pass  # the next attempt says what is wrong

    def _locked(self) -> UserError:
        return UserError(
            f"history database {self.path} is locked by another process (still locked after "
            f"{self.busy_timeout_s:g} s); try again, or close the program that holds it open"
        )

    def _map_error(self, exc: sqlite3.Error, writing: bool) -> UserError:
        name = _errname(exc)
        if name.startswith("SQLITE_NOTADB") or "not a database" in str(exc):
            return self._corrupt(str(exc))  # SQLite's own header check
        if name.startswith("SQLITE_FULL"):
            return UserError(f"cannot write history database {self.path}: the disk is full; nothing was added")
        if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
            return UserError(f"cannot write history database {self.path}: it is read-only; "
                             f"{self._pass_db('a writable path')}")
        if name.startswith("SQLITE_CANTOPEN"):
            return UserError(f"cannot open history database {self.path}; check that its folder exists and is accessible")
        verb = "write" if writing else "read"
        if self.path.exists() and not self.path.is_file():  # a device or a pipe: SQLite says 'disk I/O error'
            return UserError(f"cannot {verb} history database {self.path}: it is not a regular file; "
                             f"{self._pass_db('a file path')}")
        return UserError(f"cannot {verb} history database {self.path}: {exc}")

    def _corrupt(self, why: str) -> UserError:
        return UserError(
            f"history database {self.path} is unreadable ({why}); it was not touched; "
            f"move it aside or {self._pass_db('another path')}"
        )

    def _unknown(self, entry_id: int) -> UserError:
        return UserError(f"no history entry {entry_id} in {self.path}; see 'mlfootprint history list'")


# -- helpers ---------------------------------------------------------------------
def _errname(exc: BaseException) -> str:
    return getattr(exc, "sqlite_errorname", "") or ""


def _is_busy(exc: BaseException) -> bool:
    name = _errname(exc)
    if name:
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def _is_damage(exc: BaseException) -> bool:
    """SQLite errors that may mean a damaged file (to be confirmed by quick_check)."""
    name = _errname(exc)
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_IOERR_SHORT_READ")) or "malformed" in str(exc)


def save_to_history(report: Report, db: str | os.PathLike[str] | None = None, label: str | None = None) -> int:
    """Add `report` to the history (``db`` or the default file); return the entry id.

    For verbs given ``--save``; raises UserError (one line) when the history
    cannot take it, having changed nothing.
    """
    return History(db).add(report, label=label)


# how long mlfootprint itself took (the trace, the planner): run-to-run noise, not a figure of the workload
_TOOL_TIMINGS = ("flops.trace_s", "measured.trace_s", "plan.plan_s")


def diff_reports(a: Report, b: Report, changed_only: bool = False, include_text: bool = False,
                 trees: bool = True) -> list[DiffRow]:
    """Leaves of two reports matched by path, in a's order then b's extras (``trees=False``: without the
    per-module and per-operator tables, thousands of rows between two models, and without the tool's own
    timings)."""
    la = dict(_leaves(_diffable(a, trees)))
    lb = dict(_leaves(_diffable(b, trees)))
    if not trees:
        la, lb = ({k: v for k, v in leaves.items() if k not in _TOOL_TIMINGS} for leaves in (la, lb))
    rows: list[DiffRow] = []
    for path in list(la) + [p for p in lb if p not in la]:
        va, vb = la.get(path), lb.get(path)
        if not include_text and not (_is_number(va) or _is_number(vb) or isinstance(va, bool) or isinstance(vb, bool)):
            continue
        row = DiffRow(path, va, vb, _rel_change(va, vb))
        if changed_only and not row.changed:
            continue
        rows.append(row)
    return rows


def _diffable(report: Report, trees: bool = True) -> dict[str, Any]:
    data = report.to_dict()
    for key in ("schema", "tool", "provenance", "assumptions", "conventions"):
        data.pop(key, None)
    if not trees and isinstance(data.get("flops"), dict):
        data["flops"] = {k: v for k, v in data["flops"].items() if k not in ("by_module", "by_op")}
    return data


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "children" and prefix and _named(value):
                # a tree (flops.by_module): children read as by_module[blocks][0].forward
                yield from _leaves(value, prefix)
            else:
                yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, (list, tuple)) and node and all(isinstance(x, (str, int, float, bool)) or x is None
                                                          for x in node):
        # a list of plain values (workload.defaults, key_assumptions) is one value: compared item by item, one
        # missing item would shift every later one and read as that many changes
        yield prefix, ", ".join(str(x) for x in node)
    elif isinstance(node, (list, tuple)):
        by_name = _named(node)
        for i, item in enumerate(node):
            seg = item["name"] if by_name else str(i)
            if isinstance(item, dict) and by_name:
                # the name is the segment; do not repeat it as a leaf
                item = {k: v for k, v in item.items() if k != "name"}
            yield from _leaves(item, f"{prefix}[{seg}]")
    else:
        yield prefix, node


def _named(items: Any) -> bool:
    """A list of dicts each with its own distinct, non-empty 'name'."""
    if not isinstance(items, (list, tuple)) or not items:
        return False
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    return all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def same_value(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b
    return type(a) is type(b) and a == b


def _rel_change(a: Any, b: Any) -> float | None:
    if not (_is_number(a) and _is_number(b)):
        return None
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    if a == b:
        return 0.0
    if a == 0:
        return None
    return (b - a) / abs(a)


def _model_name(data: dict[str, Any]) -> str | None:
    model = data.get("model")
    if isinstance(model, dict) and model.get("name") not in (None, ""):
        return str(model["name"])
    return None


def _summary_number(section: Any, key: str, integer: bool = False) -> float | int | None:
    if not isinstance(section, dict):
        return None
    value = section.get(key)
    if isinstance(value, dict):  # per-device figures: the largest one
        nums = [v for v in value.values() if _is_number(v)]
        value = max(nums) if nums else None
    elif isinstance(value, list):
        nums = [v for v in value if _is_number(v)]
        value = max(nums) if nums else None
    if not _is_number(value) or not math.isfinite(value):
        return None
    return int(value) if integer else float(value)


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalize_since(since: str | datetime) -> str:
    if isinstance(since, str):
        text = since.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise UserError(f"cannot read the date {since!r}; use ISO form like 2024-05-01 or 2024-05-01T12:00:00Z") from None
    elif isinstance(since, datetime):
        dt = since
    else:
        raise TypeError(f"since must be a datetime or an ISO string, not {type(since).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
