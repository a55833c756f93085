"""Plots of a report as inline SVG (matplotlib, the optional extra ``plot``).

Each function returns one ``<svg>`` element as text — with an ``id``, a
``viewBox`` and ids of its own parts prefixed so several plots can live in one
HTML page — or ``None`` when the report has no data for that plot. Text is
kept as SVG ``<text>`` (no glyph outlines), so labels are selectable and the
files stay small. Nothing here touches pyplot's global state.
"""
from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable, Sequence
from typing import Any
from .units import si
from .units import _plain as plain
from .layout import format_figure
from ..core.units import plain_number

INSTALL_HINT = "pip install 'mlfootprint[plot]'"

# Colours: a calm, colour-blind-safe set (Okabe-Ito based).
BLUE, ORANGE, GREEN, PURPLE, GREY, RED, SKY, YELLOW = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#8C8C8C", "#D55E00", "#56B4E9", "#F0E442")
_SEGMENTS = (BLUE, ORANGE, GREEN, PURPLE, SKY, RED, YELLOW, GREY)

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "mlfootprint",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plot(fn: Callable[..., str | None]) -> Callable[..., str | None]:
    """Run a plot function under our style (rcParams restored afterwards, even on error)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str | None:
        try:
            import matplotlib
        except ImportError:
            raise PlotsUnavailable(f"plots need matplotlib: {INSTALL_HINT}") from None
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _to_svg(fig: Any, plot_id: str, label: str) -> str:
    _plain_ticks(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "mlfootprint"})
    text = buf.getvalue()
    start = text.find("<svg")
    text = text[start:]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", plot_id)
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    # The root element: our id, an accessible name, and a size that follows the page (the viewBox keeps the shape).
    head_end = text.find(">")
    head = text[:head_end]
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    head = head.replace("<svg", f'<svg id="{prefix}" class="plot" role="img" aria-label="{_attr(label)}"', 1)
    return head + text[head_end:].strip()


def _plain_ticks(fig: Any) -> None:
    """Tick labels without exponent notation, as the rest of the report: matplotlib's own formatters (a log axis's
    '10^3', a linear axis's '1e-5' offset) are replaced wherever a plot kept them; a log axis labels its decades only."""
    from matplotlib.ticker import FuncFormatter, LogFormatter, NullFormatter, ScalarFormatter

    plain = FuncFormatter(lambda v, _pos: si(v) if abs(v) >= 1e4 else plain_number(v, 3))
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_major_formatter(), (ScalarFormatter, LogFormatter)):
                axis.set_major_formatter(plain)
            if isinstance(axis.get_minor_formatter(), LogFormatter):
                axis.set_minor_formatter(NullFormatter())


def _attr(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;"))


def _t(text: Any, limit: int = 0) -> str:
    """A user string as matplotlib text: '$' would start mathtext, so it is escaped."""
    s = str(text)
    if limit and len(s) > limit:
        keep = limit - 1
        s = s[: keep // 2] + "…" + s[-(keep - keep // 2):]
    return s.replace("$", r"\$")


def _fmt(value: float, unit: str = "") -> str:
    return si(value, unit)


# -- FLOPs and parameters by module ---------------------------------------------------------

def _total(node: dict[str, Any]) -> float:
    return float(node.get("forward", 0) or 0) + float(node.get("backward", 0) or 0) + float(node.get("other", 0) or 0)


def _interesting(node: dict[str, Any]) -> bool:
    return _total(node) > 0 or (node.get("params") or 0) > 0


def module_rows(tree: dict[str, Any], limit: int = 24) -> list[dict[str, Any]]:
    """The module tree cut at the deepest level that still fits in ``limit`` bars.

    Levels are opened whole (every block of a model at once, never one block alone).
    Work a parent does outside its children (a loss, ops attributed to a container) is
    kept as its own '(own ops)' bar, or pooled into one bar when tiny, so the bars
    always add up to the model.
    """
    keys = ("forward", "backward", "other")
    tiny = 0.001 * max(_total(tree), 1)

    def expand(node: dict[str, Any], leftover: dict[str, float]) -> list[dict[str, Any]]:
        kids = [c for c in node.get("children", []) if _interesting(c)]
        if not kids:
            return [node]
        rest = {k: max(float(node.get(k, 0) or 0) - sum(float(c.get(k, 0) or 0) for c in kids), 0.0) for k in keys}
        rest_params = max((node.get("params") or 0) - sum(c.get("params") or 0 for c in kids), 0)
        out = list(kids)
        if sum(rest.values()) > tiny or rest_params > 0:
            label = node.get("path") or node.get("name") or "model"
            out.append({"name": label, "path": f"{label} (own ops)", "type": "", "params": rest_params,
                        **rest, "children": []})
        else:
            for k in keys:
                leftover[k] += rest[k]
        return out

    frontier: list[dict[str, Any]] = [tree]
    pooled = dict.fromkeys(keys, 0.0)
    first = True
    while True:
        trial = dict(pooled)
        nxt = [n for node in frontier for n in expand(node, trial)]
        if [id(n) for n in nxt] == [id(n) for n in frontier] or (len(nxt) > limit and not first):
            break
        frontier, pooled, first = nxt, trial, False
        if len(frontier) > limit:
            break
    if len(frontier) > limit:
        ranked = sorted(frontier, key=lambda n: -(_total(n) + (n.get("params") or 0)))
        keep, drop = ranked[: limit - 1], ranked[limit - 1:]
        order = {id(n): i for i, n in enumerate(frontier)}
        keep.sort(key=lambda n: order[id(n)])
        other: dict[str, Any] = {"name": "other", "path": f"({len(drop)} other modules)", "type": "", "children": [],
                                 "params": sum(n.get("params") or 0 for n in drop)}
        for k in keys:
            other[k] = sum(float(n.get(k, 0) or 0) for n in drop)
        frontier = keep + [other]
    if sum(pooled.values()) > 0:
        frontier = frontier + [{"name": "rest", "path": "(small ops outside the modules shown)", "type": "",
                                "params": 0, "children": [], **pooled}]
    return frontier


@_plot
def module_plot(tree: dict[str, Any], plot_id: str = "plot-modules") -> str | None:
    rows = module_rows(tree)
    if not rows or not any(_interesting(r) for r in rows):
        return None
    fig = _figure(9.5, 0.3 * len(rows) + 1.4)
    ax_f, ax_p = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    names = [_t(r.get("path") or r.get("name") or "model", 44) for r in rows]
    ys = list(range(len(rows)))
    left = [0.0] * len(rows)
    for key, colour, label in (("forward", BLUE, "forward (model)"), ("backward", ORANGE, "backward (model)"),
                               ("other", GREY, "other (elementwise, norm, ...)")):
        vals = [float(r.get(key, 0) or 0) for r in rows]
        if any(vals):
            ax_f.barh(ys, vals, left=left, color=colour, label=label, height=0.7)
            left = [a + b for a, b in zip(left, vals)]
    ax_f.set_yticks(ys, names)
    ax_f.invert_yaxis()
    ax_f.set_title("FLOPs per step by module")
    ax_f.set_xlabel("FLOPs")
    ax_f.xaxis.set_major_formatter(_si_formatter(""))
    ax_f.legend(loc="lower right")
    ax_f.grid(axis="y", visible=False)
    params = [float(r.get("params") or 0) for r in rows]
    ax_p.barh(ys, params, color=GREEN, height=0.7)
    ax_p.set_title("Parameters by module")
    ax_p.set_xlabel("parameters")
    ax_p.xaxis.set_major_formatter(_si_formatter(""))
    ax_p.grid(axis="y", visible=False)
    return _to_svg(fig, plot_id, "FLOPs and parameters by module")


def _plain(value: float) -> str:
    return plain(value)


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 1000 else plain_number(v, 3))


def _si_formatter(unit: str) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: _fmt(v, unit) if v else "0")


# -- memory -------------------------------------------------------------------------------------

MEMORY_COMPONENTS = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                     "kv_cache_bytes", "other_bytes")
_NOT_COMPONENTS = ("peak", "device", "total", "capacity", "free", "limit", "budget", "headroom", "host", "nvme")


def memory_components(memory: dict[str, Any]) -> list[tuple[str, float]]:
    """(component, bytes) per device: what is alive at the peak (`at_peak`) when the report says,
    else `components`, else the section's own *_bytes figures (not peak, capacity, headroom or off-device)."""
    comps: dict[str, float] = {}
    src = next((memory[k] for k in ("at_peak", "components") if isinstance(memory.get(k), dict) and memory[k]), None)
    if src:
        for k, v in src.items():
            if isinstance(v, dict):
                v = v.get("bytes", v.get("value"))
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                comps[k[:-6] if k.endswith("_bytes") else k] = float(v)
    else:
        keys = [k for k in MEMORY_COMPONENTS if k in memory]
        keys += [k for k in memory if k.endswith("_bytes") and k not in keys and not any(w in k for w in _NOT_COMPONENTS)]
        for k in keys:
            v = memory.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                comps[k[:-6]] = float(v)
    return list(comps.items())


@_plot
def memory_plot(memory: dict[str, Any], measured_peak: float | None = None, plot_id: str = "plot-memory") -> str | None:
    comps = memory_components(memory)
    if not comps:
        return None
    peak = memory.get("peak_bytes") if isinstance(memory.get("peak_bytes"), (int, float)) else None
    cap = memory.get("device_bytes") if isinstance(memory.get("device_bytes"), (int, float)) else None
    top = max([sum(v for _, v in comps), peak or 0, measured_peak or 0])
    # binary units, as the card and the tables give memory
    scale, unit = next(((f, u) for f, u in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")) if top >= 0.5 * f),
                       (1.0, "bytes"))
    fig = _figure(9.5, 2.9)
    ax = fig.subplots()
    left = 0.0
    for (name, v), colour in zip(comps, _SEGMENTS * 4):
        ax.barh([0], [v / scale], left=[left], color=colour, height=0.5, label=f"{_t(name)}: {plain_number(v / scale, 3)} {unit}")
        left += v / scale
    marks = [left]
    if peak:
        ax.axvline(peak / scale, color=RED, lw=1.6, ls="-", label=f"peak (predicted): {plain_number(peak / scale, 3)} {unit}")
        marks.append(peak / scale)
    if measured_peak:
        ax.axvline(measured_peak / scale, color="#222222", lw=1.4, ls="--",
                   label=f"peak (measured): {plain_number(measured_peak / scale, 3)} {unit}")
        marks.append(measured_peak / scale)
    title = "Memory per device at the peak, by component" if isinstance(memory.get("at_peak"), dict) \
        else "Memory per device by component"
    if cap:
        if cap / scale <= 3 * max(marks):
            ax.axvline(cap / scale, color="#222222", lw=1.2, ls=":", label=f"device memory: {plain_number(cap / scale, 3)} {unit}")
            marks.append(cap / scale)
        else:  # a line far to the right would squash the bars to nothing: say it instead
            title += f" (device memory {plain_number(cap / 2**30, 3)} GiB, off the scale)"
    ax.set_xlim(0, max(marks) * 1.05)
    ax.set_yticks([0], ["per device"])
    ax.set_xlabel(f"{unit} per device" if scale > 1 else "bytes per device")
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    fig.legend(loc="outside lower center", ncol=4)
    return _to_svg(fig, plot_id, "Memory breakdown per device")


# -- roofline -----------------------------------------------------------------------------------

def _short_op(op: str) -> str:
    s = op[5:] if op.startswith("aten.") else op
    s = s.lstrip("_") or s
    for tail in (".default", ".Tensor", ".Scalar", ".self", ".int"):
        if s.endswith(tail):
            s = s[: -len(tail)]
    return s


def roofline_points(by_op: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """(op, FLOPs, bytes, class) of each operator with both arithmetic and memory traffic."""
    pts = []
    for op, rec in by_op.items():
        flops = float(rec.get("flops", 0) or 0)
        nbytes = float(rec.get("bytes", 0) or 0)
        if flops > 0 and nbytes > 0:
            pts.append((op, flops, nbytes, str(rec.get("class", ""))))
    return pts


@_plot
def roofline_plot(by_op: dict[str, Any], peak_flops: float | None = None, bandwidth: float | None = None,
                  device: str = "", plot_id: str = "plot-roofline") -> str | None:
    pts = roofline_points(by_op)
    if not pts:
        return None
    fig = _figure(9.5, 4.6)
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    total = sum(p[1] for p in pts)
    intens = [p[1] / p[2] for p in pts]
    sizes = [18 + 400 * math.sqrt(p[1] / total) for p in pts]
    colours = [BLUE if p[3] == "model" else ORANGE for p in pts]
    roof = bool(peak_flops and bandwidth)
    if roof:
        ridge = peak_flops / bandwidth  # type: ignore[operator]
        lo = min(min(intens), ridge) / 4
        hi = max(max(intens), ridge) * 4
        xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        ax.plot(xs, [min(peak_flops, bandwidth * x) for x in xs], color="#222222", lw=1.6,  # type: ignore[operator]
                label="roof: min(peak, intensity × bandwidth)")
        ax.axvline(ridge, color=GREY, lw=0.9, ls=":")
        ax.annotate(f"ridge {plain_number(ridge, 3)} FLOP/B", (ridge, peak_flops), textcoords="offset points",  # type: ignore[arg-type]
                    xytext=(4, -12), fontsize=8, color="#444444")
        ys = [min(peak_flops, bandwidth * i) for i in intens]  # type: ignore[operator]
        ax.scatter(intens, ys, s=sizes, c=colours, alpha=0.75, edgecolors="white", linewidths=0.6, zorder=3)
        ax.set_ylabel("attainable FLOP/s (each op at its roof)")
        ax.yaxis.set_major_formatter(_si_formatter("FLOP/s"))
        ax.set_title(f"Roofline of the traced ops: {_t(device, 60)}" if device else "Roofline of the traced ops")
        ax.set_xlim(lo, hi)
        ax.text(0.01, 0.97, "← memory-bound", transform=ax.transAxes, fontsize=8, color="#444444", va="top")
        ax.text(0.99, 0.03, "compute-bound →", transform=ax.transAxes, fontsize=8, color="#444444", ha="right")
    else:
        ys = [p[1] for p in pts]
        ax.scatter(intens, ys, s=sizes, c=colours, alpha=0.75, edgecolors="white", linewidths=0.6, zorder=3)
        ax.set_ylabel("FLOPs per step")
        ax.yaxis.set_major_formatter(_si_formatter("FLOP"))
        ax.set_title("Arithmetic intensity of the traced ops (no device peak or bandwidth in this report)")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    spots: list[tuple[float, float, list[str]]] = []
    for i in sorted(range(len(pts)), key=lambda i: -pts[i][1])[:8]:
        lx, ly = math.log10(intens[i]), math.log10(ys[i])
        near = next((sp for sp in spots if abs(sp[0] - lx) < 0.25 and abs(sp[1] - ly) < 0.25), None)
        if near:
            near[2].append(_short_op(pts[i][0]))
        else:
            spots.append((lx, ly, [_short_op(pts[i][0])]))
    for k, (lx, ly, names) in enumerate(spots):
        ax.annotate(_t(", ".join(names), 36), (10 ** lx, 10 ** ly), textcoords="offset points",
                    xytext=(7, 5 if k % 2 == 0 else -11), fontsize=7.5, color="#333333")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=BLUE, label="matrix-class (model FLOPs)"),
               Line2D([], [], marker="o", ls="", color=ORANGE, label="other (elementwise, norm, ...)")]
    if roof:
        handles.insert(0, Line2D([], [], color="#222222", lw=1.6, label="roof: min(peak, intensity × bandwidth)"))
    if roof:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    else:
        ax.legend(handles=handles, loc="upper left")
    return _to_svg(fig, plot_id, "Roofline of the traced operators")


# -- predicted vs measured ------------------------------------------------------------------------

@_plot
def pred_measured_plot(pairs: Sequence[Any], plot_id: str = "plot-pred-measured") -> str | None:
    pairs = [p for p in pairs if p.ratio is not None]
    if not pairs:
        return None
    fig = _figure(9.5, 0.42 * len(pairs) + 1.3)
    ax = fig.subplots()
    ys = list(range(len(pairs)))
    ratios = [p.ratio for p in pairs]
    ax.barh(ys, ratios, color=[GREEN if 0.8 <= r <= 1.25 else ORANGE for r in ratios], height=0.6)
    ax.axvline(1.0, color="#222222", lw=1.2)
    for y, p in zip(ys, pairs):
        ax.annotate(f"predicted {format_figure(p.predicted_path, p.predicted)}, measured "
                    f"{format_figure('measured.' + p.key, p.measured)}", (p.ratio, y), textcoords="offset points",
                    xytext=(5, -3), fontsize=7.5, color="#333333")
    ax.set_yticks(ys, [_t(p.key) for p in pairs])
    ax.invert_yaxis()
    ax.set_xlim(0, max(2.0, max(ratios) * 1.6))
    ax.set_xlabel("measured / predicted (1 = exact)")
    ax.set_title("Predicted vs measured")
    ax.grid(axis="y", visible=False)
    return _to_svg(fig, plot_id, "Predicted versus measured figures")


# -- footprint ----------------------------------------------------------------------------------

def _scaled(values: Sequence[float], unit: str) -> tuple[float, str]:
    """A divisor and unit that put the largest value between about 1 and 1,000 (one step's energy is a few joules)."""
    top = max(values) if values else 0
    if unit == "gCO2e":
        return (1e6, "tCO2e") if top >= 1e6 else ((1e3, "kgCO2e") if top >= 1e3 else
                                                  ((1.0, "gCO2e") if top >= 1 else (1e-3, "mgCO2e")))
    if unit == "kWh":
        return (1e6, "GWh") if top >= 1e6 else ((1e3, "MWh") if top >= 1e3 else (
            (1.0, "kWh") if top >= 1 else ((1e-3, "Wh") if top >= 1e-3 else (1 / 3.6e6, "J"))))
    if unit == "L":
        return (1e3, "m³") if top >= 1e3 else ((1.0, "L") if top >= 1 else (1e-3, "mL"))
    return 1.0, unit


def footprint_groups(fp: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, float]]]]:
    def num(k: str) -> float | None:
        v = fp.get(k)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    groups: list[tuple[str, str, list[tuple[str, float]]]] = []
    energy: list[tuple[str, float]] = []
    dev, fac, srv = num("device_energy_j"), num("facility_energy_j"), num("serving_energy_j")
    if dev is not None:
        energy.append(("devices", dev / 3.6e6))
        if fac is not None and fac > dev:
            energy.append(("facility overhead (PUE)", (fac - dev) / 3.6e6))
    elif num("energy_j") is not None:
        energy.append(("run", num("energy_j") / 3.6e6))  # type: ignore[operator]
    if srv:
        energy.append(("serving", srv / 3.6e6))
    if energy:
        groups.append(("Energy", "kWh", energy))
    carbon = [(lab, v) for lab, v in (("operational", num("co2e_g")), ("serving", num("serving_co2e_g")),
                                      ("embodied (amortized)", num("embodied_co2e_g"))) if v]
    if carbon:
        groups.append(("Carbon", "gCO2e", carbon))
    water = [(lab, v) for lab, v in (("on-site (cooling)", num("water_onsite_l")),
                                     ("off-site (electricity)", num("water_offsite_l"))) if v]
    if not water and num("water_l"):
        water = [("water", num("water_l"))]  # type: ignore[list-item]
    if water:
        groups.append(("Water", "L", water))
    if num("cost_usd"):
        groups.append(("Cost", "USD", [("cost", num("cost_usd"))]))  # type: ignore[list-item]
    return groups


@_plot
def footprint_plot(fp: dict[str, Any], plot_id: str = "plot-footprint") -> str | None:
    groups = footprint_groups(fp)
    if not groups:
        return None
    fig = _figure(min(2.6 * len(groups) + 1.0, 9.5), 3.6)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (title, unit, parts) in zip(axes, groups):
        scale, shown = _scaled([sum(v for _, v in parts)], unit)
        bottom = 0.0
        for (lab, v), colour in zip(parts, _SEGMENTS):
            ax.bar([0], [v / scale], bottom=[bottom], color=colour, width=0.55, label=f"{lab}: {_plain(v / scale)}")
            bottom += v / scale
        ax.set_title(f"{title} ({shown})" if unit != "USD" else "Cost (USD)")
        ax.set_xticks([])
        ax.set_xlim(-0.6, 0.6)
        ax.yaxis.set_major_formatter(_thousands())
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), fontsize=7.5)
    return _to_svg(fig, plot_id, "Footprint breakdown: energy, carbon, water and cost")


# -- Pareto front of a comparison -----------------------------------------------------------------

@_plot
def pareto_plot(labels: Sequence[str], xs: Sequence[float | None], ys: Sequence[float | None], x: str, y: str,
                x_better: str, y_better: str, optimal: Sequence[int], x_unit: str = "", y_unit: str = "",
                plot_id: str = "plot-pareto") -> str | None:
    idx = [i for i in range(len(labels)) if xs[i] is not None and ys[i] is not None]
    if not idx:
        return None
    fig = _figure(8.5, 5.2)
    ax = fig.subplots()
    px = [float(xs[i]) for i in idx]  # type: ignore[arg-type]
    py = [float(ys[i]) for i in idx]  # type: ignore[arg-type]
    for axis, vals in (("x", px), ("y", py)):
        if min(vals) > 0 and max(vals) / min(vals) > 100:
            (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    opt = [i for i in idx if i in set(optimal)]
    dom = [i for i in idx if i not in set(optimal)]
    if dom:
        ax.scatter([xs[i] for i in dom], [ys[i] for i in dom], s=55, facecolors="white", edgecolors=GREY,
                   linewidths=1.4, label="dominated", zorder=3)
    if opt:
        front = sorted(opt, key=lambda i: xs[i])  # type: ignore[arg-type,return-value]
        ax.plot([xs[i] for i in front], [ys[i] for i in front], color=BLUE, lw=1.2, ls="--", zorder=2,
                drawstyle=("steps-post" if x_better == "lower" else "steps-pre") if len(front) > 1 else "default")
        ax.scatter([xs[i] for i in opt], [ys[i] for i in opt], s=70, color=BLUE, label="Pareto-optimal", zorder=4)
    for i in idx:
        ax.annotate(_t(labels[i], 40), (xs[i], ys[i]), textcoords="offset points", xytext=(7, 5), fontsize=8.5,
                    color="#222222" if i in set(optimal) else "#666666")
    ax.set_xlabel(f"{_t(x)}{f' [{_t(x_unit)}]' if x_unit else ''}  ({x_better} is better)")
    ax.set_ylabel(f"{_t(y)}{f' [{_t(y_unit)}]' if y_unit else ''}  ({y_better} is better)")
    corner_x = 0.02 if x_better == "lower" else 0.98
    corner_y = 0.02 if y_better == "lower" else 0.98
    ax.text(corner_x, corner_y, "better", transform=ax.transAxes, ha="left" if corner_x < 0.5 else "right",
            va="bottom" if corner_y < 0.5 else "top", fontsize=8.5, color=GREEN, fontweight="bold")
    ax.set_title(f"Pareto front: {_t(y)} vs {_t(x)}")
    ax.margins(0.15)
    for vals, axis in ((px, ax.xaxis), (py, ax.yaxis)):
        if max(abs(v) for v in vals) >= 1e4:
            axis.set_major_formatter(_si_formatter(""))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    return _to_svg(fig, plot_id, f"Pareto front of {y} against {x}")
