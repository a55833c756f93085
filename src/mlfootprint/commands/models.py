"""`mlfootprint models list|show NAME`: the bundled model catalog."""
from __future__ import annotations

import argparse

from .common import add_cache_option
from .output import add_output_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list and show the model catalog")
    msub = p.add_subparsers(dest="models_cmd", metavar="{list,show}")
    pl = msub.add_parser("list", help="every catalog model with its architecture facts")
    add_output_options(pl)
    pl.set_defaults(func=_list)
    ps = msub.add_parser("show", help="one model: source, architecture and counted parameters")
    ps.add_argument("name", metavar="NAME")
    add_cache_option(ps)
    add_output_options(ps)
    ps.set_defaults(func=_show)
    add_output_options(p)
    p.set_defaults(func=_list)


# The verbs (and torch) load when a command runs, not for --help.
def _list(args: argparse.Namespace):
    from ..verbs.catalogs import models_list

    return models_list()


def _show(args: argparse.Namespace):
    from ..verbs.catalogs import models_show

    return models_show(args.name, cache=args.cache)
