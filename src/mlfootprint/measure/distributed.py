"""Tracking across ranks: per-rank records, files written as a run goes, and one report from rank 0.

Every rank of a ``torchrun`` job (or any ``torch.distributed`` job) tracks its
own steps. The data of one rank is a *rank record* (a JSON-ready dict):

``rank``, ``world_size``, ``host``, ``pid``, ``device``, ``status``
    who, where, and how the rank ended: ``complete``, ``failed: <error>``,
    ``terminated (SIGTERM)``, or ``partial`` (read back from a file that has
    no final record: the process died without a word);
``series``
    one row per optimizer step: ``step``, ``step_s`` (wall time since the
    previous step), ``tokens`` (this rank's, summed over its micro-batches),
    ``micro_steps``, ``t_s`` (end of the step, seconds since tracking started);
``flops``, ``peak``, ``memory``, ``energy``, ``notes``
    FLOPs per token or per micro-batch (and where they came from), the device
    peak used for MFU, the memory and energy figures, and what went wrong.

How rank 0 gets everyone's record:

1. **during the run** each rank appends its steps to its own JSON-lines file
   ``<report>.ranks/rank<N>.jsonl`` (buffered: every ``flush_interval_s``
   seconds), and at the end its final record. A rank that dies leaves a file
   with the steps it had flushed; a rank stopped by SIGTERM (what torchrun
   sends the survivors when one rank fails) flushes before it goes.
2. **at the end** each rank also puts its final record in the job's
   ``torch.distributed`` key-value store (no collective operation, so a dead
   or hung rank cannot block the others); rank 0 waits up to
   ``gather_timeout_s`` for each, then falls back to that rank's file, and
   marks a rank it cannot find as ``missing``.

Rank 0 then writes one report with per-rank figures (``measured.by_rank``)
and global ones (``mlfootprint.verbs.track``). ``gather_rank_records`` reads the same records from the files
alone, after any failure (``mlfootprint report run.json.ranks`` makes the report from them).

Global figures (synchronous data parallelism: the slowest rank sets the pace):

* ``step_s``: the median over steps of the slowest rank's time for that step;
* ``tokens_per_s``: all ranks' tokens over the slowest rank's elapsed time
  (warm-up steps excluded from both);
* ``mfu``: all ranks' model FLOPs over (that elapsed time × the sum of the
  ranks' peak FLOP/s);
* ``straggler_ratio``: the slowest rank's median step time over the fastest's.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.validate import is_figure
from ..core.files import write_text
from . import stats
from .bounded import call_bounded

logger = logging.getLogger("mlfootprint.track")

STORE_PREFIX = "mlfootprint/track"


# --------------------------------------------------------------------------- who am I


def rank_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank): from torch.distributed when initialized, else torchrun's environment."""
    try:
        import torch.distributed as dist  # here: merging rank files (`mlfootprint report`) needs no torch

        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
            return rank, world, int(os.environ.get("LOCAL_RANK", rank))
    except Exception:  # noqa: BLE001 - a broken distributed setup is not ours to report here
        pass
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return 0, 1, 0
    return rank, max(world, 1), local


def host_name() -> str:
    try:
        return socket.gethostname()
    except OSError:  # pragma: no cover
        return "?"


def default_store() -> Any | None:
    """The job's key-value store (the one torch.distributed was initialized with), or None."""
    try:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        from torch.distributed import distributed_c10d as c10d

        return c10d._get_default_store()
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- per-rank files


def ranks_dir(report_path: str | os.PathLike[str]) -> Path:
    """Where the per-rank files of a report go: ``run.json`` → ``run.json.ranks/``."""
    p = Path(report_path)
    return p.with_name(p.name + ".ranks")


def rank_file(directory: str | os.PathLike[str], rank: int) -> Path:
    return Path(directory) / f"rank{rank}.jsonl"


class RankLog:
    """A rank's JSON-lines file, appended to as the run goes. Never raises: a write error is logged once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.failed: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A fresh run replaces an old file of the same rank.
            with open(self.path, "w", encoding="utf-8"):
                pass
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = f"{type(exc).__name__}: {exc}"
            logger.warning("mlfootprint.track: cannot write the per-rank file %s (%s); tracking goes on, "
                           "the data stay in memory", self.path, self.failed)

    def write(self, *objs: dict[str, Any]) -> None:
        if self.failed is not None or not objs:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(o, default=_json_default) + "\n" for o in objs))
                fh.flush()
        except OSError as exc:
            self._fail(exc)


def _json_default(obj: Any) -> Any:
    try:
        value = float(obj)  # 0-d tensors, numpy scalars
    except (TypeError, ValueError):
        return str(obj)
    return value if math.isfinite(value) else None


def finite_numbers(obj: Any, path: str = "") -> tuple[Any, list[str]]:
    """A copy of `obj` (dicts, lists, numbers) with every NaN or infinity replaced by None, and the paths where
    that happened: reports must parse with a strict JSON parser, and a missing figure is null, never NaN."""
    bad: list[str] = []

    def clean(node: Any, where: str) -> Any:
        if isinstance(node, float) and not math.isfinite(node):
            bad.append(f"{where or 'value'} ({node})")
            return None
        if isinstance(node, dict):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node

    return clean(obj, path), bad


def read_rank_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The rank record in a per-rank file: its final record, or one rebuilt from its header and steps."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # unreadable, or not text: no record
        return None
    header: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if kind == "header":
            header = obj
        elif kind == "steps":
            rows.extend(obj.get("rows", []))
        elif kind == "info":
            info.update({k: v for k, v in obj.items() if k != "kind"})
        elif kind == "final":
            final = obj.get("record")
    if final is not None:
        return final
    if header is None:
        return None
    record = dict(header.get("record", {}))
    record.update(info)
    record["series"] = rows
    record["status"] = "partial"
    record.setdefault("notes", []).append(
        f"rebuilt from {p.name}: the rank wrote no final record (it stopped without warning); "
        f"steps after the last flush are lost")
    return record


# --------------------------------------------------------------------------- gathering


def store_key(serial: int, rank: int) -> str:
    return f"{STORE_PREFIX}/{serial}/rank{rank}"


def publish(store: Any, serial: int, record: dict[str, Any], timeout_s: float = 10.0) -> bool:
    """Put this rank's final record in the job's store (no collective; never raises). The store is served by
    rank 0: if that rank died, the call may block; it is abandoned after `timeout_s` (the record is in the file)."""
    if store is None:
        return False
    try:
        key, value = store_key(serial, int(record["rank"])), json.dumps(record, default=_json_default)
        call_bounded(lambda: store.set(key, value), timeout_s, "the job's store")
        return True
    except Exception as exc:  # noqa: BLE001 - CallTimeout included
        logger.warning("mlfootprint.track: could not publish rank %s's record to the job's store (%s); "
                       "rank 0 will read its file instead", record.get("rank"), exc)
        return False


def collect(world: int, own: dict[str, Any], *, store: Any, serial: int, directory: Path | None,
            timeout_s: float, clock: Any = time.monotonic) -> list[dict[str, Any]]:
    """Rank 0: every rank's record, waiting up to ``timeout_s`` in all; files for ranks that did not answer."""
    records: dict[int, dict[str, Any]] = {int(own["rank"]): own}
    waiting = [r for r in range(world) if r not in records]
    deadline = clock() + max(0.0, timeout_s)

    def bounded(fn: Any) -> Any:
        # A store whose server is gone or hung must not hold rank 0 past the deadline.
        return call_bounded(fn, max(0.1, min(5.0, deadline - clock())), "the job's store")

    while waiting:
        for r in list(waiting):
            rec = None
            if store is not None:
                try:
                    key, st = store_key(serial, r), store
                    if bounded(lambda st=st, key=key: st.check([key])):
                        rec = json.loads(bounded(lambda st=st, key=key: st.get(key)))
                        if not isinstance(rec, dict):
                            raise ValueError(f"rank {r}'s record in the store is not a record")
                        try:
                            bounded(lambda st=st, key=key: st.delete_key(key))
                        except Exception:  # noqa: BLE001
                            pass
                except Exception as exc:  # noqa: BLE001 - a store that broke or hung: fall back to files
                    logger.warning("mlfootprint.track: reading rank %d from the job's store failed (%s)", r, exc)
                    store = None
            if rec is None and store is None and directory is not None:
                from_file = read_rank_file(rank_file(directory, r))
                if from_file is not None and from_file.get("status") != "partial":
                    rec = from_file
            if rec is not None:
                records[r] = rec
                waiting.remove(r)
        if not waiting or clock() >= deadline:
            break
        time.sleep(0.05)
    for r in waiting:
        rec = read_rank_file(rank_file(directory, r)) if directory is not None else None
        if rec is None:
            rec = {"rank": r, "world_size": world, "status": "missing", "series": [],
                   "notes": [f"rank {r} sent no record within {timeout_s:g} s and left no file"]}
        else:
            rec.setdefault("notes", []).append(f"rank {r} sent no final record within {timeout_s:g} s; "
                                               "figures come from its file")
        records[r] = rec
    return [records[r] for r in sorted(records)]


# --------------------------------------------------------------------------- figures


def _counted(series: Sequence[dict[str, Any]], warmup: int) -> tuple[list[dict[str, Any]], int]:
    """Steps that count for rates: all but the first ``warmup`` (all of them when there are no more)."""
    if len(series) > warmup:
        return list(series[warmup:]), warmup
    return list(series), 0


def step_flops(rec: dict[str, Any], row: dict[str, Any], kind: str = "model") -> float | None:
    """FLOPs of one step: per token × tokens, else per micro-batch × micro-batches."""
    f = rec.get("flops") or {}
    per_token = f.get(f"{kind}_flops_per_token")
    tokens = row.get("tokens")
    if per_token is not None and tokens is not None:
        return float(per_token) * float(tokens)
    per_micro = f.get(f"{kind}_flops_per_micro_step")
    if per_micro is not None:
        return float(per_micro) * int(row.get("micro_steps") or 1)
    return None


def rank_summary(rec: dict[str, Any], warmup: int) -> dict[str, Any]:
    """One rank's figures."""
    series = rec.get("series") or []
    out: dict[str, Any] = {"status": rec.get("status", "?"), "host": rec.get("host"), "steps": len(series)}
    tokens_all = [r.get("tokens") for r in series]
    out["tokens"] = sum(float(t) for t in tokens_all) if series and all(t is not None for t in tokens_all) else None
    out["micro_steps"] = sum(int(r.get("micro_steps") or 0) for r in series)
    counted, excluded = _counted(series, warmup)
    out["warmup_steps_excluded"] = excluded
    times = [float(r["step_s"]) for r in counted]
    if times:
        out.update({k.replace("step_median_s", "step_s"): v for k, v in _step_stats(times).items()})
        elapsed = sum(times)
        out["counted_elapsed_s"] = elapsed
        toks = [r.get("tokens") for r in counted]
        if all(t is not None for t in toks) and elapsed > 0:
            out["tokens_per_s"] = sum(float(t) for t in toks) / elapsed
        peak = (rec.get("peak") or {}).get("peak_flop_per_s")
        for kind, key in (("model", "mfu"), ("hardware", "hfu")):
            fl = [step_flops(rec, r, kind) for r in counted]
            if fl and all(v is not None for v in fl):
                out[f"{kind}_flops"] = sum(fl)  # type: ignore[arg-type]
                if peak and elapsed > 0:
                    out[key] = sum(fl) / (elapsed * float(peak))  # type: ignore[arg-type]
    mem = rec.get("memory") or {}
    if mem.get("peak_bytes") is not None:
        out["peak_bytes"] = mem["peak_bytes"]
    en = rec.get("energy") or {}
    if en.get("energy_j") is not None:
        out["energy_j"] = en["energy_j"]
    if en.get("provenance"):
        out["energy_provenance"] = en["provenance"]
    return out


def _step_stats(times: Sequence[float]) -> dict[str, Any]:
    s = stats.summarize(times, "step")
    keep = ("step_median_s", "step_mean_s", "step_p90_s", "step_p99_s", "step_min_s", "step_max_s")
    return {k: s[k] for k in keep}


def step_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-step series with MFU/HFU per step where FLOPs and a peak are known."""
    peak = (rec.get("peak") or {}).get("peak_flop_per_s")
    rows = []
    for r in rec.get("series") or []:
        row = dict(r)
        if peak and r.get("step_s"):
            for kind, key in (("model", "mfu"), ("hardware", "hfu")):
                fl = step_flops(rec, r, kind)
                if fl is not None:
                    row[key] = fl / (float(r["step_s"]) * float(peak))
        if r.get("tokens") is not None and r.get("step_s"):
            row["tokens_per_s"] = float(r["tokens"]) / float(r["step_s"])
        rows.append(row)
    return rows


def global_figures(records: Sequence[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Figures of the whole job from every rank's record (see the module docstring)."""
    out: dict[str, Any] = {}
    live = [r for r in records if r.get("series")]
    out["ranks"] = len(records)
    out["ranks_reporting"] = len(live)
    out["steps"] = max((len(r["series"]) for r in live), default=0)
    tokens = [rank_summary(r, warmup).get("tokens") for r in live]
    out["tokens"] = sum(tokens) if tokens and all(t is not None for t in tokens) else None
    if not live:
        return out
    n_common = min(len(r["series"]) for r in live)
    per_step = [max(float(r["series"][i]["step_s"]) for r in live) for i in range(n_common)]
    counted_steps, excluded = (per_step[warmup:], warmup) if n_common > warmup else (per_step, 0)
    if counted_steps:
        out.update({k.replace("step_median_s", "step_s"): v for k, v in _step_stats(counted_steps).items()})
    out["warmup_steps_excluded"] = excluded
    sums = [rank_summary(r, warmup) for r in live]
    elapsed = max((s.get("counted_elapsed_s") or 0.0) for s in sums)
    out["counted_elapsed_s"] = elapsed
    toks = [s.get("tokens_per_s") for s in sums]
    if elapsed > 0 and all(t is not None for t in toks):
        out["tokens_per_s"] = sum(s["tokens_per_s"] * s["counted_elapsed_s"] for s in sums) / elapsed
    peaks = [(r.get("peak") or {}).get("peak_flop_per_s") for r in live]
    for kind, key in (("model", "mfu"), ("hardware", "hfu")):
        fl = [s.get(f"{kind}_flops") for s in sums]
        if elapsed > 0 and all(f is not None for f in fl) and all(peaks):
            out[key] = sum(fl) / (elapsed * sum(float(p) for p in peaks))  # type: ignore[arg-type,misc]
    medians = [(s.get("step_s"), int(r["rank"])) for s, r in zip(sums, live) if s.get("step_s")]
    if len(medians) > 1:
        slow = max(medians)
        fast = min(medians)
        out["slowest_rank"] = slow[1]
        out["fastest_rank"] = fast[1]
        out["straggler_ratio"] = slow[0] / fast[0] if fast[0] > 0 else None
    mems = [s.get("peak_bytes") for s in sums if s.get("peak_bytes") is not None]
    if mems:
        out["peak_bytes"] = max(mems)  # per device: the largest
    energies = [(r.get("energy") or {}) for r in records]
    if energies and all(e.get("energy_j") is not None for e in energies):
        out["energy_j"] = sum(float(e["energy_j"]) for e in energies)
    return out


# --------------------------------------------------------------------------- merging files


def rank_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Per-rank files named by the paths: files, ``.ranks`` folders, or reports whose ``.ranks`` folder exists."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("rank*.jsonl")))
        elif p.is_file() and p.suffix == ".jsonl":
            out.append(p)
        elif ranks_dir(p).is_dir():
            out.extend(sorted(ranks_dir(p).glob("rank*.jsonl")))
        else:
            raise UserError(f"{p} is not a per-rank file (rank<N>.jsonl), nor a folder of them, "
                            "nor a report with a .ranks folder next to it")
    if not out:
        raise UserError("no per-rank files (rank<N>.jsonl) found in " + ", ".join(str(p) for p in paths))
    return out


# More ranks than any job has run (the largest published runs are tens of thousands of devices): a world size
# beyond it is a damaged file, and would make one "missing" record per absent rank.
MAX_WORLD_SIZE = 1 << 20
_ROW_NUMBERS = ("step_s", "tokens", "micro_steps", "samples")
_SECTION_NUMBERS = {"flops": None, "peak": ("peak_flop_per_s",), "memory": ("peak_bytes",), "energy": ("energy_j",)}


def _checked_record(rec: Any, path: Path) -> dict[str, Any]:
    """A rank record whose fields the report reads have the types it reads them as; a UserError naming the file
    and the field otherwise (a file written by hand, or damaged)."""
    def bad(where: str, value: Any, want: str) -> UserError:
        return UserError(f"{path}: {where} is {value!r:.40}, not {want}; the file is damaged (remove it, or "
                         "report the other ranks' files)")

    def number(value: Any) -> bool:
        return value is None or is_figure(value)

    if not isinstance(rec, dict):
        raise bad("the record", rec, "an object")
    for key, low in (("rank", 0), ("world_size", 1)):
        v = rec.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low or v > MAX_WORLD_SIZE):
            raise bad(key, v, f"a whole number from {low} to {MAX_WORLD_SIZE:,}")
    series = rec.get("series")
    if series is not None and not isinstance(series, list):
        raise bad("series", series, "a list of steps")
    for i, row in enumerate(series or []):
        if not isinstance(row, dict):
            raise bad(f"series[{i}]", row, "an object")
        for key in _ROW_NUMBERS:  # step_s is read from every step; the others may be absent (null)
            if not number(row.get(key)) or (key == "step_s" and row.get(key) is None):
                raise bad(f"series[{i}].{key}", row.get(key), "a finite number")
    for section, keys in _SECTION_NUMBERS.items():
        part = rec.get(section)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise bad(section, part, "an object")
        for key in keys or [k for k in part if k.endswith(("_per_token", "_per_micro_step"))]:
            if not number(part.get(key)):
                raise bad(f"{section}.{key}", part.get(key), "a finite number")
    return rec


def gather_rank_records(paths: Iterable[str | os.PathLike[str]], warmup: int | None = None
                        ) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """Every rank's record from per-rank files (ranks without a file marked missing), the warm-up steps and
    the job's model and workload: what rank 0 would have gathered, recoverable after any failure."""
    records = []
    files = rank_files(paths)
    skipped: list[Path] = []
    for f in files:
        rec = read_rank_file(f)
        if rec is None:
            skipped.append(f)
            continue
        records.append(_checked_record(rec, f))
    if not records:
        raise UserError(f"the per-rank files hold no usable records (empty or unreadable: "
                        f"{', '.join(str(f) for f in skipped[:3])}{', …' if len(skipped) > 3 else ''})")
    for f in skipped:  # the job is reported from the others; these are named
        logger.warning("mlfootprint: %s holds no usable record; skipped", f)
    world = max(int(r.get("world_size") or 1) for r in records)
    seen = {int(r.get("rank", 0)) for r in records}
    for r in range(world):
        if r not in seen:
            records.append({"rank": r, "world_size": world, "status": "missing", "series": [],
                            "notes": [f"no file for rank {r}"]})
    if warmup is None:
        warmup = int(records[0].get("warmup_steps", 1) or 0)
    meta = {"model": records[0].get("model"), "workload": records[0].get("workload")}
    return records, warmup, meta


def write_report(rep: Any, path: str | os.PathLike[str]) -> None:
    """Write a report to a path the user named (the safe-file rules: a regular file mlfootprint wrote, or new)."""
    write_text(path, rep.to_json() + "\n")
