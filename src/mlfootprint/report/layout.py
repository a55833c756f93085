"""Turn a Report into renderer-neutral blocks: titled key/value lists and tables.

Text, Markdown, LaTeX and HTML renderers all read these blocks, so what a
report shows is decided once, here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import units
from .schema import Report

# What a footprint figure covers, as a note beside it (footprint.scope; a training run needs no note)
SCOPE_NOTES = {"one step": "per step", "one generate call": "per generate call"}

SECTION_TITLES = {
    "model": "Model",
    "workload": "Workload",
    "params": "Parameters",
    "flops": "FLOPs",
    "memory": "Memory",
    "time": "Time",
    "footprint": "Footprint",
    "measured": "Measured",
}

# Keys rendered as their own tables, not as key/value rows.
_TABLE_KEYS = {"by_module", "by_op", "unsupported_ops", "by_dtype", "by_rank", "series", "components", "inputs", "steps",
               "layouts"}


@dataclass
class Block:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""
    indent: list[int] = field(default_factory=list)  # per row, for trees


def _prov(report: Report, path: str) -> str:
    return report.provenance.get(path, "")


def key_value_block(report: Report, section: str, data: dict[str, Any], title: str | None = None) -> Block:
    rows: list[list[str]] = []
    for key, value in data.items():
        if key in _TABLE_KEYS or isinstance(value, dict):
            continue
        rows.append([key, units.by_key(key, value, section), _prov(report, f"{section}.{key}")])
    return Block(title or SECTION_TITLES.get(section, section.title()), ["figure", "value", "provenance"], rows)


def module_rows(tree: dict[str, Any], depth: int, macs: bool = False
                ) -> tuple[list[str], list[list[str]], list[int]]:
    """The per-module FLOPs tree cut at ``depth`` levels below the root: (headers, rows, indent levels).

    Consecutive siblings of the same type with the same parameters and FLOPs (the repeated blocks of a
    transformer) collapse into one row, ``h.0–11 ×12``, holding their sum."""
    rows: list[list[str]] = []
    indent: list[int] = []
    unit = "MAC" if macs else "FLOP"
    scale = 0.5 if macs else 1.0

    def row(name: str, node: dict[str, Any], level: int, times: int = 1) -> None:
        fwd, bwd, other = (node.get(k, 0) * times for k in ("forward", "backward", "other"))
        params = node.get("params", 0) * times
        rows.append([("  " * level) + name, node.get("type", ""), units.params(params) if params else "—",
                     units.si(fwd * scale, unit) if fwd else "—", units.si(bwd * scale, unit) if bwd else "—",
                     units.si(other, "FLOP") if other else "—"])
        indent.append(level)

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return all(a.get(k) == b.get(k) for k in ("type", "params", "forward", "backward", "other"))

    def walk(node: dict[str, Any], level: int) -> None:
        row(node.get("name", ""), node, level)
        if level >= depth:
            return
        children = node.get("children", [])
        i = 0
        while i < len(children):
            j = i + 1
            while j < len(children) and same(children[i], children[j]):
                j += 1
            if j - i > 1:
                first, last = children[i].get("name", ""), children[j - 1].get("name", "")
                prefix = node.get("path", "")
                label = f"{first}–{last} ×{j - i}"
                row(label if not prefix else label, children[i], level + 1, times=j - i)
            else:
                walk(children[i], level + 1)
            i = j

    walk(tree, 0)
    heads = ["module", "type", "params", f"forward ({unit}s)", f"backward ({unit}s)", "other (FLOPs)"]
    return heads, rows, indent


def module_tree_block(tree: dict[str, Any], depth: int, macs: bool = False) -> Block:
    """The per-module FLOPs tree, cut at ``depth`` levels below the root, repeated blocks collapsed."""
    heads, rows, indent = module_rows(tree, depth, macs)
    return Block("FLOPs by module", heads, rows, indent=indent)


def op_block(by_op: dict[str, Any], macs: bool = False) -> Block:
    rows = []
    for op, rec in sorted(by_op.items(), key=lambda kv: -(kv[1].get("flops", 0))):
        flops = rec.get("flops", 0)
        rows.append([op, rec.get("class", ""), str(rec.get("calls", 0)),
                     units.si(flops / 2 if macs and rec.get("class") == "model" else flops, "MAC" if macs and rec.get("class") == "model" else "FLOP")])
    return Block("FLOPs by operator", ["op", "class", "calls", "FLOPs"], rows)


def unsupported_block(unsupported: dict[str, int]) -> Block:
    rows = [[op, str(n)] for op, n in sorted(unsupported.items())]
    return Block("Operators without a FLOP formula (counted as unknown, not zero)", ["op", "calls"], rows)


# Workload fields always shown in the compact view, besides those the user gave.
_WORKLOAD_CORE = ("mode", "batch", "seq", "precision", "optimizer", "hardware", "devices")


def card_block(report: Report) -> Block | None:
    """The efficiency card: the headline figures, each with its provenance."""
    items = summary(report)
    if not items:
        return None
    return Block("Efficiency card", ["figure", "value", "provenance", "note"],
                 [[i.label, i.text, i.provenance, i.note] for i in items])


def compact_workload(data: dict[str, Any]) -> dict[str, Any]:
    given = set(data.get("defaults") and [k for k in data if k not in data["defaults"]] or [])
    return {k: v for k, v in data.items()
            if k != "defaults" and (k in given or (k in _WORKLOAD_CORE and v is not None))}


def blocks(report: Report, depth: int = 2, show_ops: bool = False, macs: bool = False,
           details: bool = True) -> list[Block]:
    """Renderer-neutral blocks. `details=False` (analyze's default) shows the card and each
    section's own figures, without the nested breakdown tables and workload defaults."""
    out: list[Block] = []
    if report.verb == "analyze":
        card = card_block(report)
        if card is not None:
            out.append(card)
    for section, data in report.sections.items():
        if not isinstance(data, dict):
            continue
        if section == "compare":
            out.extend(compare_blocks(data))
            continue
        if section == "workload":
            out.append(key_value_block(report, section, data if details else compact_workload(data)))
            continue
        out.append(key_value_block(report, section, data))
        if section == "plan" and data.get("layouts"):
            heads, ranked = ranked_layouts(report)
            out.append(Block("Layouts that fit, fastest first", heads, ranked))
        if not details:
            if section == "flops" and data.get("by_module"):
                out.append(module_tree_block(data["by_module"], depth, macs))
            if section == "flops" and data.get("unsupported_ops"):
                out.append(unsupported_block(data["unsupported_ops"]))
            continue
        if section == "params" and data.get("by_dtype"):
            out.append(Block("Parameters by dtype", ["dtype", "count"], [[k, units.count(v)] for k, v in data["by_dtype"].items()]))
        if section == "flops":
            if data.get("by_module"):
                out.append(module_tree_block(data["by_module"], depth, macs))
            if show_ops and data.get("by_op"):
                out.append(op_block(data["by_op"], macs))
            if data.get("unsupported_ops"):
                out.append(unsupported_block(data["unsupported_ops"]))
        for key, value in data.items():
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) \
                    and key not in ("by_module", "by_op"):
                cols = list(next(iter(value.values())).keys())
                out.append(Block(f"{SECTION_TITLES.get(section, section)}: {key}", [key.rstrip("s") or key] + cols,
                                 [[name] + [units.by_key(c, row.get(c), section) for c in cols] for name, row in value.items()]))
                continue
            if isinstance(value, dict) and key not in ("by_module", "by_op", "unsupported_ops", "by_dtype") and value:
                if all(not isinstance(v, (dict, list)) for v in value.values()):
                    out.append(Block(f"{SECTION_TITLES.get(section, section)}: {key}", ["figure", "value"],
                                     [[k, units.by_key(k, v, section)] for k, v in value.items()]))
    pairs = predicted_vs_measured(report)
    if pairs:
        out.append(pred_measured_block(pairs))
    if report.assumptions:
        out.append(Block("Assumptions", ["#", "assumption"], [[str(i + 1), a] for i, a in enumerate(report.assumptions)]))
    return out


def plan_counts_tokens(report: Report) -> bool:
    """Whether a plan's throughput is in tokens (a sequence model; its workload states the sequence length) or in
    samples (plan's ``tokens_per_s`` is then samples per second, as the trace counts them)."""
    return bool((report.get("workload") or {}).get("seq"))


def ranked_layouts(report: Report) -> tuple[list[str], list[list[str]]]:
    """plan: one row per layout, best first."""
    p = report.get("plan") or {}
    rows = []
    layouts = p.get("layouts") or []
    # the working weights, when the rows differ in them (AMP's fp32 below ZeRO-3 on one device's model, 16-bit else)
    weights = len({row.get("weights") for row in layouts}) > 1
    for row in layouts:
        vp = row.get("vp", 1)
        pipe = f"{row['pp']}" + (f"×{vp}" if vp > 1 else "") + (" zb" if row.get("schedule") == "zero-bubble" else "")
        rows.append([str(row["rank"]), str(row["tp"]), pipe, str(row.get("cp", 1)), str(row["dp"]),
                     f"{row['zero']}{'++' if row['zeropp'] else ''}", str(row["micro_batch"]),
                     {"selective": "sel"}.get(row["recompute"], row["recompute"]),
                     units.gb(row["peak_bytes"]), units.seconds(row["step_s"]), f"{100 * row['mfu']:.1f}%",
                     units.si(row["tokens_per_s"], digits=3), row.get("why") or row["bottleneck"]])
        if weights:
            rows[-1].insert(8, str(row.get("weights") or "—"))
    heads = ["#", "tp", "pp×vp", "cp", "dp", "zero", "mb", "recomp", "mem/dev", "step", "MFU",
             "tok/s" if plan_counts_tokens(report) else "samples/s", "vs #1 (#1: its bottleneck)"]
    if weights:
        heads.insert(8, "weights")
    return heads, rows



# -- shared views: every figure by path, the summary card, predicted vs measured, comparisons ---------

# Subtrees that are tables of their own, not figures: left out of the flat figure list.
_NOT_FIGURES = {("flops", "by_module"), ("flops", "by_op")}


def flat_figures(report: Report, numeric_only: bool = True) -> dict[str, Any]:
    """Every scalar figure by dotted path ('flops.model', 'footprint.inputs.pue.value').

    Lists and the per-module / per-operator tables are left out; booleans and (unless
    ``numeric_only``) strings are scalars too, but ``numeric_only`` keeps ints and floats.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, section: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            path = f"{prefix}.{key}"
            if prefix == section and (section, key) in _NOT_FIGURES:
                continue
            if isinstance(value, dict):
                walk(path, section, value)
            elif isinstance(value, bool):
                if not numeric_only:
                    out[path] = value
            elif isinstance(value, (int, float)):
                out[path] = value
            elif not numeric_only and isinstance(value, str):
                out[path] = value

    for section, data in report.sections.items():
        if isinstance(data, dict) and section != "compare":
            walk(section, section, data)
    return out


def provenance_of(report: Report, path: str) -> str:
    """The provenance of a figure, or of the nearest enclosing path that has one."""
    while path:
        if path in report.provenance:
            return report.provenance[path]
        if "." not in path:
            return ""
        path = path.rsplit(".", 1)[0]
    return ""


def lookup(report: Report, path: str) -> Any:
    section, _, rest = path.partition(".")
    node: Any = report.sections.get(section)
    for part in rest.split(".") if rest else []:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def format_figure(path: str, value: Any) -> str:
    section = path.split(".", 1)[0]
    return units.by_key(path.rsplit(".", 1)[-1], value, section)


@dataclass
class SummaryItem:
    label: str
    path: str
    value: Any
    text: str
    provenance: str
    note: str = ""


# (label, candidate paths: the first present is shown, the others go in the note)
_SUMMARY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Parameters", ("params.total",)),
    ("Active parameters", ("params.active",)),
    ("Model FLOPs / step", ("flops.model",)),
    ("FLOPs / token", ("flops.per_token",)),
    ("Peak memory", ("measured.peak_bytes", "memory.peak_bytes")),
    ("Step time", ("measured.step_s", "time.step_s")),
    ("Throughput", ("measured.tokens_per_s", "time.tokens_per_s")),
    ("MFU", ("measured.mfu", "time.mfu")),
    ("Time to train", ("time.train_s",)),
    ("Energy", ("footprint.energy_j", "measured.energy_j")),
    ("CO2e", ("footprint.co2e_g",)),
    ("Total CO2e", ("footprint.total_co2e_g",)),
    ("Water", ("footprint.water_l",)),
    ("Cost", ("footprint.cost_usd",)),
)


def summary(report: Report) -> list[SummaryItem]:
    """The headline figures of a report (the 'efficiency card'), those present only."""
    items: list[SummaryItem] = []
    for label, paths in _SUMMARY:
        present = [(p, lookup(report, p)) for p in paths]
        present = [(p, v) for p, v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not present:
            continue
        path, value = present[0]
        if path == "params.active" and value == lookup(report, "params.total"):
            continue  # dense model: active = total, not worth a card
        if path == "footprint.total_co2e_g" and value == lookup(report, "footprint.co2e_g"):
            continue
        notes = [f"{'measured' if p.startswith('measured.') else 'predicted'}: {format_figure(p, v)}"
                 for p, v in present[1:]]
        if path.endswith("peak_bytes"):
            cap = lookup(report, "memory.device_bytes")
            fits = lookup(report, "memory.fits")
            if isinstance(cap, (int, float)) and cap:
                notes.append(f"of {units.gb(cap)} per device")
            if isinstance(fits, bool):
                notes.append("fits" if fits else "does not fit")
        if path == "flops.model" and isinstance(lookup(report, "flops.total"), (int, float)):
            notes.append(f"all FLOPs: {format_figure('flops.total', lookup(report, 'flops.total'))}")
        per = SCOPE_NOTES.get(lookup(report, "footprint.scope"))
        if path.startswith("footprint.") and per:
            notes.append(per)
        text = format_figure(path, value)
        if path.startswith("params.") and abs(value) >= 1000:
            text = units.params(value)  # the exact count goes in the note
            notes.insert(0, f"{int(value):,}")
        if path.endswith("_j"):
            text = units.energy(value)  # a card reads best in (k/M/G)Wh; joules in the note
            notes.insert(0, units.si(value, "J"))
        prov = provenance_of(report, path) or ("measured" if path.startswith("measured.") else "")
        items.append(SummaryItem(label, path, value, text, prov, "; ".join(notes)))
    return items


# Sections a measured figure is compared against, in order, by the same key.
_PREDICTED_SECTIONS = ("time", "memory", "footprint", "flops")


@dataclass
class Pair:
    key: str
    predicted_path: str
    predicted: float
    measured: float

    @property
    def ratio(self) -> float | None:
        return self.measured / self.predicted if self.predicted else None


def predicted_vs_measured(report: Report) -> list[Pair]:
    """Figures that are both in the `measured` section and, by the same key, in a predicted section."""
    measured = report.get("measured") or {}
    pairs: list[Pair] = []
    for key, value in measured.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        for section in _PREDICTED_SECTIONS:
            pred = (report.get(section) or {}).get(key)
            if isinstance(pred, (int, float)) and not isinstance(pred, bool):
                pairs.append(Pair(key, f"{section}.{key}", pred, value))
                break
    return pairs


def pred_measured_block(pairs: list[Pair]) -> Block:
    rows = []
    for p in pairs:
        ratio = p.ratio
        rows.append([p.key, format_figure(p.predicted_path, p.predicted), format_figure(f"measured.{p.key}", p.measured),
                     f"{ratio:.3g}" if ratio is not None else "n/a"])
    return Block("Predicted vs measured", ["figure", "predicted", "measured", "measured / predicted"], rows)


def compare_blocks(data: dict[str, Any]) -> list[Block]:
    """The side-by-side table and the Pareto front of a `compare` section."""
    reports = data.get("reports") or []
    labels = [str(r.get("label", f"#{i + 1}")) for i, r in enumerate(reports)]
    pareto = data.get("pareto") or {}
    optimal = set(pareto.get("optimal_index") or [])
    heads = ["figure", "better"] + [lab + (" *" if i in optimal else "") for i, lab in enumerate(labels)]
    rows = []
    for fig in data.get("figures") or []:
        path = fig.get("path", "")
        values = fig.get("values") or []
        cells = [compare_cell(path, v) for v in values]
        rows.append([path, fig.get("better", ""), *cells])
    out = [Block("Comparison", heads, rows,
                 note="* Pareto-optimal on the two figures below" if optimal else "")]
    if pareto.get("x") and pareto.get("y"):
        x, y = pareto["x"], pareto["y"]
        def at(key: str, i: int) -> Any:
            values = pareto.get(key) or []
            return values[i] if i < len(values) else None

        prow = [[lab, compare_cell(x, at("x_values", i)), compare_cell(y, at("y_values", i)), at("status", i) or ""]
                for i, lab in enumerate(labels)]
        title = f"Pareto front: {y} ({pareto.get('y_better', '')} is better) vs {x} ({pareto.get('x_better', '')} is better)"
        out.append(Block(title, ["report", x, y, "Pareto"], prow))
    files = [[lab, str(r.get("file", "")), str(r.get("model", "") or ""), str(r.get("verb", ""))]
             for lab, r in zip(labels, reports)]
    out.append(Block("Reports", ["label", "file", "model", "verb"], files))
    return out


def compare_cell(path: str, value: Any) -> str:
    if value is None:
        return "—"
    if path.startswith("metrics."):
        return f"{value:g}" if isinstance(value, (int, float)) else str(value)
    return format_figure(path, value)
