"""`mlfootprint models list|show NAME`: the bundled model catalog."""
from __future__ import annotations

import argparse

from ..verbs.catalogs import models_list, models_show
from .output import add_output_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list and show the model catalog")
    msub = p.add_subparsers(dest="models_cmd", metavar="{list,show}")
    pl = msub.add_parser("list", help="every catalog model with its architecture facts")
    add_output_options(pl)
    pl.set_defaults(func=lambda args: models_list())
    ps = msub.add_parser("show", help="one model: source, architecture and counted parameters")
    ps.add_argument("name", metavar="NAME")
    add_output_options(ps)
    ps.set_defaults(func=lambda args: models_show(args.name))
    add_output_options(p)
    p.set_defaults(func=lambda args: models_list())
