"""The answer first: the compact terminal views of the model verbs (one screen each; ``--details`` for the rest).

Each view is a title line, the workload in one line, a short table of the figures that answer the verb's
question (each with its provenance), what to do when the workload does not fit, and the few assumptions that
moved the numbers most. The breakdowns (module trees, memory at the peak, communication, every assumption,
the conventions) are the ``--details`` view (``report/layout.py``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import units
from .layout import SCOPE_NOTES, Block, module_tree_block, op_block, plan_counts_tokens
from .schema import Report

Row = tuple[str, str, str, str]  # label, value, provenance, note
View = Callable[["Report"], tuple[list[Row], list[str]]]  # a verb's rows and its warning lines


def title(report: Report) -> str:
    model = report.get("model") or {}
    name = model.get("name")
    shown = model.get("display_name")
    label = f"{name} — {shown}" if shown and shown != name else name
    return f"mlfootprint {report.verb}" + (f" · {label}" if label else "")


def workload_line(report: Report) -> str:
    """'train · bf16-mixed · batch 8 × 4,096 tokens · 8 × h100-sxm (tp=1 pp=1 dp=8 zero=1)'."""
    wl = report.get("workload") or {}
    if not wl:
        return ""
    defaults = set(wl.get("defaults") or [])
    parts = [str(wl.get("mode", ""))]
    precision = str(wl.get("precision", ""))
    parts.append(precision + (" (default)" if "precision" in defaults and wl.get("mode") == "train" else "")
                 + (" with FP8 weights" if wl.get("fp8_weights") else ""))
    unit = (report.get("flops") or {}).get("token_unit", "tokens")
    batch = wl.get("batch")
    seq = wl.get("seq")
    parts.append(f"batch {batch:,} × {seq:,} tokens" if seq and unit == "tokens" else f"batch {batch:,}")
    if wl.get("micro_batch") and wl.get("micro_batch") != batch:
        parts[-1] += f" (micro-batch {wl['micro_batch']})"
    hw = wl.get("hardware")
    if hw:
        devices = wl.get("devices") or wl.get("dp", 1) * wl.get("tp", 1) * wl.get("pp", 1)
        layout = (report.get("time") or {}).get("layout") or _memory_layout((report.get("memory") or {}).get("layout"))
        device = f"{devices:,} × {hw}" + (" (assumed)" if "hardware" in defaults else "")
        parts.append(device + (f" ({_short_layout(layout)})" if devices > 1 and layout else ""))
    elif wl.get("device_memory"):
        parts.append(f"{units.gb(wl['device_memory'])} device")
    for key, label in (("lora_rank", "LoRA rank {}"), ("quant", "{} weights")):
        value = wl.get(key)
        if value not in (None, "none"):
            parts.append(label.format(value))
    if wl.get("tokens"):
        parts.append(f"{units.si(wl['tokens'])} tokens to train")
    return " · ".join(p for p in parts if p)


def _memory_layout(lay: Any) -> str:
    """The memory section's layout as the time section labels it ('tp=1 pp=2 dp=4 zero=1'), '' without one."""
    if not isinstance(lay, dict) or not all(k in lay for k in ("tp", "pp", "dp", "zero")):
        return ""
    pp = f"pp={lay['pp']}" + (f" vp={lay['vp']}" if (lay.get("vp") or 1) > 1 else "")
    cp = f" cp={lay['cp']}" if (lay.get("cp") or 1) > 1 else ""
    ep = f" ep={lay['ep']}" if (lay.get("ep") or 1) > 1 else ""
    return (f"tp={lay['tp']} {pp}{cp} dp={lay['dp']}{ep} zero={lay['zero']}{'++' if lay.get('zeropp') else ''}"
            + (f" recompute={lay['recompute']}" if lay.get("recompute") not in (None, "none") else ""))


def _short_layout(label: str) -> str:
    return " ".join(p for p in label.split() if not p.startswith(("micro-batch", "recompute=none")))


def _prov(report: Report, path: str) -> str:
    return report.provenance.get(path, "")


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------ the rows


def params_row(report: Report) -> list[Row]:
    p = report.get("params") or {}
    if not _num(p.get("total")):
        return []
    note = f"{p['total']:,}"
    if _num(p.get("active")) and p["active"] != p["total"]:
        note += f"; {units.params(p['active'])} active per token"
    if _num(p.get("trainable")) and p["trainable"] != p["total"]:
        note += f"; {units.params(p['trainable'])} trainable"
    return [("Parameters", units.params(p["total"]), _prov(report, "params.total"), note)]


def flops_rows(report: Report, full: bool = False) -> list[Row]:
    f = report.get("flops") or {}
    if not _num(f.get("model")):
        return []
    unit = "sample" if f.get("token_unit") == "samples" else "token"
    rows: list[Row] = []
    note = []
    if _num(f.get("per_token")):
        note.append(f"{units.si(f['per_token'], 'FLOP')} per {unit}")
    if _num(f.get("total")):
        note.append(f"{units.si(f['total'], 'FLOP')} in all")
    if full:
        for key, label in (("macs_forward", "Forward MACs"), ("macs_backward", "Backward MACs")):
            if _num(f.get(key)):
                rows.append((label, units.si(f[key], "MAC"), _prov(report, f"flops.{key}"), "1 MAC = 2 model FLOPs"))
        if f.get("backward"):
            rows.append(("Forward", units.si(f["forward"], "FLOP"), _prov(report, "flops.forward"), "model FLOPs"))
            rows.append(("Backward", units.si(f["backward"], "FLOP"), _prov(report, "flops.backward"), ""))
        if f.get("optimizer"):
            rows.append(("Optimizer", units.si(f["optimizer"], "FLOP"), _prov(report, "flops.optimizer"), ""))
        rows.append(("Other", units.si(f.get("other", 0), "FLOP"), _prov(report, "flops.other"),
                     "elementwise, norms, softmax, reductions"))
        if f.get("recompute"):
            rows.append(("Recomputation", units.si(f["recompute"], "FLOP"), _prov(report, "flops.recompute"),
                         "hardware FLOPs (HFU), not model FLOPs"))
        if f.get("attention"):
            attn = "the QKᵀ and A·V products, part of the model FLOPs (full square)"
            if _num(f.get("attention_causal_halved")) and f["attention_causal_halved"] != f["model"]:
                attn += f"; model FLOPs with the causal half only: {units.si(f['attention_causal_halved'], 'FLOP')}"
            rows.append(("Attention", units.si(f["attention"], "FLOP"), _prov(report, "flops.attention"), attn))
    if _num(f.get("decode")):  # --mode generate: the tokens decoded after the prompt
        rows.insert(0, ("Decode FLOPs", units.si(f["decode"], "FLOP"), _prov(report, "flops.decode"),
                        "forward FLOPs of the generated tokens after the prompt"))
    label = "Model FLOPs / prefill" if _num(f.get("decode")) else "Model FLOPs / step"
    rows.insert(0, (label, units.si(f["model"], "FLOP"), _prov(report, "flops.model"), "; ".join(note)))
    return rows


def memory_rows(report: Report, full: bool = False) -> list[Row]:
    m = report.get("memory") or {}
    if not _num(m.get("peak_bytes")):
        return []
    rows: list[Row] = []
    if full:
        for key, label in (("weights_bytes", "Weights"), ("gradients_bytes", "Gradients"),
                           ("optimizer_bytes", "Optimizer states"), ("activations_bytes", "Activations"),
                           ("kv_cache_bytes", "KV cache"), ("other_bytes", "Framework (other)")):
            if m.get(key):
                rows.append((label, units.gb(m[key]), _prov(report, f"memory.{key}"),
                             "each at its own maximum over the step" if key == "activations_bytes" else ""))
    value = units.gb(m["peak_bytes"])
    note = ""
    if _num(m.get("device_bytes")):
        value += f" of {units.gb(m['device_bytes'])}"
        free = 1 - m["peak_bytes"] / m["device_bytes"]
        note = f"fits ({free:.0%} free)" if m.get("fits") else "DOES NOT FIT"
    stage = m.get("pipeline_stage")
    note = "; ".join(p for p in ("per device", note, f"pipeline stage {stage}" if stage is not None else "") if p)
    rows.append(("Peak memory", value, _prov(report, "memory.peak_bytes"), note))
    if m.get("offload_activations"):  # the answer of --offload-activations: shown without --details too
        rows.append(("Activation offload", f"{units.gb(m.get('activations_offloaded_bytes') or 0)} saved",
                     _prov(report, "memory.activations_offloaded_bytes"),
                     f"{m['offload_activations']:g} of the blocks' saved activations; "
                     f"{units.gb(m.get('activations_host_bytes') or 0)} on the host, "
                     f"{units.gb(m.get('activation_offload_traffic_bytes') or 0)} over the host link per step"))
    for key, label in (("host_bytes", "Host memory"), ("nvme_bytes", "NVMe")):
        if full and m.get(key):
            rows.append((label, units.gb(m[key]), _prov(report, f"memory.{key}"), "offloaded"))
    if _num(m.get("max_batch")):
        rows.append(("Largest batch", f"{m['max_batch']:,}", _prov(report, "memory.max_batch"),
                     f"micro-batch {m.get('max_micro_batch')} per device, traced ({m.get('max_batch_traces', 0)} "
                     "traces)"))
    return rows


def time_rows(report: Report) -> list[Row]:
    t = report.get("time") or {}
    if not _num(t.get("step_s")):
        return []
    rows: list[Row] = []
    unit = "samples" if t.get("token_unit") == "samples" else "tokens"
    bottleneck = t.get("bottleneck") or ""
    # under --mode generate the step is the prompt's prefill; the whole call is the Generate row below
    prefill = _num(t.get("generate_s"))
    rows.append(("Prefill" if prefill else "Step time", units.seconds(t["step_s"]), _prov(report, "time.step_s"),
                 f"bottleneck: {bottleneck}" if bottleneck else ""))
    key = f"{unit}_per_s"
    if _num(t.get(key)):
        rows.append(("Prefill rate" if prefill else "Throughput", f"{units.si(t[key], digits=4)} {unit}/s",
                     _prov(report, f"time.{key}"), "prompt tokens" if prefill else ""))
    if _num(t.get("mfu")):
        note = f"HFU {100 * t['hfu']:.1f}%" if _num(t.get("hfu")) and abs(t["hfu"] - t["mfu"]) > 1e-9 else ""
        note = "; ".join(n for n in ("of the prefill" if prefill else "", note) if n)
        rows.append(("MFU", f"{100 * t['mfu']:.1f}%", _prov(report, "time.mfu"), note))
    if _num(t.get("decode_token_s")):
        rows.append(("Decode", f"{units.seconds(t['decode_token_s'])} / token", _prov(report, "time.decode_token_s"),
                     f"{units.si(t.get('decode_tokens_per_s', 0), digits=4)} tokens/s; {t.get('decode_bound', '')}"))
    if _num(t.get("generate_s")):
        rows.append(("Generate", units.seconds(t["generate_s"]), _prov(report, "time.generate_s"),
                     f"{t.get('gen_tokens')} new tokens per sequence, prefill included"))
    if _num(t.get("train_s")):
        rows.append(("Time to train", units.seconds(t["train_s"]), _prov(report, "time.train_s"),
                     f"{units.si(t['train_tokens'])} {unit}; {units.by_key('device_hours', t['device_hours'])}"))
    if _num(t.get("devices_for_deadline")):
        rows.append(("For the deadline", f"{t['devices_for_deadline']:,} devices",
                     _prov(report, "time.devices_for_deadline"),
                     f"{units.seconds(t['deadline_s'])} at MFU {100 * t['deadline_mfu']:.1f}%"))
    return rows


def footprint_rows(report: Report) -> list[Row]:
    fp = report.get("footprint") or {}
    if not _num(fp.get("energy_j")):
        return []
    scope = SCOPE_NOTES.get(fp.get("scope") or "", "")
    rows: list[Row] = [("Energy", units.energy(fp["energy_j"]), _prov(report, "footprint.energy_j"),
                        "; ".join(p for p in (scope, "facility, PUE included") if p))]
    co2_note = [scope] if scope else []
    if _num(fp.get("total_co2e_g")) and fp["total_co2e_g"] != fp.get("co2e_g"):
        co2_note.append(f"{units.mass_g(fp['total_co2e_g'])} with embodied")
    region = fp.get("region")
    if region:
        co2_note.append(f"grid: {region}")
    rows.append(("CO2e", units.mass_g(fp["co2e_g"]), _prov(report, "footprint.co2e_g"), "; ".join(co2_note)))
    if _num(fp.get("water_l")):
        rows.append(("Water", units.by_key("water_l", fp["water_l"]), _prov(report, "footprint.water_l"), scope))
    if _num(fp.get("cost_usd")):
        rows.append(("Cost", units.usd(fp["cost_usd"]), _prov(report, "footprint.cost_usd"), scope))
    return rows


def fit_lines(report: Report) -> list[str]:
    """When the workload does not fit: say so, and the changes that do."""
    m = report.get("memory") or {}
    if m.get("fits") is not False:
        return []
    lines = [f"✗ Does not fit: {units.gb(m['peak_bytes'])} per device of {units.gb(m.get('device_bytes'))}"
             + ("; no time, energy, CO2e or cost for a run that cannot happen (--even-if-oom gives them)."
                if report.get("time") is None and report.verb in ("analyze", "predict") else ".")]
    suggestions = m.get("suggestions") or []
    if suggestions:
        lines.append("  Changes that fit (checked by the memory model):")
        width = max(len(s["change"]) for s in suggestions)
        for s in suggestions:
            where = f"on {s['devices']:,} device{'s' if s['devices'] > 1 else ''}"
            bound = "at most " if s.get("at_most") else ""
            lines.append(f"    {s['change']:<{width}}  {bound}{units.gb(s['peak_bytes'])} per device {where}")
    else:
        lines.append("  None of the single changes tried fits (recomputation, ZeRO, micro-batch 1, bf16, "
                     "quantization, more devices, LoRA).")
    return lines


def fit_sentence(report: Report) -> str:
    """The fit verdict in one sentence, for HTML and LaTeX ('' when it fits or nothing was asked)."""
    m = report.get("memory") or {}
    if m.get("fits") is not False:
        return ""
    text = f"Does not fit: {units.gb(m['peak_bytes'])} per device of {units.gb(m.get('device_bytes'))}."
    if report.get("time") is None and report.verb in ("analyze", "predict"):
        text += " No time, energy, CO2e or cost is given for a run that cannot happen."
    suggestions = m.get("suggestions") or []
    if suggestions:
        text += " Changes that fit (checked by the memory model): " + "; ".join(
            f"{s['change']} ({'at most ' if s.get('at_most') else ''}{units.gb(s['peak_bytes'])} per device on "
            f"{s['devices']:,})" for s in suggestions) + "."
    return text


def key_assumptions(report: Report, n: int = 3) -> list[str]:
    """The first ``n`` of the assumptions the verb marked as moving the numbers most."""
    return [a for a in report.key_assumptions if not a.startswith("does not fit")][:n]


def footer(report: Report) -> str:
    n = len(report.assumptions)
    return f"(--details: every breakdown and all {n} assumption{'s' if n != 1 else ''}; the definitions: README 'Conventions')"


# ------------------------------------------------------------------------------------------ the views


def card_view(report: Report) -> tuple[list[Row], list[str]]:
    """analyze and predict: the efficiency card."""
    rows = params_row(report) + flops_rows(report) + memory_rows(report) + time_rows(report) + footprint_rows(report)
    return rows, fit_lines(report)


def count_view(report: Report) -> tuple[list[Row], list[str]]:
    return params_row(report) + flops_rows(report, full=True), []


def memory_view(report: Report) -> tuple[list[Row], list[str]]:
    return params_row(report) + memory_rows(report, full=True), fit_lines(report)


def plan_view(report: Report) -> tuple[list[Row], list[str]]:
    p = report.get("plan") or {}
    best = str(p.get("best", ""))
    head, _, rest = best.partition(" zero")
    rows: list[Row] = [
        ("Best layout", head, "", f"zero{rest}; the fastest of {p.get('considered', 0):,} layouts that fits"),
        ("Step time", units.seconds(p.get("step_s")), _prov(report, "plan.step_s"), f"bottleneck: {p.get('bottleneck')}"),
        ("Throughput", f"{units.si(p.get('tokens_per_s', 0), digits=4)} "
         f"{'tokens' if plan_counts_tokens(report) else 'samples'}/s", _prov(report, "plan.tokens_per_s"), ""),
        ("MFU", f"{100 * p.get('mfu', 0):.1f}%", _prov(report, "plan.mfu"), ""),
        ("Peak memory", f"{units.gb(p.get('peak_bytes'))} of {units.gb(p.get('device_bytes'))}",
         _prov(report, "plan.peak_bytes"), "per device"),
    ]
    return rows, []


def mfu_view(report: Report) -> tuple[list[Row], list[str]]:
    """mfu: the utilization a measured throughput means, and what it was computed from."""
    t = report.get("time") or {}
    if not _num(t.get("mfu")):
        return [], []
    devices = int(t.get("devices") or 1)
    on = f"on {devices:,} × {t.get('hardware')}" if t.get("hardware") else f"on {devices:,} device(s)"
    hfu = t.get("hfu")
    rows: list[Row] = [
        ("MFU", f"{100 * t['mfu']:.1f}%", _prov(report, "time.mfu"),
         f"HFU {100 * hfu:.1f}%" if _num(hfu) and abs(hfu - t["mfu"]) > 1e-9 else ""),
        ("Throughput", f"{units.si(t.get('tokens_per_s', 0), digits=4)} tokens/s", _prov(report, "time.tokens_per_s"),
         on),
        ("FLOPs per token", units.by_key("model_flops_per_token", t.get("model_flops_per_token")),
         _prov(report, "time.model_flops_per_token"), str(t.get("formula") or "")),
        ("Achieved", f"{units.by_key('achieved_per_device_flop_per_s', t.get('achieved_per_device_flop_per_s'))} "
         "per device", _prov(report, "time.achieved_per_device_flop_per_s"), ""),
        ("Peak", f"{units.by_key('peak_flop_per_s', t.get('peak_flop_per_s'))} per device",
         _prov(report, "time.peak_flop_per_s"), f"dense {t.get('peak_dtype')}" if t.get("peak_dtype") else ""),
    ]
    return rows, []


def _against(vs: dict[str, Any], key: str) -> str:
    """'predicted 0.49 GiB (+0.0%)' for a measured figure that has a prediction, '' without one."""
    row = vs.get(key) or {}
    if not _num(row.get("predicted")):
        return ""
    text = f"predicted {units.by_key(key, row['predicted'])}"
    return text + (f" ({100 * row['error_fraction']:+.1f}% vs measured)" if _num(row.get("error_fraction")) else "")


def bench_view(report: Report) -> tuple[list[Row], list[str]]:
    """bench: what the runs measured, each beside its prediction; what was not measured or predicted, and why."""
    m = report.get("measured") or {}
    if not _num(m.get("latency_median_s")):
        return [], []
    vs = m.get("vs_predicted") or {}
    unit = "samples" if m.get("token_unit") == "samples" else "tokens"
    runs = f"{m.get('runs', 0):,} runs after {m.get('warmup_runs', 0):,} warm-up on {m.get('device', 'this machine')}"
    spread = ""
    level = m.get("latency_median_ci_level")
    if _num(m.get("latency_median_ci_low_s")) and _num(m.get("latency_median_ci_high_s")) and \
            not (_num(level) and level < 0.5):  # one or two runs bound nothing
        spread = (f"{f'{100 * level:.0f}%' if _num(level) else '95%'} CI of the median "
                  f"{units.seconds(m['latency_median_ci_low_s'])}–{units.seconds(m['latency_median_ci_high_s'])}; ")
    rows: list[Row] = [("Latency (median)", units.seconds(m["latency_median_s"]), _prov(report, "measured.latency_median_s"),
                        "; ".join(p for p in (f"{spread}p90 {units.seconds(m.get('latency_p90_s'))}; {runs}",
                                              _against(vs, "step_s")) if p))]
    key = f"{unit}_per_s"
    if _num(m.get(key)):
        rows.append(("Throughput", f"{units.si(m[key], digits=4)} {unit}/s", _prov(report, f"measured.{key}"),
                     _against(vs, key)))
    for label, k in (("MFU", "mfu"), ("Peak memory", "peak_bytes"), ("Energy", "energy_j")):
        if _num(m.get(k)):
            value = f"{100 * m[k]:.1f}%" if k == "mfu" else units.energy(m[k]) if k == "energy_j" else units.gb(m[k])
            rows.append((label, value, _prov(report, f"measured.{k}"), _against(vs, k)))
    lines: list[str] = []
    for k, why in (m.get("unavailable") or {}).items():
        lines.append(f"Not measured: {k.removesuffix('_j').removesuffix('_s')}: {why}")
    unpredicted: dict[str, list[str]] = {}
    for k, row in vs.items():
        by = str(row.get("predicted_by") or "")
        if not _num(row.get("predicted")) and _num(row.get("measured")) and by:
            unpredicted.setdefault(by.removeprefix("not available (").removesuffix(")"), []).append(k)
    for why, keys in unpredicted.items():
        lines.append(f"Not predicted: {', '.join(keys)}: {why}")
    return rows, lines


def footprint_view(report: Report) -> tuple[list[Row], list[str]]:
    """footprint: energy, carbon, water and cost, and the device time or energy they came from."""
    fp = report.get("footprint") or {}
    rows: list[Row] = []
    inputs = fp.get("inputs") or {}
    for key, label in (("device_hours", "Device time"), ("energy_j", "Energy given")):
        given = inputs.get(key)
        if isinstance(given, dict) and _num(given.get("value")) and not (key == "energy_j" and "device_hours" in inputs):
            hw = (inputs.get("hardware") or {}).get("value") if isinstance(inputs.get("hardware"), dict) else None
            note = "; ".join(str(p) for p in (given.get("source"), f"on {hw}" if hw else None) if p)
            rows.append((label, units.by_key(key, given["value"]), _prov(report, f"footprint.inputs.{key}.value"),
                         note))
    return rows + footprint_rows(report), []


VIEWS: dict[str, View] = {
    "analyze": card_view, "predict": card_view, "count": count_view, "memory": memory_view, "plan": plan_view,
    "mfu": mfu_view, "bench": bench_view, "footprint": footprint_view,
}


def breakdown_blocks(report: Report, depth: int, macs: bool = False, by_op: bool = False) -> list[Block]:
    """count: FLOPs by module down to ``depth`` (repeated blocks collapsed), by operator when asked."""
    flops = report.get("flops") or {}
    out = []
    if flops.get("by_module"):
        block = module_tree_block(flops["by_module"], depth, macs)
        block.title = "FLOPs by module (--depth N for more levels)"
        out.append(block)
    if by_op and flops.get("by_op"):
        out.append(op_block(flops["by_op"], macs))
    return out
