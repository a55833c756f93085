"""`mlfootprint hardware`: list and show the device catalog, calibrate this machine."""
from __future__ import annotations

import argparse
import io
import json
import sys
from typing import Any

from .output import add_output_options, output_format, write_output
from ..hardware.catalog import DTYPES, SCHEMA, Device, get_device, load_devices

_SHOWN_PEAKS = ("bf16", "fp16", "fp8")
_LIST_NOTE = (
    "Peak FLOP/s are dense (no 2:4 sparsity). Memory in GiB (2^30 bytes); TB/s = 10^12 bytes/s. "
    "Every figure's source and date: mlfootprint hardware show ID"
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "hardware",
        help="list and show the device catalog; calibrate this machine",
        description="The device catalog (peak FLOP/s, memory, bandwidths, power, price; each with its source) "
        "and `calibrate`, which measures this machine and saves it as the device 'this'.",
    )
    p.set_defaults(func=lambda args: _print_help(p))
    sub = p.add_subparsers(dest="hardware_command", metavar="COMMAND", parser_class=type(p))

    lp = sub.add_parser("list", help="every known device, one line each",
                        description="Every known device, one line each.")
    add_output_options(lp)
    lp.set_defaults(func=cmd_list)

    sp = sub.add_parser("show", help="every figure of one device with its source and date",
                        description="Every figure of one device with its source and date.")
    sp.add_argument("id", metavar="ID", help="device id, e.g. h100-sxm (see: mlfootprint hardware list)")
    add_output_options(sp)
    sp.set_defaults(func=cmd_show)

    cp = sub.add_parser(
        "calibrate",
        help="measure this machine (matmul FLOP/s, memory bandwidth, per-op overhead)",
        description="Measure what this machine achieves (matmul FLOP/s per dtype, memory bandwidth, per-op "
        "overhead) and save it as the device 'this' (use it with --hardware this).",
    )
    cp.add_argument("--budget-s", type=float, default=45.0, metavar="N",
                    help="seconds of timed work (default: 45)")
    cp.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    cp.add_argument("--no-save", action="store_true", help="print the figures without saving the profile")
    add_output_options(cp)
    cp.set_defaults(func=cmd_calibrate)


# --------------------------------------------------------------------------- verbs


def cmd_list(args: argparse.Namespace) -> None:
    # Catalog order (the package file's order, then user files); the calibrated profile last.
    devices = sorted(load_devices().values(), key=lambda d: d.id == "this")
    fmt = output_format(args)
    if fmt == "json":
        write_output(args, json.dumps({"schema": SCHEMA, "devices": [d.to_dict() for d in devices]}, indent=2))
        return None
    header = ["ID", "Name", "Memory GiB", *(f"{d} TFLOP/s" for d in _SHOWN_PEAKS), "Mem TB/s", "TDP W", "$/h"]
    rows = [_list_row(d) for d in devices]
    if fmt == "md":
        write_output(args, _md_table(header, rows) + "\n" + _LIST_NOTE + "\n")
        return None
    from rich.table import Table

    table = Table(title="Devices", caption=_LIST_NOTE, caption_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i == 0)
    for r in rows:
        table.add_row(*r)
    _write_rich(table, args)
    return None


def cmd_show(args: argparse.Namespace) -> None:
    dev = get_device(args.id)
    _show(dev, args)
    return None


def cmd_calibrate(args: argparse.Namespace) -> None:
    from rich.console import Console

    from ..hardware.calibrate import calibrate, check_profile_target, save_profile

    if not args.no_save:
        check_profile_target()  # refuse early, before spending the budget
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(f"calibrating this machine for about {args.budget_s:g} s …")

    def progress(message: str, fraction: float) -> None:
        if not message.endswith("…") and message != "done":
            err.print(f"  [{fraction:4.0%}] {message}")

    # The device profile (peaks, bandwidth, per-op overhead) takes most of the budget; on a CPU the rest
    # measures per-op-class rate curves (mlfootprint.predict.opcal), which --hardware this predictions use.
    cpu = args.device == "cpu" or (args.device == "auto" and not _cuda_available())
    device_budget = args.budget_s * (0.6 if cpu else 1.0)
    dev = calibrate(device=args.device, progress=progress, budget_s=device_budget)
    saved = None if args.no_save else save_profile(dev)
    if cpu and not args.no_save:
        from ..predict import opcal

        err.print("  measuring per-operator-class rates (convolution, matmul, attention, elementwise, …)")
        curves = opcal.calibrate(budget_s=args.budget_s - device_budget)
        err.print(f"  saved operator curves to {curves}")
    _show(dev, args, saved_to=saved)
    if saved is not None:
        err.print(f"saved the profile to {saved}; use it with --hardware this")
    else:
        err.print("not saved (--no-save)")
    return None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------- rendering


def _show(dev: Device, args: argparse.Namespace, saved_to: Any = None) -> None:
    fmt = output_format(args)
    if fmt == "json":
        doc: dict[str, Any] = {"schema": SCHEMA, "device": dev.to_dict()}
        if getattr(args, "func", None) is cmd_calibrate:
            doc["saved_to"] = str(saved_to) if saved_to is not None else None
        write_output(args, json.dumps(doc, indent=2))
        return
    header = ["Field", "Value", "Provenance", "Source", "Date"]
    rows = _show_rows(dev)
    intro = [f"vendor: {dev.vendor}", f"kind: {dev.kind}", f"origin: {dev.origin}"]
    if fmt == "md":
        md_rows = [[f, v, p, _md_source(s), d] for f, v, p, s, d in rows]
        text = f"## {dev.name} (`{dev.id}`)\n\n" + "\n".join(f"- {line}" for line in intro) + "\n\n"
        text += _md_table(header, md_rows) + "\n\nPeak FLOP/s are dense (no 2:4 sparsity).\n"
        write_output(args, text)
        return
    from rich.table import Table

    caption = "; ".join(intro) + ". Peak FLOP/s are dense (no 2:4 sparsity)."
    table = Table(title=f"{dev.name} ({dev.id})", caption=caption, caption_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="right" if i == 1 else "left", no_wrap=i in (0, 1, 4),
                         overflow="fold", ratio=4 if i == 3 else None)
    for f, v, p, s, d in rows:
        table.add_row(f, v, p, "\n".join(x for x in (s["source"], s.get("note"), s.get("url")) if x), d)
    _write_rich(table, args)


def _show_rows(dev: Device) -> list[list[Any]]:
    rows: list[list[Any]] = []

    def add(label: str, path: str, value: str) -> None:
        src = dev.sources.get(path, {})
        rows.append([label, value, src.get("provenance", "?"), src or {"source": "?"}, src.get("date", "—")])

    for d in DTYPES:
        if d in dev.peak_flops:
            add(f"peak {d} (dense)", f"peak_flops.{d}", _rate(dev.peak_flops[d], "OP/s" if d == "int8" else "FLOP/s"))
    add("memory", "memory_bytes", f"{_num(dev.memory_bytes / 2**30)} GiB ({_num(dev.memory_bytes / 1e9)} GB)")
    add("memory bandwidth", "memory_bandwidth_bytes_per_s", _rate(dev.memory_bandwidth_bytes_per_s, "B/s"))
    if dev.intra_node_bandwidth_bytes_per_s is not None:
        add("intra-node bandwidth (per direction)", "intra_node_bandwidth_bytes_per_s",
            _rate(dev.intra_node_bandwidth_bytes_per_s, "B/s"))
    if dev.inter_node_bandwidth_bytes_per_s is not None:
        v = dev.inter_node_bandwidth_bytes_per_s
        add("inter-node bandwidth (per direction)", "inter_node_bandwidth_bytes_per_s",
            f"{_rate(v, 'B/s')} ({_num(v * 8 / 1e9)} Gb/s)")
    if dev.devices_per_node is not None:
        add("devices per node", "devices_per_node", str(dev.devices_per_node))
    if dev.tdp_w is not None:
        add("TDP", "tdp_w", f"{_num(dev.tdp_w)} W")
    if dev.price_usd_per_hour is not None:
        add("price per device-hour", "price_usd_per_hour", _usd(dev.price_usd_per_hour))
    if dev.per_op_overhead_s is not None:
        add("per-op overhead", "per_op_overhead_s", f"{_num(dev.per_op_overhead_s * 1e6)} µs")
    return rows


def _list_row(d: Device) -> list[str]:
    peaks = [_num(d.peak_flops[t] / 1e12) if t in d.peak_flops else "—" for t in _SHOWN_PEAKS]
    return [
        d.id,
        d.name,
        _num(d.memory_bytes / 2**30),
        *peaks,
        f"{d.memory_bandwidth_bytes_per_s / 1e12:.3g}",
        _num(d.tdp_w) if d.tdp_w is not None else "—",
        f"{d.price_usd_per_hour:.2f}" if d.price_usd_per_hour is not None else "—",
    ]


def _num(v: float) -> str:
    """Up to 4 significant digits, thousands separators, no trailing zeros."""
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _rate(v: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{_num(v / scale)} {prefix}{unit}"
    return f"{_num(v)} {unit}"


def _usd(v: float) -> str:
    return f"${v:,.2f}/h" if v >= 1 else f"${v:.3g}/h"


def _md_source(s: dict[str, str]) -> str:
    text = s.get("source", "?")
    if s.get("note"):
        text += f" ({s['note']})"
    if s.get("url"):
        text += f" <{s['url']}>"
    return text


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- output


def _write_rich(renderable: Any, args: argparse.Namespace) -> None:
    from rich.console import Console

    if not getattr(args, "output", None) and sys.stdout.isatty():
        Console().print(renderable)
        return
    buf = io.StringIO()
    Console(file=buf, width=160, no_color=True, force_terminal=False, highlight=False).print(renderable)
    write_output(args, buf.getvalue())


def _print_help(p: argparse.ArgumentParser) -> None:
    p.print_help()
    return None
