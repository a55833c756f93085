"""`mlfootprint models list|show NAME`: the bundled model catalog."""
from __future__ import annotations

import argparse

from .output import add_output_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list and show the model catalog")
    msub = p.add_subparsers(dest="models_cmd", metavar="{list,show}")
    pl = msub.add_parser("list", help="every catalog model with its architecture facts")
    add_output_options(pl)
    pl.set_defaults(func=run_list)
    ps = msub.add_parser("show", help="one model: source, architecture and counted parameters")
    ps.add_argument("name", metavar="NAME")
    add_output_options(ps)
    ps.set_defaults(func=run_show)
    p.set_defaults(func=run_list, format=None, output=None)


def run_list(args: argparse.Namespace):
    from ..models import catalog
    from ..models.facts import facts_from_config
    from ..report.schema import Report

    rows = {}
    for name in catalog.names():
        entry = catalog.get(name)
        facts = facts_from_config(entry["config"])
        rows[name] = {
            "family": entry.get("family", facts.get("model_type")),
            "task": entry.get("task"),
            "layers": facts.get("layers"), "hidden": facts.get("hidden"), "heads": facts.get("heads"),
            "kv_heads": facts.get("kv_heads"), "vocab": facts.get("vocab"), "context": facts.get("context"),
            "experts": facts.get("experts"), "hub_id": entry.get("hub_id"),
        }
    rep = Report(verb="models")
    rep.set_section("catalog", {"models": rows, "count": len(rows)})
    return rep


def run_show(args: argparse.Namespace):
    from ..api import count
    from ..models import catalog
    from ..workload import Workload

    catalog.get(args.name)  # unknown name: one-line error with suggestions
    rep = count(args.name, Workload(batch=1, seq=8), ops=False)
    rep.verb = "models show"
    rep.sections.pop("flops", None)
    rep.sections.pop("workload", None)
    rep.provenance = {k: v for k, v in rep.provenance.items() if k.startswith(("params", "model"))}
    entry = catalog.get(args.name)
    if entry.get("published_params"):
        rep.sections["params"]["published"] = entry["published_params"].get("value")
        rep.mark("params.published", "published")
    if entry.get("notes"):
        rep.assume(entry["notes"])
    return rep
