"""Predicted vs published step time of published large-scale training runs, each with its own layout.

    python benchmarks/published_runs.py [--split calibration|validation|all] [--only ID[,ID…]] [--json FILE|-]
                                        [--api] [--data FILE]

Each run of ``benchmarks/data/published_runs.toml`` (model, hardware, devices, global batch, micro-batch, sequence,
TP/PP/VP/CP/EP/DP, ZeRO/FSDP, recomputation, precision; the published figure and its source) is predicted by
mlfootprint with the published layout. The published figure (a step time, tokens/s per device, or TFLOP/s per
device under the source's own FLOP formula) is turned into a step time with the definitions the data file states,
and the error is the predicted step time against it: ``predicted / published - 1`` (positive = pessimistic).

A layout feature the predictor does not take yet (virtual pipeline stages ``vp``, context parallelism ``cp``, an
FSDP sharding group, async TP, ...) is passed when ``mlfootprint.Workload`` has a field for it (torch.compile as
``fusion="compiled"``, a row's ``fusion``, ``attention``, ``grad_reduce``, ``grad_reduce_dtype`` and ``tp_backward`` as
given);
otherwise the row says "not modelled: vp" and is counted apart. Context parallelism without a ``cp`` field is
folded into data parallelism when the run has no pipeline (the same tokens and attention work per device), or
else (or when the batch does not split over dp x cp replicas) into cp-times shorter sequences over cp-times
more replicas: each replica keeps its micro-batches, so the pipeline bubble is the run's, and attention work per
device is under-counted (and so is a "counted" FLOP basis); the row says which.

Speed: the prediction follows ``mlfootprint.predict`` step by step (``verbs/predict.py``: trace, the memory model
via ``runnable``, ``predict_step`` on the layout), but traces each distinct workload once: rows that differ only
in their layout share a trace. ``--api`` runs every row through ``mlfootprint.predict`` itself instead (one trace
per row; the same step times, as tests/test_published_runs_data.py checks).

Nothing here asserts: the figures are for the record. Per split it prints the median and worst |error| and the
count within 15%, for all rows and for the rows whose layout the predictor models fully; per source its median
and worst |error| and its mean signed error (a source is one paper or table: one stack, often one machine).
Where a source prints the peak memory per device (a row's ``published_memory_gib``), the predicted peak is set
against it too: ``predicted / published - 1``, rows and median and worst |error| apart from the step times.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "published_runs.toml"
SPLITS = ("calibration", "validation")
KINDS = ("step_s", "tokens_per_s_per_device", "tflops_per_device")
FORMULAS = ("megatron-hfu", "fa2", "counted")
PRECISIONS = {"bf16": "bf16-mixed", "fp16": "fp16-mixed", "fp8": "fp8-mixed"}
# Workload field names other lanes may give these layout features (issue 12); the first one present is used.
FEATURE_FIELDS = {
    "vp": ("vp", "virtual_stages", "virtual_pipeline"),
    "cp": ("cp", "context_parallel"),
    "shard_group": ("shard_group",),
    "async-tp": ("tp_comm_overlap",),  # with tp_overlap = "async-tp" (FEATURE_VALUES)
    "comm-overlap": ("tp_comm_overlap",),
    "pp-comm-overlap": ("pp_comm_overlap",),
    "fp8-params": ("fp8_weights",),  # NeMo's fp8_params: FP8 primary weights, gathered in FP8
}
# Further fields a feature sets, with their values: PyTorch's async TP is TP-comm overlap of its own kind.
FEATURE_VALUES = {"async-tp": {"tp_overlap": "async-tp"}}
# Features the step model always applies (no field to set): pipeline stages split as Megatron-LM / Llama 3 do,
# the first and last stages one block short when the layers do not divide (workload.stage_layers).
ALWAYS_MODELLED = frozenset({"uneven-stages"})
# Workload fields the trace does not read (how one step is spread over devices): rows that differ only in these
# share one trace. Any other field, including ones added later, is part of the trace's key.
LAYOUT_FIELDS = frozenset({"dp", "tp", "pp", "ep", "devices", "micro_batch", "grad_accum", "zero", "zeropp", "offload",
                           "sequence_parallel", "given", "cp", "vp", "schedule", "cp_comm", "shard_group",
                           "tp_comm_overlap", "tp_overlap", "pp_comm_overlap", "fp8_weights", "grad_reduce", "grad_reduce_dtype", "etp",
                           "offload_activations", "tp_backward", "zero_impl"})


# --------------------------------------------------------------------------- the data


@dataclasses.dataclass
class Dataset:
    sources: dict[str, dict[str, Any]]
    models: dict[str, dict[str, Any]]
    runs: list[dict[str, Any]]
    path: Path

    def model_ref(self, run: dict[str, Any]) -> str:
        """What ``mlfootprint`` resolves: a catalog name, or the shipped config's folder (absolute)."""
        name = run["model"]
        if name in self.models:
            return str((self.path.parent / self.models[name]["path"]).resolve())
        return name


def load(path: Path = DATA) -> Dataset:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return Dataset(data.get("source", {}), data.get("model", {}), data.get("run", []), path)


# --------------------------------------------------------------------------- conversions


def formula_flops(formula: str, run: dict[str, Any], facts: dict[str, Any], params: int, counted: float) -> float:
    """FLOPs of one step (all devices) by the source's stated formula (see the data file's header)."""
    b, s = run["global_batch"], run["seq"]
    if formula == "megatron-hfu":  # Narayanan et al. 2021, eq. (3): 4 passes (forward, recomputed forward, backward)
        l, h, v = facts["layers"], facts["hidden"], facts["vocab"]
        return 96.0 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))
    if formula == "fa2":  # FlashAttention-2 §4.2: 6·seqlen·params + 12·layers·hidden·seqlen² per sequence
        return b * (6.0 * s * params + 12.0 * facts["layers"] * facts["hidden"] * s * s)
    if formula == "counted":
        return counted
    raise ValueError(f"unknown FLOP formula {formula!r}; known: {', '.join(FORMULAS)}")


def to_step_s(kind: str, value: float, run: dict[str, Any], flops: float | None) -> float:
    """A published figure as a step time (s) of the run's global batch."""
    if kind == "step_s":
        return float(value)
    if kind == "tokens_per_s_per_device":
        return run["global_batch"] * run["seq"] / (value * run["devices"])
    if kind == "tflops_per_device":
        return flops / (run["devices"] * value * 1e12)
    raise ValueError(f"unknown published kind {kind!r}; known: {', '.join(KINDS)}")


def from_step_s(kind: str, step_s: float, run: dict[str, Any], flops: float | None) -> float:
    """A step time as the published figure's kind (the inverse of :func:`to_step_s`)."""
    if kind == "step_s":
        return step_s
    if kind == "tokens_per_s_per_device":
        return run["global_batch"] * run["seq"] / (step_s * run["devices"])
    return flops / (run["devices"] * step_s * 1e12)


# --------------------------------------------------------------------------- the workload of a run


def workload_fields() -> set[str]:
    from mlfootprint.workload import Workload
    return {f.name for f in dataclasses.fields(Workload)}


def workload_for(run: dict[str, Any], accepted: set[str] | None = None) -> tuple[Any, list[str], list[str]]:
    """The Workload of a run's published layout, what of it is not modelled, and how it was approximated."""
    from mlfootprint.workload import Workload

    accepted = workload_fields() if accepted is None else accepted
    kw: dict[str, Any] = dict(batch=run["global_batch"], seq=run["seq"], mode="train",
                              precision=PRECISIONS[run["precision"]], hardware=run["hardware"], devices=run["devices"],
                              tp=run["tp"], pp=run["pp"], ep=run.get("ep", 1), micro_batch=run["micro_batch"],
                              zero=run.get("zero", 0), recompute=run.get("recompute", "none"))
    if "sequence_parallel" in run:
        kw["sequence_parallel"] = bool(run["sequence_parallel"])
    missing: list[str] = []
    notes: list[str] = []
    # the kernels the framework runs: eager PyTorch launches each elementwise op on its own ("none"), torch.compile
    # fuses them ("compiled"); absent, the predictor's default for the device (fused kernels on GPUs)
    if "fusion" in run or "torch.compile" in run.get("features", []):
        name = "fusion" if "fusion" in accepted else None
        if name:
            kw[name] = run.get("fusion", "compiled")
        else:
            missing.append(f"fusion {run.get('fusion', 'compiled')}")
    if run.get("attention", "sdpa") != "sdpa":  # the attention kernels of the framework's era (ATTENTION KERNEL)
        if "attention" in accepted:
            kw["attention"] = run["attention"]
        else:
            missing.append(f"attention {run['attention']}")
    if run.get("cp_comm", "ring") != "ring":  # the context-parallel exchange the framework runs (Llama 3: all-gather)
        if "cp_comm" in accepted:
            kw["cp_comm"] = run["cp_comm"]
        else:
            missing.append(f"cp_comm {run['cp_comm']}")
    if run.get("etp") is not None:  # MoE Parallel Folding's expert tensor parallelism
        if "etp" in accepted:
            kw["etp"] = run["etp"]
        else:
            missing.append("etp")
    if "grad_reduce_dtype" in run:  # the dtype the framework reduces the gradients in (its code or config)
        if "grad_reduce_dtype" in accepted:
            kw["grad_reduce_dtype"] = run["grad_reduce_dtype"]
        else:
            missing.append(f"grad_reduce_dtype {run['grad_reduce_dtype']}")
    if run.get("mixed_weights", "fp32") != "fp32":  # 16-bit working weights (WORKING WEIGHTS)
        if "mixed_weights" in accepted:
            kw["mixed_weights"] = run["mixed_weights"]
        else:
            missing.append(f"mixed_weights {run['mixed_weights']}")
    else:  # the data's default, autocast over fp32 weights (the predictor's own, auto, takes 16-bit under ZeRO-3)
        kw["mixed_weights"] = "fp32"
    if run.get("grad_reduce", "overlap") != "overlap":
        if "grad_reduce" in accepted:
            kw["grad_reduce"] = run["grad_reduce"]
        else:
            missing.append(f"grad_reduce {run['grad_reduce']}")
    if "tp_backward" in run:  # the framework's backward TP collectives (TP BACKWARD)
        if "tp_backward" in accepted:
            kw["tp_backward"] = run["tp_backward"]
        else:
            missing.append(f"tp_backward {run['tp_backward']}")

    def field_for(feature: str) -> str | None:
        return next((f for f in FEATURE_FIELDS.get(feature, ()) if f in accepted), None)

    if run.get("vp", 1) > 1:
        name = field_for("vp")
        if name:
            kw[name] = run["vp"]
        else:
            missing.append("vp")
    if run.get("shard_group"):
        name = field_for("shard_group")
        if name:
            kw[name] = run["shard_group"]
        else:
            missing.append("shard_group")
    for feature in run.get("features", []):
        if feature in ALWAYS_MODELLED or (feature == "torch.compile" and "fusion" in kw):
            continue
        name = field_for(feature)
        values = FEATURE_VALUES.get(feature, {})
        if name and all(k in accepted for k in values):
            kw[name] = True
            kw.update(values)
        else:
            missing.append(feature)
    cp = run.get("cp", 1)
    if cp > 1:
        name = field_for("cp")
        if name:
            kw[name] = cp
        else:
            missing.append("cp")
            replicas = run["dp"] * cp
            per = run["global_batch"] // replicas if run["global_batch"] % replicas == 0 else 0
            # Folding into dp divides each replica's micro-batches by cp: exact without a pipeline, but under
            # one it inflates the bubble (p-1)/m, so pipelined runs keep their micro-batches and shorten sequences.
            if run["pp"] == 1 and per and per % run["micro_batch"] == 0:
                notes.append(f"cp {cp} folded into data parallelism (dp {replicas})")
            else:
                kw["batch"], kw["seq"] = run["global_batch"] * cp, run["seq"] // cp
                notes.append(f"cp {cp} folded into {cp}x shorter sequences ({kw['seq']} tokens, batch {kw['batch']}): "
                             "attention work per device under-counted")
    return Workload(**kw), missing, notes


def trace_key(wl: Any, model_ref: str) -> str:
    values = {k: v for k, v in dataclasses.asdict(wl).items() if k not in LAYOUT_FIELDS}
    return json.dumps([model_ref, values], sort_keys=True, default=str)


# --------------------------------------------------------------------------- predicting


class Predictor:
    """``mlfootprint.predict``'s steps, with one trace per distinct traced workload."""

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}
        self._traces: dict[str, Any] = {}  # the global batch's trace and the last micro-batch's (rows share them)

    def spec(self, ref: str) -> Any:
        from mlfootprint.verbs.common import resolve_model
        if ref not in self._specs:
            self._specs[ref] = resolve_model(ref, [])
        return self._specs[ref]

    def _trace(self, ref: str, spec: Any, wl: Any, kind: str) -> Any:
        from mlfootprint.trace.run import trace
        key = trace_key(wl, ref)
        held = self._traces.get(kind)
        if held is None or held[0] != key:  # rows are sorted by key: one trace of each kind held at a time
            self._traces.pop(kind, None)
            self._traces[kind] = (key, trace(spec, wl, checkpoint_early_stop=False))
        return self._traces[kind][1]

    def predict(self, ref: str, wl: Any) -> dict[str, Any]:
        from mlfootprint.analysis.count.params import parameter_stats
        from mlfootprint.analysis.predict.efficiency import efficiency_for
        from mlfootprint.analysis.predict.prediction import predict_step, resolve_device
        from mlfootprint.analysis.predict.roofline import peak_for_precision
        from mlfootprint.analysis.predict.shape import parallel_from
        from mlfootprint.verbs.runnable import default_precision, traced_run

        dev = resolve_device(wl.hardware)
        wl, _ = default_precision(wl, dev)
        peak_for_precision(dev, wl.precision)
        efficiency_for(dev, None)
        parallel_from(wl)
        spec = self.spec(ref)
        first = wl

        def tracer(s: Any, w: Any) -> Any:
            return self._trace(ref, s, w, "global" if w is first else "micro")

        tr, run = traced_run(spec, wl, dev, checkpoint_early_stop=False, tracer=tracer)
        pred = predict_step(spec, run.workload, run.step_trace or tr, dev, layout=run.layout)
        return {"step_s": pred.step_s, "mfu": pred.mfu, "model_flops": pred.model_flops,
                "params": parameter_stats(tr).total, "facts": dict(spec.facts or {}),
                "peak_bytes": run.estimate.peak_bytes, "fits": run.fits, "layout": pred.layout.label(),
                "bottleneck": pred.bottleneck, "breakdown": dict(pred.breakdown),
                "communication": dict(pred.communication)}


def predict_via_api(ref: str, wl: Any) -> dict[str, Any]:
    """The same figures from ``mlfootprint.predict`` itself (one trace per row)."""
    import mlfootprint as mf
    from mlfootprint.verbs.common import resolve_model
    rep = mf.predict(ref, wl, even_if_oom=True)
    t, mem, params = rep.sections["time"], rep.sections["memory"], rep.sections["params"]
    return {"step_s": t["step_s"], "mfu": t.get("mfu"), "model_flops": t["mfu"] * t["step_s"] * t["devices"] * t["peak_flop_per_s"],
            "params": params["total"], "facts": dict(resolve_model(ref, []).facts or {}),
            "peak_bytes": mem.get("peak_bytes"), "fits": mem.get("fits"), "layout": "", "bottleneck": t.get("bottleneck", ""),
            "breakdown": {}}


def evaluate(ds: Dataset, run: dict[str, Any], predictor: Predictor | None, accepted: set[str] | None = None) -> dict[str, Any]:
    """One row: the prediction, the published figure as a step time, the error."""
    ref = ds.model_ref(run)
    out: dict[str, Any] = {"id": run["id"], "split": run["split"], "source": run["source"], "model": run["model"],
                           "hardware": run["hardware"], "devices": run["devices"]}
    try:
        wl, missing, notes = workload_for(run, accepted)
        out["not_modelled"], out["approximations"] = missing, notes
        p = predictor.predict(ref, wl) if predictor else predict_via_api(ref, wl)
    except Exception as exc:  # a row that cannot be predicted is reported, never dropped
        out["error"] = f"{type(exc).__name__}: {exc}"
        out.setdefault("not_modelled", [])
        return out
    pub = run["published"]
    facts = p["facts"]
    flops = None
    if pub["kind"] == "tflops_per_device":
        # the counted figure covers the workload as predicted; with cp folded into shorter sequences it is not the
        # run's own, which the row's approximation note says
        flops = formula_flops(pub.get("formula", "counted"), run, facts, p["params"], p["model_flops"])
    published_step = to_step_s(pub["kind"], pub["value"], run, flops)
    out.update(published_kind=pub["kind"], published=pub["value"], published_step_s=published_step,
               predicted=from_step_s(pub["kind"], p["step_s"], run, flops), predicted_step_s=p["step_s"],
               error=p["step_s"] / published_step - 1.0, mfu=p["mfu"], fits=p["fits"], peak_bytes=p["peak_bytes"],
               layout=p["layout"], bottleneck=p["bottleneck"], breakdown=p["breakdown"],
               communication=p.get("communication", {}))
    if "published_memory_gib" in run and p["peak_bytes"]:
        out["published_memory_gib"] = run["published_memory_gib"]
        out["memory_error"] = p["peak_bytes"] / 2**30 / run["published_memory_gib"] - 1.0
    return out


# --------------------------------------------------------------------------- summary and printing


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(group: list[dict[str, Any]]) -> dict[str, Any]:
        errs = [abs(r["error"]) for r in group]
        if not errs:
            return {"rows": 0}
        worst = max(group, key=lambda r: abs(r["error"]))
        return {"rows": len(errs), "median_abs_error": statistics.median(errs), "worst_abs_error": abs(worst["error"]),
                "worst_id": worst["id"], "within_15pct": sum(e <= 0.15 for e in errs),
                "mean_error": statistics.fmean(r["error"] for r in group)}

    out: dict[str, Any] = {}
    for split in SPLITS + ("all",):
        mine = [r for r in rows if split == "all" or r["split"] == split]
        done = [r for r in mine if "error" in r and not isinstance(r.get("error"), str)]
        out[split] = {"all": stats(done), "fully_modelled": stats([r for r in done if not r["not_modelled"]]),
                      "with_gaps": stats([r for r in done if r["not_modelled"]]),
                      "failed": [r["id"] for r in mine if isinstance(r.get("error"), str)]}
    # per source (each in one split): where the misses come from, e.g. one stack or one piece of hardware
    sources = sorted({r["source"] for r in rows if r.get("source")})
    out["by_source"] = {src: {"split": next(r["split"] for r in rows if r.get("source") == src),
                              **stats([r for r in rows if r.get("source") == src and "error" in r
                                       and not isinstance(r.get("error"), str)])} for src in sources}
    gaps: dict[str, int] = {}
    for r in rows:
        for g in r.get("not_modelled", []):
            gaps[g] = gaps.get(g, 0) + 1
    out["not_modelled_counts"] = gaps
    # the peak memory, where the source prints it
    mem = [r for r in rows if "memory_error" in r]
    out["memory"] = {"rows": len(mem)}
    if mem:
        worst = max(mem, key=lambda r: abs(r["memory_error"]))
        out["memory"].update(median_abs_error=statistics.median(abs(r["memory_error"]) for r in mem),
                             worst_abs_error=abs(worst["memory_error"]), worst_id=worst["id"],
                             mean_error=statistics.fmean(r["memory_error"] for r in mem))
    return out


_SHORT = {"step_s": "s", "tokens_per_s_per_device": "tok/s/dev", "tflops_per_device": "TF/s/dev"}


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any], out: Any = sys.stdout) -> None:
    w = max([len(r["id"]) for r in rows] + [4])
    print(f"{'run':<{w}}  {'split':<5}  {'published':>18}  {'predicted':>18}  {'pub step s':>10}  {'pred step s':>11}  "
          f"{'error':>7}  not modelled", file=out)
    for r in rows:
        if isinstance(r.get("error"), str):
            print(f"{r['id']:<{w}}  {r['split'][:5]:<5}  failed: {r['error']}", file=out)
            continue
        unit = _SHORT[r["published_kind"]]
        gaps = ", ".join(r["not_modelled"]) or "-"
        if r.get("fits") is False:
            gaps += " (does not fit)"
        print(f"{r['id']:<{w}}  {r['split'][:5]:<5}  {_fmt(r['published']) + ' ' + unit:>18}  "
              f"{_fmt(r['predicted']) + ' ' + unit:>18}  {r['published_step_s']:>10.4g}  {r['predicted_step_s']:>11.4g}  "
              f"{r['error'] * 100:>+6.1f}%  {gaps}", file=out)
    print(file=out)
    print("error = predicted step / published step - 1 (positive: slower than published). |error| over rows:", file=out)
    for split in SPLITS + ("all",):
        s = summary[split]
        for label in ("all", "fully_modelled", "with_gaps"):
            g = s[label]
            if not g.get("rows"):
                continue
            print(f"  {split:<11} {label.replace('_', ' '):<15} n={g['rows']:>3}  median {g['median_abs_error'] * 100:5.1f}%  "
                  f"worst {g['worst_abs_error'] * 100:5.1f}% ({g['worst_id']})  within 15%: {g['within_15pct']}/{g['rows']}  "
                  f"mean signed {g['mean_error'] * 100:+5.1f}%", file=out)
        if s["failed"]:
            print(f"  {split:<11} failed: {', '.join(s['failed'])}", file=out)
    print_by_source(summary, out)
    print_memory(rows, summary, out)
    if summary["not_modelled_counts"]:
        print("not modelled (rows): " + ", ".join(f"{k} {v}" for k, v in sorted(summary["not_modelled_counts"].items())),
              file=out)


def print_by_source(summary: dict[str, Any], out: Any = sys.stdout) -> None:
    """One line per source: its rows' median and worst |error| and mean signed error."""
    ran = {src: g for src, g in summary.get("by_source", {}).items() if g.get("rows")}
    if ran:
        print("by source (|error|, mean signed):", file=out)
    for src, g in ran.items():
        print(f"  {src:<22} {g['split'][:5]:<5} n={g['rows']:>3}  median {g['median_abs_error'] * 100:5.1f}%  "
              f"worst {g['worst_abs_error'] * 100:5.1f}%  mean signed {g['mean_error'] * 100:+5.1f}%", file=out)


def print_memory(rows: list[dict[str, Any]], summary: dict[str, Any], out: Any = sys.stdout) -> None:
    """The predicted peak memory per device against the one the source prints (rows that carry it)."""
    mem = [r for r in rows if "memory_error" in r]
    if not mem:
        return
    w = max(len(r["id"]) for r in mem)
    print("peak memory per device, where the source prints it (predicted / published - 1):", file=out)
    for r in mem:
        print(f"  {r['id']:<{w}}  published {r['published_memory_gib']:6.1f} GiB  predicted "
              f"{r['peak_bytes'] / 2**30:6.1f} GiB  {r['memory_error'] * 100:+6.1f}%", file=out)
    g = summary["memory"]
    print(f"  memory n={g['rows']:>3}  median {g['median_abs_error'] * 100:5.1f}%  worst {g['worst_abs_error'] * 100:5.1f}% "
          f"({g['worst_id']})  mean signed {g['mean_error'] * 100:+5.1f}%", file=out)


def select(ds: Dataset, split: str, only: list[str]) -> list[dict[str, Any]]:
    runs = [r for r in ds.runs if split == "all" or r["split"] == split]
    if only:
        ids = {r["id"] for r in ds.runs}
        unknown = [i for i in only if i not in ids]
        if unknown:
            raise SystemExit(f"published_runs: unknown run id {unknown[0]!r}; the ids are in {ds.path}")
        runs = [r for r in runs if r["id"] in only]
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=SPLITS + ("all",), default="all", help="which runs (default: all)")
    ap.add_argument("--only", action="append", default=[], metavar="ID",
                    help="only this run (repeatable, or comma-separated)")
    ap.add_argument("--json", metavar="FILE", help="also write rows and summary as JSON to FILE ('-' for stdout only)")
    ap.add_argument("--api", action="store_true", help="run each row through mlfootprint.predict (one trace per row; slower)")
    ap.add_argument("--data", type=Path, default=DATA, help=f"the runs file (default: {DATA.relative_to(HERE.parent)})")
    args = ap.parse_args(argv)

    ds = load(args.data)
    only = [i for chunk in args.only for i in chunk.split(",") if i]
    runs = select(ds, args.split, only)
    accepted = workload_fields()
    predictor = None if args.api else Predictor()
    # rows that share a traced workload run one after another, so one trace is held at a time
    order = sorted(range(len(runs)), key=lambda i: trace_key(workload_for(runs[i], accepted)[0], ds.model_ref(runs[i])))
    rows: list[dict[str, Any] | None] = [None] * len(runs)
    start = time.perf_counter()
    for n, i in enumerate(order, 1):
        t0 = time.perf_counter()
        rows[i] = evaluate(ds, runs[i], predictor, accepted)
        print(f"[{n}/{len(runs)}] {runs[i]['id']}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    done = [r for r in rows if r is not None]
    summary = summarize(done)
    result = {"schema": "mlfootprint.published_runs/1", "data": str(ds.path), "split": args.split,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "elapsed_s": time.perf_counter() - start, "via": "api" if args.api else "shared traces",
              "rows": done, "summary": summary}
    if args.json == "-":
        json.dump(result, sys.stdout, indent=1, default=str)
        print()
        return 0
    print_table(done, summary)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
