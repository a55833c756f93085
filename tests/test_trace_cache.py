"""The trace cache (trace/cache.py): a trace reused within a verb call and across runs, never a different figure.

Every test has its own empty cache folder (conftest sets MLFOOTPRINT_CACHE_DIR to a fresh tmp folder). The model
is tests/data/configs/tiny-llama (2 layers, hidden 64): a trace takes well under a second.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import mlfootprint as mf
from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.models import resolve
from mlfootprint.trace import cache as trace_cache
from mlfootprint.verbs.common import resolve_model
from mlfootprint.trace.cache import CACHED_NOTE, TraceCache, reusing_traces, trace_key, traced_step

CONFIGS = Path(__file__).parent / "data" / "configs"
LLAMA = str(CONFIGS / "tiny-llama")
TRAIN = mf.Workload(mode="train", seq=32, batch=2)
# tiny-llama's train step at batch 2 × seq 32: the total FLOPs (forward + backward + AdamW step) a fresh trace
# counts, pinned here (at batch 1 it is 24,965,653): every read of the cache must give this very figure.
TINY_TRAIN_FLOPS = 48_175_509


@pytest.fixture
def traces_made(monkeypatch) -> list[Any]:
    """Each fresh trace the cache module asks for (a hit asks for none)."""
    made: list[Any] = []
    real = trace_cache.trace

    def counting(spec, wl, **kw):
        made.append(wl)
        return real(spec, wl, **kw)

    monkeypatch.setattr(trace_cache, "trace", counting)
    return made


def _folder() -> Path:
    return Path(os.environ["MLFOOTPRINT_CACHE_DIR"])


def _entries() -> list[Path]:
    return sorted(_folder().glob("*.trace")) if _folder().is_dir() else []


def _without_cache_note(rep: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(rep))
    out["assumptions"] = [a for a in out["assumptions"] if not a.startswith(CACHED_NOTE)]
    out.get("flops", {}).pop("trace_s", None)
    out.pop("tool", None)
    out.pop("created_at", None)
    return out


def test_a_miss_stores_and_a_hit_gives_the_same_report(traces_made):
    fresh = json.loads(mf.count(LLAMA, TRAIN).to_json())
    assert len(traces_made) == 1 and len(_entries()) == 1
    assert fresh["flops"]["total"] == TINY_TRAIN_FLOPS
    assert not any(a.startswith(CACHED_NOTE) for a in fresh["assumptions"])
    cached = json.loads(mf.count(LLAMA, TRAIN).to_json())
    assert len(traces_made) == 1  # the second report came from the cache
    assert [a for a in cached["assumptions"] if a.startswith(CACHED_NOTE)], "the report says the trace was cached"
    assert _without_cache_note(cached) == _without_cache_note(fresh)
    # memory and predict read the same entry (layout options are not part of the key) and agree with a re-trace
    for verb in (lambda **kw: mf.memory(LLAMA, TRAIN.with_changes(hardware="a100-80gb"), **kw),
                 lambda **kw: mf.predict(LLAMA, TRAIN.with_changes(hardware="a100-80gb", dp=2, batch=4), **kw)):
        first = json.loads(verb().to_json())
        again = json.loads(verb().to_json())
        anew = json.loads(verb(cache=False).to_json())
        assert _without_cache_note(again) == _without_cache_note(first) == _without_cache_note(anew)
        assert any(a.startswith(CACHED_NOTE) for a in again["assumptions"])


def test_the_key_is_the_config_content_not_its_path(tmp_path, traces_made):
    copy = tmp_path / "elsewhere" / "tiny-llama"
    shutil.copytree(LLAMA, copy)
    a, b = resolve(LLAMA, [], None), resolve(str(copy), [], None)
    assert trace_key(a, TRAIN) == trace_key(b, TRAIN)
    traced_step(a, TRAIN)
    traced_step(b, TRAIN)
    assert len(traces_made) == 1
    cfg = json.loads((copy / "config.json").read_text())
    cfg["intermediate_size"] = 256  # a different model: a different key
    (copy / "config.json").write_text(json.dumps(cfg))
    assert trace_key(resolve(str(copy), [], None), TRAIN) != trace_key(a, TRAIN)
    # what the trace reads is in the key; the layout is not
    assert trace_key(a, TRAIN) != trace_key(a, TRAIN.with_changes(seq=16))
    assert trace_key(a, TRAIN) != trace_key(a, TRAIN.with_changes(precision="bf16-mixed"))
    mixed = TRAIN.with_changes(precision="bf16-mixed")
    assert trace_key(a, mixed) != trace_key(a, mixed.with_changes(mixed_weights="16-bit"))  # another model dtype
    assert trace_key(a, TRAIN) != trace_key(a, TRAIN.with_changes(hardware="h100-sxm"))  # CUDA kernels
    assert trace_key(a, TRAIN) != trace_key(a, TRAIN, checkpoint_early_stop=False)
    assert trace_key(a, TRAIN) == trace_key(a, TRAIN.with_changes(dp=2, micro_batch=1, zero=3))


def test_a_version_change_invalidates(monkeypatch, traces_made):
    spec = resolve(LLAMA, [], None)
    traced_step(spec, TRAIN)
    traced_step(spec, TRAIN)
    assert len(traces_made) == 1
    with monkeypatch.context() as m:
        m.setattr(trace_cache, "__version__", "99.0")
        traced_step(spec, TRAIN)
        assert len(traces_made) == 2
        installed = trace_cache._installed
        m.setattr(trace_cache, "_installed", lambda package: "99.0.0" if package == "torch" else installed(package))
        traced_step(spec, TRAIN)
        assert len(traces_made) == 3
        m.setattr(trace_cache, "code_digest", lambda: "an edited checkout")
        traced_step(spec, TRAIN)
        assert len(traces_made) == 4
    traced_step(spec, TRAIN)
    assert len(traces_made) == 4  # back on the first version: its entry is still there
    # an entry whose stored key is another version's (a hash collision, a copied file) is a miss too
    key = trace_key(spec, TRAIN)
    path = TraceCache().path_for(key)
    entry = pickle.loads(path.read_bytes()[len(trace_cache._MAGIC):])
    entry["key"] = {**key, "versions": {**key["versions"], "torch": "1.0"}}
    path.write_bytes(trace_cache._MAGIC + pickle.dumps(entry))
    assert TraceCache().get(key, TRAIN) is None


# Each command line, run again in a fresh process on the cache the first runs filled: it must not import torch or
# transformers (issue 16: importing torch alone takes about as long as a warm plan's whole run).
_WARM_RUNS = """
import json, sys
from mlfootprint.cli import main
for argv in json.loads(sys.argv[1]):
    assert main(argv) == 0, argv
    loaded = sorted(m for m in ("torch", "transformers") if m in sys.modules)
    assert not loaded, (argv, loaded)
"""


def test_a_hit_runs_without_torch_or_transformers(capsys):
    # a catalog model, and a config.json path (whose task transformers decides the first time: models/hf.py
    # task_for remembers it in the cache folder)
    shape = ["--seq", "32", "--batch", "4"]
    runs = [["plan", "gpt2", "--devices", "4", "--hardware", "h100-sxm", *shape],
            ["memory", "gpt2", "--mode", "train", *shape, "--hardware", "a100-80gb", "--zero", "3", "--dp", "4"],
            ["predict", "gpt2", "--mode", "train", *shape, "--hardware", "a100-80gb"],
            ["count", "gpt2", "--mode", "train", *shape],
            ["count", LLAMA, "--mode", "train", *shape]]
    for argv in runs:
        assert main(argv) == 0, argv  # here: traced and stored
    capsys.readouterr()
    r = subprocess.run([sys.executable, "-c", _WARM_RUNS, json.dumps(runs)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("gpt2") >= len(runs) - 1 and "tiny-llama" in r.stdout
    # and a miss does import them: the check above can fail
    miss = [["count", "gpt2", "--mode", "train", "--seq", "48", "--batch", "2"]]
    r = subprocess.run([sys.executable, "-c", _WARM_RUNS, json.dumps(miss)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "'torch'" in r.stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign class"])
def test_a_corrupt_entry_is_traced_again_and_replaced(damage, traces_made):
    spec = resolve(LLAMA, [], None)
    traced_step(spec, TRAIN)
    (path,) = _entries()
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a planted entry that would run code when unpickled: refused, never run
        marker = path.parent / "ran"
        path.write_bytes(trace_cache._MAGIC + pickle.dumps(_Planted(str(marker))))
    rep = json.loads(mf.count(LLAMA, TRAIN).to_json())
    assert rep["flops"]["total"] == TINY_TRAIN_FLOPS
    assert len(traces_made) == 2 and not any(a.startswith(CACHED_NOTE) for a in rep["assumptions"])
    assert not (path.parent / "ran").exists()
    assert TraceCache().get(trace_key(spec, TRAIN), TRAIN) is not None  # replaced by a whole entry
    mf.count(LLAMA, TRAIN)
    assert len(traces_made) == 2


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_no_cache_bypasses_it_both_ways(tmp_path, capsys, traces_made):
    out = tmp_path / "r.json"
    argv = ["count", LLAMA, "--mode", "train", "--seq", "32", "--batch", "2", "--format", "json", "-o", str(out),
            "--force"]
    assert main(argv + ["--no-cache"]) == 0
    assert _entries() == [] and len(traces_made) == 1  # nothing stored
    assert main(argv) == 0
    assert len(_entries()) == 1 and len(traces_made) == 2
    assert main(argv + ["--no-cache"]) == 0
    assert len(traces_made) == 3  # an entry exists, and is not read
    assert not any(a.startswith(CACHED_NOTE) for a in json.loads(out.read_text())["assumptions"])
    mf.count(LLAMA, TRAIN, cache=False)
    assert len(traces_made) == 4
    mf.count(LLAMA, TRAIN)
    assert len(traces_made) == 4
    with pytest.raises(UserError, match="cache must be True or False"):
        mf.count(LLAMA, TRAIN, cache="no")


def test_a_users_own_model_is_never_cached(traces_made):
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(4, 8)
    mf.count(net, inputs=[x])
    mf.count(net, inputs=[x])
    assert len(traces_made) == 2 and _entries() == []
    assert trace_key(resolve_model(net, [x]), mf.Workload()) is None


def test_within_one_call_a_trace_is_made_once(traces_made):
    spec = resolve(LLAMA, [], None)
    with reusing_traces(cache=False):
        a = traced_step(spec, TRAIN)
        b = traced_step(spec, TRAIN.with_changes(dp=2, zero=3))  # another layout of the same traced step
    assert len(traces_made) == 1 and _entries() == []
    assert b.workload.dp == 2 and a.workload.dp == 1  # each caller gets its own workload back
    assert b.records is a.records
    with reusing_traces(cache=False):
        traced_step(spec, TRAIN)
    assert len(traces_made) == 2  # a new call traces anew: nothing is reused across calls in memory


def test_max_batch_asks_for_each_probe_once(traces_made):
    rep = mf.memory(LLAMA, TRAIN, device_memory="40MB", max_batch=True, other_bytes=0)
    probes = [wl.batch for wl in traces_made]
    assert len(probes) == len(set(probes)) == 1 + rep.sections["memory"]["max_batch_traces"]
    again = mf.memory(LLAMA, TRAIN, device_memory="40MB", max_batch=True, other_bytes=0)
    assert len(traces_made) == len(probes)  # every probe's trace came from the persistent cache
    assert again.sections["memory"]["max_batch"] == rep.sections["memory"]["max_batch"]


def test_the_folder_stays_within_its_limit(tmp_path, traces_made):
    spec = resolve(LLAMA, [], None)
    store = TraceCache(tmp_path / "small", limit=10**9)
    keys = []
    for i, seq in enumerate((8, 16, 24)):
        wl = TRAIN.with_changes(seq=seq)
        keys.append(trace_key(spec, wl))
        assert store.put(keys[-1], traced_step(spec, wl))
        os.utime(store.path_for(keys[-1]), (1_000_000 + i, 1_000_000 + i))  # written in this order
    sizes = [store.path_for(k).stat().st_size for k in keys]
    assert store.get(keys[0], TRAIN) is not None  # a hit: now the most recently used
    store.limit = sizes[0] + sizes[2] + 1
    store.evict()
    assert [store.path_for(k).exists() for k in keys] == [True, False, True]  # the least recently used went
    (tmp_path / "small" / "unrelated.txt").write_text("mine")
    store.limit = 0
    store.evict()
    assert [p.name for p in (tmp_path / "small").iterdir()] == ["unrelated.txt"]  # only its own files


def _writer(folder: str, rounds: int, queue: Any) -> None:
    os.environ["MLFOOTPRINT_CACHE_DIR"] = folder
    spec = resolve(LLAMA, [], None)
    key = trace_key(spec, TRAIN)
    store = TraceCache()
    totals = []
    for _ in range(rounds):
        tr = store.get(key, TRAIN) or traced_step(spec, TRAIN)
        totals.append(sum(r.model_flops + r.other_flops for r in tr.records))
        store.put(key, tr)  # every process keeps rewriting the one entry the others read
    queue.put(totals)


def test_concurrent_writers_and_readers(tmp_path):
    folder = tmp_path / "shared"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(folder), 25, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    spec = resolve(LLAMA, [], None)
    expected = sum(r.model_flops + r.other_flops for r in traced_step(spec, TRAIN).records)
    assert all(t == expected for totals in results for t in totals) and len(results) == 3
    # one entry and no temporary file left; beside it the config's remembered task, one file too
    assert sorted(p.name for p in folder.iterdir()) == sorted([TraceCache().path_for(trace_key(spec, TRAIN)).name,
                                                               "tasks"])
    assert len([p for p in (folder / "tasks").iterdir() if not p.name.startswith(".tmp-")]) == 1
    assert not list((folder / "tasks").glob(".tmp-*"))
    assert TraceCache(folder).get(trace_key(spec, TRAIN), TRAIN) is not None


def test_a_remembered_task_is_read_back_only_for_its_own_key():
    from mlfootprint.core import usercache

    key = {"config": {"model_type": "llama", "hidden_size": 64}, "transformers": "9.9"}
    assert usercache.recall("tasks", key) is None
    assert usercache.remember("tasks", key, "causal-lm")
    assert usercache.recall("tasks", key) == "causal-lm"
    assert usercache.recall("tasks", {**key, "transformers": "9.10"}) is None  # another version: not this answer
    (path,) = (Path(os.environ["MLFOOTPRINT_CACHE_DIR"]) / "tasks").glob("*.json")
    for damage in ("", "{not json", json.dumps({"key": "another", "value": "masked-lm"})):
        path.write_text(damage)
        assert usercache.recall("tasks", key) is None  # truncated, corrupt or foreign: a miss, never an error


def test_trace_ready_says_whether_a_trace_would_be_made():
    # the planner starts its speculative micro-batch traces only while the global batch's trace is still to be made
    spec = resolve_model(LLAMA, (), None)
    assert not trace_cache.trace_ready(spec, TRAIN)
    with reusing_traces():
        traced_step(spec, TRAIN)
        assert trace_cache.trace_ready(spec, TRAIN)  # made in this call
    assert trace_cache.trace_ready(spec, TRAIN)  # stored on disk
    assert not trace_cache.trace_ready(spec, TRAIN.with_changes(batch=3))
    with reusing_traces(cache=False):
        assert not trace_cache.trace_ready(spec, TRAIN)  # --no-cache: the disk is not read
    net = torch.nn.Sequential(torch.nn.Linear(8, 8))
    assert not trace_cache.trace_ready(resolve_model(net, [torch.randn(4, 8)]), mf.Workload())  # never cached


def test_warm_up_imports_the_models_code_before_a_fork():
    # a worker forked after warm_up starts tracing at once, not importing transformers' model and torch._dynamo
    # (a catalog model: resolving it imports nothing of transformers)
    modules = ("torch._dynamo", "transformers.models.gpt2.modeling_gpt2")
    script = ("import sys\n"
              "import mlfootprint as mf\n"
              "from mlfootprint.verbs.common import resolve_model\n"
              "from mlfootprint.trace.cache import warm_up\n"
              "spec = resolve_model('gpt2', (), None)\n"
              f"print({modules[1]!r} in sys.modules)\n"
              "warm_up(spec, mf.Workload(mode='train', seq=32, batch=2))\n"
              f"print(all(m in sys.modules for m in {modules!r}))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "True"]
