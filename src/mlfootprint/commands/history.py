"""`mlfootprint history`: save reports, list them, show one, diff two."""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from .output import add_output_options, output_format, write_output
from ..report import units
from ..report.history import ENV_VAR, DiffRow, Entry, History, default_path
from ..report.schema import Report

HISTORY_SCHEMA = "mlfootprint.history/1"  # the JSON forms of list, add and diff (not reports)

_LIST_COLUMNS = (
    # (attribute, header, formatter)
    ("params_total", "params", lambda v: units.si(v, digits=4)),
    ("flops_total", "FLOPs", lambda v: units.si(v, "FLOP")),
    ("peak_memory_bytes", "peak memory", lambda v: units.gb(v)),
    ("step_s", "step", lambda v: units.seconds(v)),
    ("mfu", "MFU", lambda v: f"{100 * v:.1f}%"),
    ("co2e_g", "CO2e", lambda v: units.by_key("co2e_g", v)),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "history",
        help="save reports and recall, list and compare them",
        description="A local store of saved reports (SQLite). "
        f"Default file: {_default_hint()}; override with ${ENV_VAR} or --db PATH.",
    )
    p.set_defaults(func=lambda args: _print_help(p))
    actions = p.add_subparsers(dest="history_action", metavar="ACTION")

    a = actions.add_parser("add", help="add report JSON files to the history",
                           description="Add reports (written with --format json) to the history.")
    a.add_argument("reports", nargs="+", metavar="REPORT.json", help="report file(s) to add")
    a.add_argument("--label", default=None, help="a label to find the entry by later")
    _common(a)
    a.set_defaults(func=run_add)

    ls = actions.add_parser("list", help="list saved reports, newest first",
                            description="List saved reports, newest first.")
    ls.add_argument("--model", default=None, help="only this model (case-insensitive; * is a wildcard)")
    ls.add_argument("--verb", default=None, help="only reports made by this verb (count, memory, predict, ...)")
    ls.add_argument("--label", default=None, help="only entries with this label")
    ls.add_argument("--since", default=None, metavar="DATE", help="only entries added at or after DATE (ISO; UTC unless it says)")
    ls.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="at most N entries")
    _common(ls)
    ls.set_defaults(func=run_list)

    sh = actions.add_parser("show", help="render one saved report", description="Render one saved report.")
    sh.add_argument("id", type=_entry_id, metavar="ID", help="entry id (see 'history list')")
    _common(sh)
    sh.set_defaults(func=run_show)

    d = actions.add_parser("diff", help="compare the figures of two saved reports",
                           description="Compare two saved reports figure by figure: A, B and (B - A) / |A|.")
    d.add_argument("a", type=_entry_id, metavar="ID1", help="entry id A")
    d.add_argument("b", type=_entry_id, metavar="ID2", help="entry id B")
    d.add_argument("--all", action="store_true", help="also list figures that did not change")
    _common(d)
    d.set_defaults(func=run_diff)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", default=None,
                   help=f"history database (default: ${ENV_VAR} or {_default_hint()})")
    add_output_options(p)


def _default_hint() -> str:
    try:
        return str(default_path())
    except RuntimeError:  # no home folder
        return "$XDG_DATA_HOME/mlfootprint/history.sqlite"


def _print_help(p: argparse.ArgumentParser) -> None:
    p.print_help()
    return None


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return n


def _entry_id(text: str) -> int:
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"an entry id is a whole number (see 'mlfootprint history list'), got {text!r}") from None


# -- verbs -------------------------------------------------------------------------
def run_add(args: argparse.Namespace) -> None:
    # Read and check every file before adding any: all or nothing for bad input.
    reports = [(path, _load(path)) for path in args.reports]
    hist = History(args.db)
    added = []
    for path, report in reports:
        entry_id = hist.add(report, label=args.label)
        added.append({"file": path, "id": entry_id, "verb": report.verb,
                      "model": (report.get("model") or {}).get("name")})
    fmt = output_format(args)
    if fmt == "json":
        text = json.dumps({"schema": HISTORY_SCHEMA, "db": str(hist.path), "added": added}, indent=2)
    else:
        lines = []
        for item in added:
            what = f"{item['verb']} report" + (f" of {item['model']}" if item["model"] else "")
            lines.append(f"added {item['file']} ({what}) as entry {item['id']} to {hist.path}")
        text = "\n".join(("- " + line if fmt == "md" else line) for line in lines)
        text = ("# mlfootprint history add\n\n" if fmt == "md" else "mlfootprint history add\n") + text
    write_output(args, text)
    return None


def _load(path: str) -> Report:
    report = Report.load(path)  # one-line UserError for a non-report or a newer schema
    if not report.tool_version:
        # Keep the version of mlfootprint that wrote the file, not ours.
        try:
            tool = json.loads(Path(path).read_text(encoding="utf-8")).get("tool")
        except (OSError, ValueError, AttributeError):
            tool = None
        if isinstance(tool, str) and tool.startswith("mlfootprint "):
            report.tool_version = tool[len("mlfootprint "):]
    return report


def run_list(args: argparse.Namespace) -> None:
    hist = History(args.db)
    entries = hist.list(model=args.model, verb=args.verb, since=args.since, label=args.label, limit=args.limit)
    fmt = output_format(args)
    if fmt == "json":
        text = json.dumps({"schema": HISTORY_SCHEMA, "db": str(hist.path), "entries": [e.to_dict() for e in entries]}, indent=2)
    else:
        headers, rows = _list_rows(entries)
        if fmt == "md":
            text = f"# mlfootprint history: {_md(str(hist.path))}\n\n" + (
                _md_table(headers, rows) if rows else "No entries.")
        else:
            if rows:
                text = _rich_table(f"mlfootprint history: {hist.path}", headers, rows)
            else:
                text = f"mlfootprint history: no entries in {hist.path}" + (" match" if _filtered(args) else "") + "."
    write_output(args, text)
    return None


def run_show(args: argparse.Namespace) -> Report:
    return History(args.db).get(args.id)


def run_diff(args: argparse.Namespace) -> None:
    hist = History(args.db)
    ea, eb = hist.entry(args.a), hist.entry(args.b)
    rows = hist.diff(args.a, args.b, changed_only=not args.all, include_text=True)
    fmt = output_format(args)
    if fmt == "json":
        text = json.dumps({"schema": HISTORY_SCHEMA, "db": str(hist.path), "a": ea.to_dict(), "b": eb.to_dict(),
                           "rows": [r.to_dict() for r in rows]}, indent=2)
        write_output(args, text)
        return None
    headers = ["figure", f"A (#{ea.id})", f"B (#{eb.id})", "change"]
    body = [[r.path, _value(r, r.a), _value(r, r.b), _change(r)] for r in rows]
    intro = [f"A: {_describe(ea)}", f"B: {_describe(eb)}"]
    if not rows:
        intro.append("No figures differ." if not args.all else "No figures to compare.")
    if fmt == "md":
        text = f"# mlfootprint history diff #{ea.id} → #{eb.id}\n\n" + "\n".join(f"- {_md(line)}" for line in intro)
        if body:
            text += "\n\n" + _md_table(headers, body)
    else:
        text = "\n".join([f"mlfootprint history diff #{ea.id} → #{eb.id}"] + intro)
        if body:
            text += "\n" + _rich_table("Figures" + ("" if args.all else " that differ"), headers, body)
    write_output(args, text)
    return None


# -- formatting ----------------------------------------------------------------------
def _filtered(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) is not None for k in ("model", "verb", "label", "since"))


def _list_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    shown = [c for c in _LIST_COLUMNS if any(getattr(e, c[0]) is not None for e in entries)]
    headers = ["id", "added (UTC)", "verb", "model", "label"] + [h for _, h, _ in shown]
    rows = []
    for e in entries:
        row = [str(e.id), e.created_at.replace("T", " ").rstrip("Z"), e.verb, e.model or "—", e.label or ""]
        for attr, _, fmt in shown:
            v = getattr(e, attr)
            row.append("—" if v is None else fmt(v))
        rows.append(row)
    return headers, rows


def _describe(e: Entry) -> str:
    parts = [f"#{e.id}", e.verb]
    if e.model:
        parts.append(e.model)
    if e.label:
        parts.append(f"[{e.label}]")
    parts.append(f"added {e.created_at}")
    return " ".join(parts)


def _leaf_key(path: str) -> tuple[str, str]:
    section = path.split(".", 1)[0].split("[", 1)[0]
    key = path.rsplit(".", 1)[-1]
    if key.endswith("]"):
        key = key.rsplit("[", 1)[-1].rstrip("]")
    return key, section


def _value(row: DiffRow, v: Any) -> str:
    if v is None:
        return "—"
    key, section = _leaf_key(row.path)
    return units.by_key(key, v, section)


def _change(row: DiffRow) -> str:
    if row.a is None and row.b is not None:
        return "only in B"
    if row.b is None and row.a is not None:
        return "only in A"
    if row.rel_change is not None:
        return "same" if row.rel_change == 0 else f"{row.rel_change:+.2%}"
    return "changed" if row.changed else "same"


def _rich_table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=160, force_terminal=False, color_system=None, highlight=False)
    table = Table(title=title, title_justify="left")
    for h in headers:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    return buf.getvalue()


def _md(text: str) -> str:
    from ..report.markdown import md_escape

    return md_escape(text)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["register", "run_add", "run_list", "run_show", "run_diff"]
