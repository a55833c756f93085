"""Terminal and Markdown forms of the catalogs (``models list``, ``hardware list``, ``hardware show``,
``hardware calibrate``), at the terminal's width."""
from __future__ import annotations

import argparse
from typing import Any

from rich import box
from rich.table import Table

from .markdown import md_escape, md_link, safe_url
from .render import renderer, text_width
from .schema import Report
from .text import console_for

_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
_SHOWN_PEAKS = ("bf16", "fp16", "fp8")
_LIST_NOTE = ("Peak FLOP/s are dense (no 2:4 sparsity). Memory in GiB (2^30 bytes); TB/s = 10^12 bytes/s. "
              "Every figure's source and date: mlfootprint hardware show ID")
_PEAK = "peak_flop_per_s"


def _devices(report: Report) -> list[dict[str, Any]]:
    return list(((report.get("catalog") or {}).get("devices") or {}).values())


# ------------------------------------------------------------------------------------------ models list

_MODEL_COLUMNS = (("model", None), ("task", "task"), ("layers", "layers"), ("hidden", "hidden"), ("heads", "heads"),
                  ("kv", "kv_heads"), ("vocab", "vocab"), ("context", "context"), ("experts", "experts"))


def _model_rows(report: Report) -> list[list[str]]:
    models = (report.get("catalog") or {}).get("models") or {}
    rows = []
    for name, m in models.items():
        cells = [name]
        for _, key in _MODEL_COLUMNS[1:]:
            v = m.get(key)
            cells.append("—" if v is None else f"{v:,}" if isinstance(v, int) else str(v))
        rows.append(cells)
    return rows


_MODELS_NOTE = "kv: key/value heads. Family, sources, hub ids and counted parameters: mlfootprint models show NAME"


@renderer("table", verb="models")
def models_table(report: Report, args: argparse.Namespace | None = None) -> str:
    rows = _model_rows(report)
    widths = [max([len(r[i]) for r in rows] + [len(h)]) for i, (h, _) in enumerate(_MODEL_COLUMNS)]
    # the columns that fit the terminal, from the left; the others are named in the caption (they were cut silently)
    shown = len(widths)
    while shown > 2 and sum(widths[:shown]) + 2 * (shown - 1) > text_width(args):
        shown -= 1
    note = _MODELS_NOTE
    if shown < len(widths):
        left_out = ", ".join(h for h, _ in _MODEL_COLUMNS[shown:])
        note += f". Not shown at this width: {left_out} (a wider terminal, --width or --format md shows them)"
    table = Table(title="mlfootprint models", caption=note, caption_justify="left", box=None,
                  title_justify="left", pad_edge=False)
    for i, (h, _) in enumerate(_MODEL_COLUMNS[:shown]):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=True, min_width=widths[i])
    for row in rows:
        table.add_row(*row[:shown])
    return _print(table, args)


@renderer("md", verb="models")
def models_markdown(report: Report, args: argparse.Namespace | None = None) -> str:
    heads = [h for h, _ in _MODEL_COLUMNS]
    return "# mlfootprint models\n\n" + _md_table(heads, _model_rows(report)) + "\n\n" + _MODELS_NOTE + "\n"


# ------------------------------------------------------------------------------------------ hardware list


def _list_header() -> list[str]:
    return ["ID", "Name", "Memory\nGiB", *(f"{d}\nTFLOP/s" for d in _SHOWN_PEAKS), "Mem\nTB/s", "TDP\nW", "$/h"]


def _list_row(d: dict[str, Any]) -> list[str]:
    peaks = d.get(_PEAK) or {}
    price = d.get("price_usd_per_hour")
    return [d["id"], d["name"], _num(d["memory_bytes"] / 2**30),
            *[_num(peaks[t] / 1e12) if t in peaks else "—" for t in _SHOWN_PEAKS],
            f"{d['memory_bandwidth_bytes_per_s'] / 1e12:.3g}",
            _num(d["tdp_w"]) if d.get("tdp_w") is not None else "—",
            f"{price:.2f}" if price is not None else "—"]


@renderer("table", verb="hardware list")
def list_table(report: Report, args: argparse.Namespace | None = None) -> str:
    table = Table(title="mlfootprint hardware list", caption=_LIST_NOTE, caption_justify="left", box=box.SIMPLE_HEAD,
                  title_justify="left", pad_edge=False, show_edge=False)
    rows = [_list_row(d) for d in _devices(report)]
    for i, h in enumerate(_list_header()):
        # ids and figures are never cut; the long device names fold
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i != 1, overflow="fold",
                         min_width=None if i == 1 else max((len(r[i]) for r in rows), default=0))
    for row in rows:
        table.add_row(*row)
    return _print(table, args)


@renderer("md", verb="hardware list")
def list_markdown(report: Report, args: argparse.Namespace | None = None) -> str:
    rows = [_list_row(d) for d in _devices(report)]
    return "# mlfootprint hardware list\n\n" + _md_table(_list_header(), rows) + "\n\n" + _LIST_NOTE + "\n"


# ------------------------------------------------------------------------------------------ show, calibrate


def _show_rows(d: dict[str, Any]) -> list[list[Any]]:
    sources = d.get("sources") or {}
    rows: list[list[Any]] = []

    def add(label: str, path: str, value: str) -> None:
        src = sources.get(path, {})
        rows.append([label, value, src.get("provenance", "?"), src or {"source": "?"}, src.get("date", "—")])

    peaks = d.get(_PEAK) or {}
    for t in _DTYPES:
        if t in peaks:
            add(f"peak {t} (dense)", f"{_PEAK}.{t}", _rate(peaks[t], "OP/s" if t == "int8" else "FLOP/s"))
    add("memory", "memory_bytes", f"{_num(d['memory_bytes'] / 2**30)} GiB ({_num(d['memory_bytes'] / 1e9)} GB)")
    add("memory bandwidth", "memory_bandwidth_bytes_per_s", _rate(d["memory_bandwidth_bytes_per_s"], "B/s"))
    if d.get("intra_node_bandwidth_bytes_per_s") is not None:
        add("intra-node bandwidth (per direction)", "intra_node_bandwidth_bytes_per_s",
            _rate(d["intra_node_bandwidth_bytes_per_s"], "B/s"))
    if d.get("inter_node_bandwidth_bytes_per_s") is not None:
        v = d["inter_node_bandwidth_bytes_per_s"]
        add("inter-node bandwidth (per direction)", "inter_node_bandwidth_bytes_per_s",
            f"{_rate(v, 'B/s')} ({_num(v * 8 / 1e9)} Gb/s)")
    if d.get("devices_per_node") is not None:
        add("devices per node", "devices_per_node", str(d["devices_per_node"]))
    if d.get("tdp_w") is not None:
        add("TDP", "tdp_w", f"{_num(d['tdp_w'])} W")
    if d.get("price_usd_per_hour") is not None:
        add("price per device-hour", "price_usd_per_hour", _usd(d["price_usd_per_hour"]))
    if d.get("per_op_overhead_s") is not None:
        add("per-op overhead", "per_op_overhead_s", f"{_num(d['per_op_overhead_s'] * 1e6)} µs")
    return rows


def _intro(d: dict[str, Any]) -> list[str]:
    return [f"vendor: {d['vendor']}", f"kind: {d['kind']}", f"origin: {d.get('origin', '')}"]


@renderer("table", verb="hardware show")
@renderer("table", verb="hardware calibrate")
def show_table(report: Report, args: argparse.Namespace | None = None) -> str:
    out = []
    for d in _devices(report):
        caption = "; ".join(_intro(d)) + ". Peak FLOP/s are dense (no 2:4 sparsity)."
        table = Table(title=f"mlfootprint {report.verb}: {d['name']} ({d['id']})", caption=caption,
                      caption_justify="left", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                      pad_edge=False)
        rows = _show_rows(d)
        for i, h in enumerate(["Field", "Value", "Provenance", "Source", "Date"]):
            # the source folds; the field names fold only on a narrow terminal, never below 16 columns
            table.add_column(h, justify="right" if i == 1 else "left", no_wrap=i in (1, 2, 4), overflow="fold",
                             min_width=16 if i == 0 else 24 if i == 3 else None)
        for f, v, p, s, date in rows:
            table.add_row(f, v, p, "\n".join(x for x in (s["source"], s.get("note"), s.get("url")) if x), date)
        out.append(_print(table, args))
    return "".join(out)


@renderer("md", verb="hardware show")
@renderer("md", verb="hardware calibrate")
def show_markdown(report: Report, args: argparse.Namespace | None = None) -> str:
    out = []
    for d in _devices(report):
        rows = [[f, v, p, _md_source(s), date] for f, v, p, s, date in _show_rows(d)]
        text = f"## {md_escape(d['name'])} (`{md_escape(d['id'])}`)\n\n"
        text += "\n".join(f"- {md_escape(line)}" for line in _intro(d)) + "\n\n"
        text += _md_table(["Field", "Value", "Provenance", "Source", "Date"], rows, markdown_columns=(3,))
        out.append(text + "\n\nPeak FLOP/s are dense (no 2:4 sparsity).\n")
    return f"# mlfootprint {report.verb}\n\n" + "\n".join(out)


# ------------------------------------------------------------------------------------------ helpers


def _print(table: Table, args: argparse.Namespace | None = None) -> str:
    console, buf = console_for(args)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _num(v: float) -> str:
    """Up to 4 significant digits, thousands separators, no trailing zeros."""
    return f"{v:,.0f}" if v >= 1000 else f"{v:.4g}"


def _rate(v: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{_num(v / scale)} {prefix}{unit}"
    return f"{_num(v)} {unit}"


def _usd(v: float) -> str:
    return f"${v:,.2f}/h" if v >= 1 else f"${v:.3g}/h"


def _md_source(s: dict[str, str]) -> str:
    """The source as Markdown (escaped text; its URL a link only when it is http(s))."""
    text = md_link(s.get("source", "?"), s.get("url"))
    if s.get("url") and safe_url(s["url"]) is None:
        text += f" ({md_escape(s['url'])})"  # shown as text, never a link
    if s.get("note"):
        text += f" ({md_escape(s['note'])})"
    return text


def _md_table(header: list[str], rows: list[list[Any]], markdown_columns: tuple[int, ...] = ()) -> str:
    """A table of escaped text; the ``markdown_columns`` hold Markdown made safe by their builder."""
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) if i in markdown_columns else md_escape(str(c)) for i, c in enumerate(r))
              + " |" for r in rows]
    return "\n".join(lines)
