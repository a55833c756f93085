"""Tracking under torch.distributed: a real 2-process gloo DDP training on the CPU launched by torchrun, the
aggregated report from rank 0, a rank that dies mid-run, and the aggregation rules by hand on synthetic records."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from mlfootprint.core.errors import UserError
from mlfootprint.measure.distributed import RankLog, global_figures, rank_file, read_rank_file
from mlfootprint.verbs.track import merge_rank_files
from mlfootprint.verbs.track import track_report as build_report

WORKER = textwrap.dedent('''
    import contextlib, os, sys
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    import mlfootprint as mf

    out, mode = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    accum, steps = 2, 5
    mb = 4 + 2 * rank  # rank 0: 4 samples per micro-batch, rank 1: 6
    with mf.track(model=ddp, grad_accum=accum, hardware="a100-80gb", report=out, flush_interval_s=0,
                  gather_timeout_s=30, energy=False) as t:
        for step in range(steps):
            for k in range(accum):
                ctx = ddp.no_sync() if k < accum - 1 else contextlib.nullcontext()
                with ctx:
                    (ddp(torch.randn(mb, 8)).pow(2).mean() / accum).backward()
                t.step(tokens=mb)
            if mode == "die" and rank == 1 and step == 2:
                os._exit(3)  # rank 1 dies after 3 optimizer steps, without a word
            opt.step()
            opt.zero_grad()
    dist.destroy_process_group()
''')


def _torchrun(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--monitor-interval", "0.1", str(script), str(out), mode],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    return proc, out


def test_torchrun_two_rank_gloo_ddp_report(tmp_path):
    proc, out = _torchrun(tmp_path, "ok")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    m = data["measured"]
    assert m["status"] == "complete" and m["ranks"] == 2 and m["ranks_reporting"] == 2
    assert set(m["by_rank"]) == {"0", "1"}
    # 5 optimizer steps × 2 micro-batches × (4 + 6) samples
    assert m["by_rank"]["0"]["tokens"] == 5 * 2 * 4
    assert m["by_rank"]["1"]["tokens"] == 5 * 2 * 6
    assert m["tokens"] == 100
    assert m["steps"] == 5 and all(r["steps"] == 5 for r in m["by_rank"].values())
    assert data["workload"]["world_size"] == 2
    # FLOPs per sample from each rank's trace of the model inside DDP: forward 2·8·16 + 2·16·1 = 288,
    # backward (weight grads of both layers, input grad of the second) 256 + 32 + 32 = 320 → 608 per sample.
    assert m["model_flops_per_token"] == 608
    # Global rates by the rules in mlfootprint.measure.distributed, from the per-rank series in the report.
    series = m["rank_series"]
    counted = {r: rows[1:] for r, rows in series.items()}  # first step is warm-up
    elapsed = max(sum(row["step_s"] for row in rows) for rows in counted.values())
    tokens = sum(row["tokens"] for rows in counted.values() for row in rows)
    assert m["tokens_per_s"] == pytest.approx(tokens / elapsed)
    assert m["mfu"] == pytest.approx(tokens * 608 / (elapsed * 2 * 19.5e12))
    assert m["slowest_rank"] in (0, 1) and m["straggler_ratio"] >= 1.0
    # Every rank left its own file, with a final record.
    for r in (0, 1):
        assert read_rank_file(rank_file(tmp_path / "run.json.ranks", r))["status"] == "complete"


def test_torchrun_rank_dies_and_the_survivor_writes_what_there_is(tmp_path):
    proc, out = _torchrun(tmp_path, "die")
    assert proc.returncode != 0  # the job failed ...
    assert out.exists(), proc.stderr[-3000:]  # ... and rank 0 still wrote the report
    m = json.loads(out.read_text())["measured"]
    assert m["status"] == "incomplete" and m["ranks"] == 2
    dead = m["by_rank"]["1"]
    assert dead["status"] == "partial" and dead["steps"] == 3 and dead["tokens"] == 3 * 2 * 6
    alive = m["by_rank"]["0"]
    assert alive["status"].startswith(("failed", "terminated")), alive["status"]
    assert alive["steps"] in (2, 3)
    assert m["tokens"] == alive["tokens"] + dead["tokens"]
    # The files alone give the same report (the merge helper, e.g. after rank 0 itself died).
    merged = merge_rank_files([tmp_path / "run.json"]).sections["measured"]
    assert merged["tokens"] == m["tokens"] and merged["by_rank"]["1"]["status"] == "partial"


# --------------------------------------------------------------------------- the rules, by hand


def _rec(rank: int, times: list[float], tokens: list[int], world: int = 2) -> dict:
    return {"rank": rank, "world_size": world, "status": "complete", "host": "h",
            "series": [{"step": i + 1, "step_s": t, "tokens": k, "micro_steps": 1, "t_s": sum(times[:i + 1])}
                       for i, (t, k) in enumerate(zip(times, tokens))],
            "flops": {"model_flops_per_token": 100.0, "hardware_flops_per_token": 100.0},
            "peak": {"peak_flop_per_s": 1000.0}, "energy": {"energy_j": 5.0, "provenance": "measured"}}


def test_global_figures_by_hand():
    recs = [_rec(0, [1.0, 2.0, 2.0], [10, 10, 10]), _rec(1, [1.0, 3.0, 2.0], [20, 20, 20])]
    g = global_figures(recs, warmup=1)
    assert g["tokens"] == 90  # all steps, both ranks
    # step time of the job = the slowest rank's per step: [1, 3, 2]; after warm-up [3, 2] → median 2.5
    assert g["step_s"] == pytest.approx(2.5)
    # counted elapsed: rank 0 2+2 = 4 s, rank 1 3+2 = 5 s → the job's 5 s; counted tokens 20 + 40
    assert g["counted_elapsed_s"] == pytest.approx(5.0)
    assert g["tokens_per_s"] == pytest.approx(60 / 5.0)
    assert g["mfu"] == pytest.approx(60 * 100 / (5.0 * 2 * 1000))
    # medians of counted steps: rank 0 2.0, rank 1 2.5
    assert g["slowest_rank"] == 1 and g["fastest_rank"] == 0
    assert g["straggler_ratio"] == pytest.approx(1.25)
    assert g["energy_j"] == 10.0
    rep = build_report(recs, warmup=1)
    assert rep.sections["measured"]["by_rank"]["1"]["step_s"] == pytest.approx(2.5)
    assert rep.sections["measured"]["energy_j"] == 10.0


def test_rank_file_cut_short_is_read_as_partial(tmp_path):
    log = RankLog(rank_file(tmp_path, 1))
    log.write({"kind": "header", "record": {"rank": 1, "world_size": 3, "status": "running"}})
    log.write({"kind": "steps", "rows": [{"step": 1, "step_s": 0.5, "tokens": 4, "micro_steps": 1, "t_s": 0.5}]})
    with open(rank_file(tmp_path, 1), "a") as fh:
        fh.write('{"kind": "steps", "rows": [{"step": 2, "step_s"')  # the process died mid-write
    rec = read_rank_file(rank_file(tmp_path, 1))
    assert rec["status"] == "partial" and len(rec["series"]) == 1
    rep = merge_rank_files([tmp_path])
    m = rep.sections["measured"]
    assert m["ranks"] == 3 and m["ranks_reporting"] == 1
    assert m["by_rank"]["0"]["status"] == "missing" and m["by_rank"]["2"]["status"] == "missing"


def test_merge_command(tmp_path):
    log = RankLog(rank_file(tmp_path / "r.json.ranks", 0))
    log.write({"kind": "final", "record": _rec(0, [1.0, 1.0], [3, 3], world=1)})
    out = tmp_path / "merged.json"
    r = run_cli("report", str(tmp_path / "r.json"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["measured"]["tokens"] == 6
    r = run_cli("report", str(tmp_path / "nothing.json"))
    assert r.returncode == 2 and r.stderr.startswith("mlfootprint: error:")
    with pytest.raises(UserError):
        merge_rank_files([tmp_path / "nothing.json"])


@pytest.mark.parametrize("record,field", [
    ({"rank": 0, "world_size": 1, "series": [{"step": 1, "step_s": "slow", "tokens": 10}]}, "series[0].step_s"),
    ({"rank": "zero", "world_size": 1, "series": []}, "rank"),
    ([1, 2], "the record"),
    # an int past a float's range: checking it with math.isfinite raised OverflowError
    ({"rank": 0, "world_size": 1, "series": [{"step": 1, "step_s": 10**400, "tokens": 10}]}, "series[0].step_s"),
    ({"rank": 0, "world_size": 1, "series": [], "flops": {"model_flops_per_token": "x"}},
     "flops.model_flops_per_token"),
    # one "missing" record per absent rank: 100 million of them filled the memory
    ({"rank": 0, "world_size": 100_000_000, "series": []}, "world_size"),
])
def test_a_damaged_rank_file_is_named_in_one_line(tmp_path, record, field):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "rank0.jsonl").write_text(json.dumps({"kind": "final", "record": record}) + "\n")
    res = run_cli("report", str(folder))
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip()
    assert err.startswith(f"mlfootprint: error: {folder / 'rank0.jsonl'}: {field} is ") and "damaged" in err
    assert "\n" not in err and "Traceback" not in res.stderr


def test_rank_files_with_no_record_give_one_error_line(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "rank0.jsonl").write_bytes(b"\x00\xff binary")
    res = run_cli("report", str(folder))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "hold no usable records" in res.stderr and "rank0.jsonl" in res.stderr
