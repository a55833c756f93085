"""HTML renderer: one self-contained page (CSS, script, plots and data inline; no network needed).

The page has a summary card, the plots (inline SVG made with matplotlib, the
optional extra ``plot``), every table of the report, its conventions and
assumptions, and the report's JSON (so the page carries its own data). Every
string that comes from the report is escaped; a Content-Security-Policy lets
only this page's own script run and forbids every network fetch.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import re
from typing import Any

from ..core.version import __version__
from . import layout, plots, units
from .layout import Block
from .render import renderer
from .schema import SCHEMA, Report
from ..hardware.catalog import dtype_for_precision, get_device

PROVENANCE_HELP = {
    "counted": "from the traced graph",
    "modeled": "from a formula or model with stated inputs",
    "measured": "on this run's hardware",
    "published": "from a cited source",
    "assumed": "a default you can override",
    "given": "given by you",
}

_CSS = """
:root{--ink:#1d2330;--muted:#5d6677;--line:#e2e6ee;--bg:#f6f7fb;--card:#fff;--accent:#0b5cad;
--counted:#0b5cad;--modeled:#7a3fb0;--measured:#1a7f4b;--published:#4d5566;--assumed:#a85d00;--given:#0e7490}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
header.top{background:linear-gradient(135deg,#0f2747,#173f73);color:#fff;padding:28px 0 26px}
.wrap{max-width:1160px;margin:0 auto;padding:0 28px}
.brand{font-size:12px;letter-spacing:.14em;text-transform:uppercase;opacity:.75}
h1{font-size:30px;line-height:1.2;margin:6px 0 6px;font-weight:650;overflow-wrap:anywhere}
.sub{margin:0;opacity:.85;font-size:14px;overflow-wrap:anywhere}
main .wrap{padding-top:22px;padding-bottom:40px}
h2{font-size:19px;margin:34px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:22px 0 8px;color:#2b3445}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(205px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:13px 15px 12px;
box-shadow:0 1px 2px rgba(16,24,40,.04)}
.card .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.06em}
.card .value{font-size:22px;font-weight:650;margin:3px 0 4px;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.card .value.long{font-size:16px;line-height:1.35}
.card .note{font-size:12px;color:var(--muted)}
.badge{display:inline-block;font-size:11px;line-height:1;padding:3px 6px;border-radius:999px;
border:1px solid currentColor;white-space:nowrap;vertical-align:1px}
.b-counted{color:var(--counted)}.b-modeled{color:var(--modeled)}.b-measured{color:var(--measured)}
.b-published{color:var(--published)}.b-assumed{color:var(--assumed)}.b-given{color:var(--given)}
nav.toc{margin:18px 0 0;font-size:13px;color:var(--muted)}
nav.toc a{color:var(--accent);text-decoration:none;margin-right:14px;white-space:nowrap}
nav.toc a:hover{text-decoration:underline}
figure.plot{background:var(--card);border:1px solid var(--line);border-radius:10px;margin:0 0 16px;padding:12px 12px 8px}
figure.plot svg{display:block;width:100%;height:auto}
figure.plot figcaption{font-size:13px;color:var(--muted);padding:6px 4px 2px}
.notice{background:#fff8e6;border:1px solid #f1d48a;border-radius:8px;padding:10px 14px;font-size:14px}
.notice code{background:#fff;padding:1px 5px;border-radius:4px;border:1px solid #f1d48a}
.tablebox{background:var(--card);border:1px solid var(--line);border-radius:10px;overflow-x:auto;margin-bottom:14px}
table{border-collapse:collapse;width:100%;font-size:13.5px;font-variant-numeric:tabular-nums}
th,td{padding:6px 12px;text-align:left;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:break-word}
.tablebox.kvbox{width:fit-content;min-width:55%;max-width:100%}table.kv td:first-child{white-space:nowrap}table.kv td:nth-child(2){min-width:220px}
th{background:#f1f3f8;font-weight:600;font-size:12.5px;color:#3a4354;position:sticky;top:0}
tr:last-child td{border-bottom:none}
tbody tr:nth-child(even) td{background:#fafbfd}
td.num{text-align:right;white-space:nowrap}
tr.optimal td{font-weight:600}
td.tree{white-space:pre}
details>summary{cursor:pointer;color:var(--accent);font-size:14px;margin:4px 0 10px}
dl.conv{display:grid;grid-template-columns:minmax(140px,220px) 1fr;gap:6px 18px;margin:0;font-size:14px}
dl.conv dt{font-weight:600;color:#2b3445}dl.conv dd{margin:0;color:#39414f}
ol.assume{margin:0;padding-left:22px;font-size:14px}ol.assume li{margin:3px 0}
.verdict{border-radius:10px;padding:12px 16px;margin:0 0 14px;font-size:14.5px}
.verdict.warn{background:#fdecec;border:2px solid #c62828;color:#7f1d1d}
.verdict.ok{background:#eaf6ef;border:1px solid #7cc49a;color:#14532d}
.verdict strong{font-size:16px}.verdict ul{margin:6px 0 0;padding-left:22px}.verdict code{background:#fff;
padding:1px 5px;border-radius:4px;border:1px solid currentColor;font-size:13px}
.card.warn{border:2px solid #c62828}.card.warn .note{color:#b91c1c;font-weight:600}
.keys{font-size:14px;margin:14px 0 0}.keys ol{margin:4px 0 0;padding-left:22px}
.legend{font-size:13px;color:var(--muted);margin:10px 0 0}.legend .badge{margin:0 4px 0 10px}
footer{border-top:1px solid var(--line);color:var(--muted);font-size:12.5px;padding:16px 0 30px}
footer button{font:inherit;font-size:12.5px;margin-left:10px;padding:3px 10px;border-radius:6px;border:1px solid var(--line);
background:#fff;color:var(--accent);cursor:pointer}
@media print{header.top{background:#0f2747 !important;-webkit-print-color-adjust:exact;print-color-adjust:exact}
nav.toc,footer button{display:none}th{position:static}}
"""

# The page's only script: a download button for the embedded JSON. No network, no eval.
_JS = """(function(){
var data=document.getElementById("report-data");
var btn=document.getElementById("download-json");
if(data&&btn){btn.hidden=false;btn.addEventListener("click",function(){
var blob=new Blob([data.textContent],{type:"application/json"});
var a=document.createElement("a");a.href=URL.createObjectURL(blob);
a.download=(document.body.getAttribute("data-file")||"report")+".json";
document.body.appendChild(a);a.click();a.remove();});}
document.body.setAttribute("data-ready","1");
})();"""


def esc(value: Any) -> str:
    """Text from a report as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    # The page loads nothing: no image, font, frame or fetch (plots are inline SVG). Styles are inline (the
    # <style> element, matplotlib's SVG style attributes, indented table cells), which cannot run code; the one
    # script runs by its hash.
    return ("default-src 'none'; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def _json_for_script(report: Report) -> str:
    text = report.to_json(indent=None)
    # Inside <script> only '</' and '<!--' matter; escaping every <, > and & is simplest and exact.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _badge(kind: str) -> str:
    if not kind:
        return ""
    cls = re.sub(r"[^a-z]", "", kind.lower())
    return f'<span class="badge b-{cls}" title="{esc(PROVENANCE_HELP.get(kind, kind))}">{esc(kind)}</span>'


_NUMERIC = re.compile(r"^[\s$~≈+\-−]*[0-9][0-9,.\s]*([eE][+-]?\d+)?\s*[A-Za-zµ%³/()., 0-9-]*$")


def _cell(text: str, header: str, numeric_right: bool = True) -> str:
    if header == "provenance":
        return f"<td>{_badge(text)}</td>"
    right = numeric_right and text and _NUMERIC.match(text) and header not in ("#", "assumption", "module", "op")
    cls = ' class="num"' if right else ""
    return f"<td{cls}>{esc(text)}</td>"


def table_html(block: Block, open_limit: int = 24, row_classes: list[str] | None = None) -> str:
    heads = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
    kv = block.headers[:2] == ["figure", "value"] or block.headers == ["#", "assumption"]
    body = []
    for i, row in enumerate(block.rows):
        cells = []
        for j, cell in enumerate(row):
            header = block.headers[j] if j < len(block.headers) else ""
            if j == 0 and block.indent:
                pad = block.indent[i] * 1.1
                cells.append(f'<td style="padding-left:{12 + pad * 12:.0f}px">{esc(str(cell).strip())}</td>')
            else:
                cells.append(_cell(str(cell), header, numeric_right=not kv))
        cls = f' class="{row_classes[i]}"' if row_classes and i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    tcls = ' class="kv"' if kv else ""
    table = f'<div class="tablebox{" kvbox" if kv else ""}"><table{tcls}><thead><tr>{heads}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    note = f'<p class="legend">{esc(block.note)}</p>' if block.note else ""
    if len(block.rows) > open_limit:
        return (f"<h3>{esc(block.title)}</h3><details><summary>show {len(block.rows)} rows</summary>{table}</details>"
                + note)
    return f"<h3>{esc(block.title)}</h3>{table}{note}"


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="plot">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


# -- the device for the roofline --------------------------------------------------------------

def roofline_device(report: Report) -> tuple[float | None, float | None, str, str]:
    """(peak FLOP/s, memory bandwidth B/s, device label, where they came from) for the roofline.

    The peak the report used (``time.peak_flop_per_s``, or ``measured.peak_flop_per_s``) and the bandwidth of
    that device in the hardware catalog; else the catalog entry of ``workload.hardware``; else
    (None, None, '', reason).
    """
    wl = report.get("workload") or {}
    for section in ("time", "measured"):
        data = report.get(section) or {}
        peak, hw = data.get("peak_flop_per_s"), data.get("hardware")
        if isinstance(peak, (int, float)) and not isinstance(peak, bool) and peak > 0 and hw and hw != "given":
            try:
                dev = get_device(str(hw))
            except Exception:  # noqa: BLE001 - a device this catalog does not know: try the next source
                continue
            dtype = data.get("peak_dtype") or ""
            return (float(peak), float(dev.memory_bandwidth_bytes_per_s), f"{dev.name} ({dtype})",
                    f"from the report ({section}.peak_flop_per_s) and the hardware catalog's bandwidth")
    hw = wl.get("hardware")
    if not hw:
        return None, None, "", "the report names no hardware (use --hardware)"
    try:
        dtype = dtype_for_precision(str(wl.get("precision") or "fp32"))
        dev = get_device(str(hw))
        return (dev.peak_for(dtype), float(dev.memory_bandwidth_bytes_per_s), f"{dev.name} ({dtype})",
                f"from the hardware catalog: {dev.source_of('peak_flops.' + dtype)}")
    except Exception as exc:  # noqa: BLE001 - unknown device or precision: intensity only
        return None, None, "", f"hardware {hw!r} is not usable here ({exc})"


# -- the page -----------------------------------------------------------------------------------

def _plots_html(report: Report) -> tuple[str, list[str]]:
    """The plots section and the ids of the plots it holds."""
    if report.get("compare") is not None:
        return _compare_plots(report)
    parts: list[str] = []
    ids: list[str] = []
    if not plots.available():
        return (f'<div class="notice" id="plots-unavailable">Plots need matplotlib, which is not installed: '
                f"<code>{esc(plots.INSTALL_HINT)}</code>, then render again (for a saved report: "
                f"<code>mlfootprint report REPORT.json --format html -o report.html</code>).</div>", ids)
    flops = report.get("flops") or {}
    memory = report.get("memory") or {}
    measured = report.get("measured") or {}
    fp = report.get("footprint") or {}

    def add(svg: str | None, caption: str) -> None:
        if svg:
            ids.append(re.search(r'<svg id="([^"]+)"', svg).group(1))  # type: ignore[union-attr]
            parts.append(_figure(svg, caption))

    if isinstance(flops.get("by_module"), dict):
        add(plots.module_plot(flops["by_module"]),
            "Model FLOPs of one step by module (forward and backward matrix-class work; other = elementwise, "
            "normalization, softmax, reductions) and the parameters each module holds. A parent's work outside its "
            "submodules is shown as '(own ops)'.")
    if memory:
        mp = measured.get("peak_bytes")
        add(plots.memory_plot(memory, mp if isinstance(mp, (int, float)) else None),
            "Memory per device by component (GB = 1e9 bytes); the peak is when the most is alive at once, "
            "not necessarily the sum of the components.")
    if isinstance(flops.get("by_op"), dict):
        peak, bw, label, where = roofline_device(report)
        if peak and bw:
            caption = (f"Each operator at its roofline bound for {label}: peak {units.si(peak, 'FLOP/s')}, memory "
                       f"bandwidth {units.si(bw, 'B/s')} ({where}). Intensity = all FLOPs of the op / bytes it "
                       "reads and writes, summed over its calls; marker area grows with the op's FLOPs.")
        else:
            caption = (f"Arithmetic intensity only: no device peak or bandwidth ({where}). Intensity = all FLOPs of "
                       "the op / bytes it reads and writes, summed over its calls.")
        add(plots.roofline_plot(flops["by_op"], peak, bw, label), caption)
    pairs = layout.predicted_vs_measured(report)
    if pairs:
        add(plots.pred_measured_plot(pairs),
            "Measured / predicted for each figure both have; green within ±25%.")
    if fp:
        add(plots.footprint_plot(fp),
            "Footprint: device energy and the facility overhead (PUE), operational and embodied carbon, "
            "on-site and off-site water, and cost; the inputs and their sources are in the table below.")
    if not parts:
        return '<p class="legend">This report has no data to plot.</p>', ids
    return "".join(parts), ids


def _compare_plots(report: Report) -> tuple[str, list[str]]:
    data = report.get("compare") or {}
    pareto = data.get("pareto") or {}
    if not pareto.get("x"):
        return '<p class="legend">No Pareto plot: the reports share no two figures (choose them with --x and --y).</p>', []
    if not plots.available():
        return (f'<div class="notice" id="plots-unavailable">The Pareto plot needs matplotlib, which is not installed: '
                f"<code>{esc(plots.INSTALL_HINT)}</code>.</div>", [])
    labels = [r.get("label", "") for r in data.get("reports", [])]
    units_by_path = {f.get("path"): f.get("unit", "") for f in data.get("figures", [])}
    svg = plots.pareto_plot(labels, pareto.get("x_values", []), pareto.get("y_values", []), pareto["x"], pareto["y"],
                            pareto.get("x_better", "lower"), pareto.get("y_better", "lower"),
                            pareto.get("optimal_index", []), units_by_path.get(pareto["x"], ""),
                            units_by_path.get(pareto["y"], ""))
    if not svg:
        return '<p class="legend">No report has both figures of the Pareto plot.</p>', []
    optimal = ", ".join(pareto.get("optimal", [])) or "none"
    return _figure(svg, f"Pareto-optimal: {optimal}. {pareto['y']}: {pareto.get('y_better')} is better; "
                        f"{pareto['x']}: {pareto.get('x_better')} is better."), ["plot-pareto"]


def _header(report: Report) -> tuple[str, str, str]:
    """(title text, subtitle text, file stem) — plain text, escaped by the caller."""
    if report.get("compare") is not None:
        reps = (report.get("compare") or {}).get("reports", [])
        names = [str(r.get("label", "")) for r in reps]
        return f"Comparison of {len(names)} reports", " · ".join(names), "comparison"
    model = report.get("model") or {}
    name = str(model.get("name") or "") or f"{report.verb} report"
    bits = []
    if model.get("origin") or model.get("source"):
        bits.append(str(model.get("origin") or model.get("source")))
    wl = report.get("workload") or {}
    if wl:
        w = [str(wl.get("mode", ""))]
        if wl.get("batch") is not None and wl.get("seq") is not None:
            w.append(f"batch {wl['batch']} × seq {wl['seq']}")
        if wl.get("precision"):
            w.append(str(wl["precision"]))
        if wl.get("mode") == "train" and wl.get("optimizer"):
            w.append(str(wl["optimizer"]))
        if wl.get("hardware"):
            w.append(f"{wl.get('devices') or 1} × {wl['hardware']}")
        bits.append(", ".join(x for x in w if x))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "report"
    return name, " · ".join(bits), stem


def _verdict(report: Report) -> str:
    """Whether the workload fits, above the cards: a warning (role=alert) with the changes that fit when not."""
    m = report.get("memory") or {}
    if m.get("fits") is None or not isinstance(m.get("peak_bytes"), (int, float)):
        return ""
    peak, cap = units.gb(m["peak_bytes"]), units.gb(m.get("device_bytes"))
    if m["fits"]:
        free = 1 - m["peak_bytes"] / m["device_bytes"] if m.get("device_bytes") else 0
        return (f'<section id="verdict" class="verdict ok"><strong>✓ Fits</strong>: {esc(peak)} per device of '
                f'{esc(cap)} ({free:.0%} free).</section>')
    text = f"{peak} per device of {cap}."
    if report.get("time") is None and report.verb in ("analyze", "predict"):
        text += " No time, energy, CO2e or cost is given for a run that cannot happen."
    items = "".join(f"<li><code>{esc(s['change'])}</code>: {'at most ' if s.get('at_most') else ''}"
                    f"{esc(units.gb(s['peak_bytes']))} per device on "
                    f"{s['devices']:,} device{'s' if s['devices'] > 1 else ''}</li>" for s in m.get("suggestions") or [])
    advice = (f"<div>Changes that fit (each checked by the memory model):</div><ul>{items}</ul>" if items else
              "<div>None of the single changes tried fits.</div>")
    return (f'<section id="verdict" class="verdict warn" role="alert"><strong>⚠ Does not fit</strong>: '
            f'{esc(text)}{advice}</section>')


def _key_assumptions(report: Report) -> str:
    keys = [a for a in report.key_assumptions if not a.startswith("does not fit")][:3]
    if not keys:
        return ""
    items = "".join(f"<li>{esc(a)}</li>" for a in keys)
    return f'<section id="key-assumptions" class="keys">Assumptions that moved these numbers most:<ol>{items}</ol></section>'


def _cards(report: Report) -> str:
    cards = []
    if report.get("compare") is not None:
        data = report.get("compare") or {}
        pareto = data.get("pareto") or {}
        cards.append(("Reports", str(len(data.get("reports", []))), "", ""))
        if pareto.get("x"):
            cards.append(("Pareto-optimal", ", ".join(pareto.get("optimal", [])) or "none", "",
                          f"{pareto['y']} vs {pareto['x']}"))
    else:
        for item in layout.summary(report):
            cards.append((item.label, item.text, item.provenance, item.note))
    if not cards:
        return ""
    out = []
    warn = (report.get("memory") or {}).get("fits") is False
    for label, value, prov, note in cards:
        cls = "card warn" if warn and label == "Peak memory" else "card"
        out.append(f'<div class="{cls}"><div class="label">{esc(label)} {_badge(prov)}</div>'
                   f'<div class="value{" long" if len(value) > 18 else ""}">{esc(value)}</div>'
                   + (f'<div class="note">{esc(note)}</div>' if note else "") + "</div>")
    return f'<section id="summary" class="cards">{"".join(out)}</section>'


def render_page(report: Report, args: argparse.Namespace | None = None) -> str:
    depth = getattr(args, "depth", 2) if args is not None else 2
    macs = bool(getattr(args, "macs", False)) if args is not None else False
    title, subtitle, stem = _header(report)
    plots_html, _ids = _plots_html(report)
    tables = []
    for block in layout.blocks(report, depth=depth, show_ops=True, macs=macs):
        if block.title == "Assumptions":
            continue  # listed below as prose
        tables.append(table_html(block))
    conv = ""
    if report.conventions:
        items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report.conventions.items())
        conv = f'<h2 id="conventions">Conventions</h2><dl class="conv">{items}</dl>'
    assume = ""
    if report.assumptions:
        items = "".join(f"<li>{esc(a)}</li>" for a in report.assumptions)
        assume = f'<h2 id="assumptions">Assumptions</h2><ol class="assume">{items}</ol>'
    legend = ('<p class="legend">Provenance:' + "".join(_badge(k) + esc(v) for k, v in PROVENANCE_HELP.items()
                                                        if k != "given") + "</p>")
    toc = ['<a href="#plots">Plots</a>', '<a href="#tables">Tables</a>']
    if conv:
        toc.append('<a href="#conventions">Conventions</a>')
    if assume:
        toc.append('<a href="#assumptions">Assumptions</a>')
    script = _JS
    head_title = f"mlfootprint {report.verb}: {title}"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp(script))}">\n',
        f'<meta name="generator" content="mlfootprint {esc(__version__)}">\n',
        f"<title>{esc(head_title)}</title>\n<style>{_CSS}</style>\n</head>\n",
        f'<body data-file="{esc(stem)}">\n',
        f'<header class="top"><div class="wrap"><div class="brand">mlfootprint · {esc(report.verb)} report</div>',
        f'<h1 id="title">{esc(title)}</h1>',
        f'<p class="sub">{esc(subtitle)}</p>' if subtitle else "",
        "</div></header>\n<main><div class=\"wrap\">\n",
        _verdict(report),
        _cards(report),
        _key_assumptions(report),
        f'<nav class="toc">{"".join(toc)}</nav>\n',
        f'<h2 id="plots">Plots</h2>\n{plots_html}\n',
        f'<h2 id="tables">Tables</h2>\n{legend}\n{"".join(tables)}\n',
        conv, assume,
        "\n</div></main>\n",
        f'<footer><div class="wrap">Made by mlfootprint {esc(__version__)} · schema {esc(SCHEMA)} · '
        f'self-contained: no network access is needed to view this page. The report\'s JSON is embedded in it.'
        f'<button id="download-json" type="button" hidden>Download JSON</button></div></footer>\n',
        f'<script type="application/json" id="report-data">{_json_for_script(report)}</script>\n',
        f"<script>{script}</script>\n</body>\n</html>\n",
    ])


@renderer("html")
def render_html(report: Report, args: argparse.Namespace | None) -> str:
    return render_page(report, args)


def embedded_report(page: str) -> dict[str, Any]:
    """The report JSON embedded in a page made by this renderer (for tools and tests)."""
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, flags=re.S)
    if not m:
        raise ValueError("no embedded report in this page")
    return json.loads(m.group(1))
