"""`mlfootprint history`: save reports, list them, show one, diff two."""
from __future__ import annotations

import argparse

from ..report.history import ENV_VAR, default_path
from ..verbs.history import history_add, history_diff, history_list, history_show
from .output import add_output_options


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
    a.set_defaults(func=lambda args: history_add(args.reports, label=args.label, db=args.db))

    ls = actions.add_parser("list", help="list saved reports, newest first",
                            description="List saved reports, newest first.")
    ls.add_argument("--model", default=None, help="only this model (case-insensitive; * is a wildcard)")
    ls.add_argument("--verb", default=None, help="only reports made by this verb (count, memory, predict, ...)")
    ls.add_argument("--label", default=None, help="only entries with this label")
    ls.add_argument("--since", default=None, metavar="DATE", help="only entries added at or after DATE (ISO; UTC unless it says)")
    ls.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="at most N entries")
    _common(ls)
    ls.set_defaults(func=lambda args: history_list(
        model=args.model, verb=args.verb, label=args.label, since=args.since, limit=args.limit, db=args.db))

    sh = actions.add_parser("show", help="render one saved report", description="Render one saved report.")
    sh.add_argument("id", type=_entry_id, metavar="ID", help="entry id (see 'history list')")
    _common(sh)
    sh.set_defaults(func=lambda args: history_show(args.id, db=args.db))

    d = actions.add_parser("diff", help="compare the figures of two saved reports",
                           description="Compare two saved reports figure by figure: A, B and (B - A) / |A|.")
    d.add_argument("a", type=_entry_id, metavar="ID1", help="entry id A")
    d.add_argument("b", type=_entry_id, metavar="ID2", help="entry id B")
    d.add_argument("--all", action="store_true",
                   help="also list figures that did not change, and the per-module and per-operator FLOPs tables")
    _common(d)
    d.set_defaults(func=lambda args: history_diff(args.a, args.b, all_figures=args.all, db=args.db))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", default=None,
                   help=f"history database (default: ${ENV_VAR} or {_default_hint()})")
    # history's own renderers are the table and Markdown ones; the generic CSV and LaTeX forms would print each
    # entry as one Python dict
    add_output_options(p, formats=("table", "json", "md", "html"))


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
    if not 1 <= n < 2**63:
        raise argparse.ArgumentTypeError(f"expected a positive whole number (below 2^63), got {text!r}")
    return n


def _entry_id(text: str) -> int:
    try:
        n = int(text.lstrip("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"an entry id is a whole number (see 'mlfootprint history list'), got {text!r}") from None
    if not 1 <= n < 2**63:  # SQLite's integer ids: 1 .. 2^63 - 1
        raise argparse.ArgumentTypeError(f"an entry id is a whole number from 1 (see 'mlfootprint history list'), got {text!r}")
    return n
