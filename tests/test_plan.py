"""`plan`: enumeration constraints, ranking, and the acceptance check on llama-2-70b × 64 A100-80GB."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mlfootprint.verbs.common import resolve_model as model_spec
from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.hardware.catalog import get_device
from tests.helpers import traced_for_prediction as trace_for_prediction
from mlfootprint.analysis.predict.planner import enumerate_layouts, plan
import mlfootprint as mf
from mlfootprint.analysis.predict.shape import model_shape
from mlfootprint.workload import Workload, max_virtual_stages

TINY_LLAMA = str(Path(__file__).parent / "data" / "configs" / "tiny-llama" / "config.json")


@pytest.fixture(scope="module")
def tiny():
    return trace_for_prediction(TINY_LLAMA, Workload(batch=64, seq=64, mode="train", precision="bf16-mixed"))


def test_enumeration_respects_heads_layers_nodes_and_batch(tiny):
    spec, wl, tr = tiny
    heads, layers = spec.facts["heads"], spec.facts["layers"]
    dev = get_device("a100-80gb")  # 8 per node
    lays = enumerate_layouts(spec, wl, 16, dev, shape=model_shape(spec, wl, tr))
    assert lays
    for p in lays:
        assert p.dp * p.tp * p.pp * p.cp == 16
        assert 8 % p.tp == 0 and heads % p.tp == 0  # a tensor-parallel group inside one node of 8
        # uneven stages allowed; a block in every virtual stage, except that an end chunk may hold the embedding or
        # the head alone (Llama 3's layout): 2 layers on 2 stages take 2 chunks each (E t | t L)
        assert p.pp <= layers and p.vp <= max_virtual_stages(layers, p.pp)
        assert p.vp <= (layers // p.pp) + 1
        assert p.cp == 1  # 64-token sequences: below plan_cp_min_seq, context parallelism is not tried
        assert 64 % (p.dp * p.micro_batch) == 0
        assert p.pp == 1 or p.zero <= 1  # ZeRO 2/3 only without pipeline parallelism
        assert not p.zeropp or (p.zero == 3 and p.tp * p.dp > 8)
        assert p.dp > 1 or p.zero == 0
    assert {p.recompute for p in lays} == {"none", "selective", "full"}  # (plan drops selective with fused attention)


def test_ranking_and_memory_filter(tiny):
    spec, wl, tr = tiny
    seen = []

    def fake_memory(par):  # only micro-batches of 1 and 2 "fit"
        seen.append(par)
        return float(par.micro_batch), par.micro_batch <= 2, None

    res = plan(spec, wl, tr, "a100-80gb", 16, top=5, memory_check=fake_memory)
    assert len(res.layouts) == 5
    assert all(c.fits and c.par.micro_batch <= 2 for c in res.layouts)
    speeds = [c.tokens_per_s for c in res.layouts]
    assert speeds == sorted(speeds, reverse=True)
    assert res.memory_checked == len(seen) < res.considered  # memory asked lazily, in rank order
    assert res.best.st.bottleneck in res.explanation and "tokens/s" in res.explanation


def test_fixed_choices_and_bad_requests(tiny):
    spec, wl, tr = tiny
    ok = lambda par: (1.0, True, None)  # noqa: E731
    res = plan(spec, wl, tr, "a100-80gb", 16, tp=2, recompute="full", memory_check=ok)
    assert all(c.par.tp == 2 and c.par.recompute == "full" for c in res.layouts)
    with pytest.raises(UserError, match="devices=12 is not divisible by tp=8"):  # Python terms from Python
        plan(spec, wl, tr, "a100-80gb", 12, tp=8, memory_check=ok)
    with pytest.raises(UserError, match="no layout of tiny-llama fits on 16"):
        plan(spec, wl, tr, "a100-80gb", 16, memory_check=lambda par: (2e11, False, None))


def test_cli_bad_input(capsys):
    for args, expected in ((["plan", "gpt2", "--hardware", "a100-80gb"], "needs --devices"),
                           (["plan", "gpt2", "--devices", "8"], "needs --hardware"),
                           (["plan", "gpt2", "--devices", "10", "--tp", "4", "--hardware", "a100-80gb"],
                            "--devices 10 is not divisible by --tp 4"),
                           (["plan", "gpt2", "--devices", "8", "--hardware", "a100-80gb", "--mode", "inference"],
                            "training layouts"),
                           (["plan", "gpt2", "--devices", "8", "--hardware", "h100"], "Did you mean")):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


def test_llama2_70b_on_64_a100_every_layout_fits(tmp_path):
    """Acceptance: every proposed layout fits by the memory model (checked again here, independently)."""
    from mlfootprint.analysis.memory.model import memory_model
    from mlfootprint.workload import Layout

    out = tmp_path / "plan.json"
    assert main(["plan", "llama-2-70b", "--devices", "64", "--hardware", "a100-80gb", "--precision", "bf16-mixed",
                 "--top", "5", "-o", str(out)]) == 0
    p = json.loads(out.read_text())["plan"]
    assert p["global_batch"] == 1024  # 4M tokens / 4096, a multiple of 64
    assert len(p["layouts"]) == 5
    assert p["best"] in p["explanation"]
    # each layout sized from a trace of its own micro-batch, with its own working weights (16-bit under ZeRO-3 by
    # default, as FSDP and DeepSpeed gather them), on the same target device as the plan: its kernels decide the
    # traced memory (trace/target.py)
    models = {}
    for mb, zero3 in {(lay["micro_batch"], lay["zero"] >= 3) for lay in p["layouts"]}:
        wl = Workload(batch=mb, seq=4096, mode="train", precision="bf16-mixed", hardware="a100-80gb",
                      zero=3 if zero3 else 0)
        spec, wl, tr = trace_for_prediction(model_spec("llama-2-70b"), wl)
        models[mb, zero3] = memory_model(spec, wl, tr)
    capacity = get_device("a100-80gb").memory_bytes
    speeds = []
    for lay in p["layouts"]:
        assert lay["tp"] * lay["pp"] * lay["dp"] * lay["cp"] == 64
        est = models[lay["micro_batch"], lay["zero"] >= 3].per_device(Layout(dp=lay["dp"], tp=lay["tp"], pp=lay["pp"], vp=lay["vp"], cp=lay["cp"],
                                   schedule=lay["schedule"], zero=lay["zero"], zeropp=lay["zeropp"],
                                   micro_batch=lay["micro_batch"], recompute=lay["recompute"],
                                   precision="bf16-mixed", optimizer="adamw", grad_accum=lay["micro_batches"],
                                   sequence_parallel=lay["tp"] > 1))
        assert est.peak_bytes == pytest.approx(lay["peak_bytes"])
        assert est.peak_bytes <= capacity and lay["fits"]
        speeds.append(lay["tokens_per_s"])
    assert speeds == sorted(speeds, reverse=True)


def test_the_plans_best_layout_is_what_predict_runs_with_the_same_figures(tmp_path):
    # plan's first row and predict with only --devices are one layout with one step time and one peak: both size
    # and time it from a trace of one device's micro-batch (plan's table once scaled the global batch's trace,
    # which divided autocast's weight copies and the layers' gradient buffers by the micro-batches)
    args = ["gpt2", "--devices", "8", "--hardware", "a100-80gb", "--seq", "256", "--batch", "32"]
    assert main(["plan", *args, "--top", "3", "-o", str(tmp_path / "plan.json")]) == 0
    assert main(["predict", *args, "-o", str(tmp_path / "predict.json")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    pred = json.loads((tmp_path / "predict.json").read_text())
    w = pred["workload"]
    best = plan["plan"]["layouts"][0]
    assert (w["tp"], w["pp"], w["zero"], w["micro_batch"]) == (best["tp"], best["pp"], best["zero"],
                                                              best["micro_batch"])
    assert best["micro_batch"] < 32  # one device's micro-batch is not the global batch: scaling it once differed
    assert plan["plan"]["step_s"] == pytest.approx(pred["time"]["step_s"], rel=1e-12)
    assert plan["plan"]["peak_bytes"] == pred["memory"]["peak_bytes"]
    assert any("from a trace of one device's micro-batch" in a for a in plan["assumptions"])


def test_a_shorter_table_is_the_first_rows_of_a_longer_one(tmp_path):
    # the layouts shown are re-timed from their own micro-batch traces and ranked again: the same ten whatever
    # --top shows, so --top 3 lists the first three of --top 10 (it once re-ranked only the three it had found)
    args = ["plan", "gpt2", "--devices", "8", "--hardware", "h100-sxm", "--seq", "1024", "--batch", "512"]
    rows = {}
    for top in (3, 10):
        assert main([*args, "--top", str(top), "-o", str(tmp_path / f"{top}.json")]) == 0
        rows[top] = [(r["tp"], r["pp"], r["vp"], r["dp"], r["zero"], r["zeropp"], r["micro_batch"], r["recompute"],
                      r["step_s"]) for r in json.loads((tmp_path / f"{top}.json").read_text())["plan"]["layouts"]]
    assert len(rows[3]) == 3 and len(rows[10]) == 10
    assert rows[3] == rows[10][:3]
    # predict with only --devices runs that first row: the planner's micro-batch, not the largest that fits (which
    # the memory model once chose after the planner, 64 here, under an assumption naming the planner's 32)
    assert main(["predict", *args[1:], "-o", str(tmp_path / "predict.json")]) == 0
    pred = json.loads((tmp_path / "predict.json").read_text())
    assert pred["memory"]["layout"]["micro_batch"] == rows[10][0][6]
    assert pred["time"]["step_s"] == pytest.approx(rows[10][0][8], rel=1e-12)


def test_micro_batch_traces_prefetched_side_by_side_are_not_traced_again():
    # the planner's guess of the micro-batch traces it will need is traced in forked workers (core/forked.py);
    # the walk then finds each one made, and this process traced only its own share
    from mlfootprint.core.forked import can_fork, default_jobs
    from mlfootprint.verbs.runnable import MicroBatchTraces
    from mlfootprint.workload import Workload

    if default_jobs() < 2 or not can_fork():
        pytest.skip("one CPU, or forking is not safe here")
    here: list[tuple[int, str]] = []

    def tracer(spec, wl):
        here.append((wl.batch, wl.mixed_weights))
        return f"trace of {wl.batch} with {wl.mixed_weights}"

    traces = MicroBatchTraces(None, Workload(batch=64, seq=32, mode="train", precision="bf16-mixed"), tracer)
    traces.prefetch([(1, "fp32"), (2, "16-bit"), (1, "fp32")])
    assert len(here) == 1  # the other share was traced in a child
    assert traces(2, "16-bit") == "trace of 2 with 16-bit" and traces(1, "fp32") == "trace of 1 with fp32"
    assert len(here) == 1


@pytest.mark.parametrize("fixed", [["--recompute", "full"], ["--tp", "2"], ["--zero", "3"]])
def test_a_layout_option_fixes_that_choice_and_the_planner_chooses_the_rest(tmp_path, fixed):
    # One layout option with --devices once turned the planner off: --recompute full gave DDP without sharding,
    # --zero 3 (the planner's own stage) tp=1 over all devices, both over the device's memory where the planner's
    # layout fit (helper sweeps). Now the option fixes that choice, and predict runs plan's first row with it.
    args = ["gpt2", "--devices", "8", "--hardware", "a100-80gb", "--seq", "256", "--batch", "32", *fixed]
    assert main(["plan", *args, "--top", "3", "-o", str(tmp_path / "plan.json")]) == 0
    assert main(["predict", *args, "-o", str(tmp_path / "predict.json")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    pred = json.loads((tmp_path / "predict.json").read_text())
    w, best = pred["workload"], plan["plan"]["layouts"][0]
    assert (w["tp"], w["pp"], w["zero"], w["micro_batch"], w["recompute"]) == \
        (best["tp"], best["pp"], best["zero"], best["micro_batch"], best["recompute"])
    name, value = fixed[0].lstrip("-"), fixed[1]
    assert str(w[name]) == value and name not in w["defaults"]
    assert plan["plan"]["step_s"] == pytest.approx(pred["time"]["step_s"], rel=1e-12)
    assert plan["plan"]["peak_bytes"] == pred["memory"]["peak_bytes"]
    note = [a for a in pred["assumptions"] if "the planner's best" in a]
    assert len(note) == 1 and f"with {' '.join(fixed)} as given" in note[0]
    if name == "zero":  # ZeRO-3 is not pipelined: the stages stay whole
        assert w["pp"] == 1


def test_the_whole_layout_given_is_the_users_own():
    # --tp, --pp, --zero, --micro-batch and --recompute together: no planner, the layout as given (vp, cp 1)
    rep = mf.predict("gpt2", Workload(mode="train", seq=256, batch=32, hardware="a100-80gb", devices=8, tp=2, pp=2,
                                      zero=1, micro_batch=2, recompute="none"))
    w = rep.sections["workload"]
    assert (w["tp"], w["pp"], w["dp"], w["vp"], w["zero"], w["micro_batch"]) == (2, 2, 2, 1, 1, 2)
    assert not any("the planner's best" in a for a in rep.assumptions)


@pytest.mark.parametrize("fmt", ["table", "md", "latex"])
def test_plan_details_show_the_layouts_as_their_table(tmp_path, capsys, fmt):
    # --details once printed the layouts as a raw Python list of dicts ('zeropp': False, unformatted floats)
    assert main(["plan", "gpt2", "--devices", "8", "--hardware", "a100-80gb", "--seq", "128", "--batch", "32",
                 "--details", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert out.count("Layouts that fit, fastest first") == 1
    assert "{'rank'" not in out and "'zeropp'" not in out


def test_the_memory_bound_does_not_prune_a_16_bit_layout_that_fits():
    # The planner prunes with a lower bound computed from the global trace, whose working weights are PyTorch AMP's
    # fp32 (tp 1, ZeRO 0). A ZeRO-3 layout runs over 16-bit weights: half the weights and smaller activations. The
    # bound took the fp32 figures and pruned llama-2-7b's zero=3++ micro-batch 4 on 64 H100 (77.14 GiB, fits, the
    # fastest), so plan showed micro-batch 2 and analyze disagreed with predict given that layout.
    import mlfootprint as mf

    wl = mf.Workload(hardware="h100-sxm", devices=64, seq=4096, precision="bf16-mixed")
    best = mf.plan("llama-2-7b", wl).sections["plan"]
    given = mf.predict("llama-2-7b", mf.Workload(mode="train", hardware="h100-sxm", devices=64, seq=4096,
                                                 batch=best["global_batch"], dp=64, zero=3, zeropp=True,
                                                 micro_batch=4, recompute="none"))
    assert given.sections["memory"]["fits"] is True
    assert best["step_s"] <= given.sections["time"]["step_s"] * (1 + 1e-9)
    rep = mf.plan("llama-2-7b", wl)
    assert rep.sections["workload"]["grad_accum"] == best["global_batch"] // (64 * rep.sections["workload"]["micro_batch"])


def test_rows_name_their_working_weights_when_they_differ():
    # gpt2 on 8 H100: ZeRO-3 beat ZeRO-0/1/2 by 54% of work with nothing saying the ZeRO-0 rows run PyTorch AMP's
    # fp32 working weights (--mixed-weights auto); now a weights column and the reason in 'vs #1'
    import mlfootprint as mf
    from mlfootprint.report.layout import ranked_layouts

    rep = mf.plan("gpt2", mf.Workload(hardware="h100-sxm", devices=8, precision="bf16-mixed"))
    layouts = rep.sections["plan"]["layouts"]
    for row in layouts:
        assert row["weights"] == ("16-bit" if row["zero"] == 3 or row["tp"] * row["pp"] * row["cp"] > 1 else "fp32")
    heads, rows = ranked_layouts(rep)
    if len({row["weights"] for row in layouts}) > 1:
        assert "weights" in heads
        best = layouts[0]["weights"]
        assert all(("working weights" in row["why"]) == (row["weights"] != best) for row in layouts[1:])


def test_a_plan_of_an_image_model_counts_samples_not_tokens():
    # plan's card and table said 'tokens/s' of a ViT, whose analyze and predict say samples/s
    import mlfootprint as mf
    from mlfootprint.report.render import render
    from mlfootprint.report.layout import ranked_layouts

    rep = mf.plan("tests/data/configs/tiny-vit", mf.Workload(hardware="h100-sxm", devices=2, batch=8))
    text = render(rep, "table", None)
    assert "samples/s" in text and "tokens/s" not in text and "tok/s" not in text
    assert "samples/s" in ranked_layouts(rep)[0]
    text = render(mf.plan("tests/data/configs/tiny-gpt2", mf.Workload(hardware="h100-sxm", devices=2, seq=32)),
                  "table", None)
    assert "tokens/s" in text and "samples/s" not in text


def test_micro_batches_traced_on_speculation_give_the_same_plan(monkeypatch):
    # While the global batch is traced, the micro-batches the planner will probably ask for are traced in a forked
    # worker (verbs/runnable.py micro_batch_traces); here a guess that differs from what is asked, in another order,
    # and the plan must be the one made without it, with fewer traces made in this process
    from mlfootprint.core import forked
    from mlfootprint.trace import cache
    from mlfootprint.verbs import runnable

    if not forked.can_fork():
        pytest.skip("forking is not safe here")
    made: list[int] = []
    fresh = cache.trace

    def counted(spec, wl, **kw):
        made.append(wl.batch)
        return fresh(spec, wl, **kw)

    monkeypatch.setattr(cache, "trace", counted)
    wl = Workload(batch=64, seq=64, mode="train", precision="bf16-mixed", hardware="a100-80gb", devices=8)

    def planned(jobs: int) -> tuple[dict, int]:
        made.clear()
        section = dict(mf.plan(TINY_LLAMA, wl, cache=False, jobs=jobs).sections["plan"])
        section.pop("plan_s")
        return section, len(made)

    alone, traced_alone = planned(jobs=1)  # --jobs 1: no worker, every trace made here
    # the planner asks for (16, 16-bit), (32, 16-bit), (8, 16-bit) and (8, fp32) here; the guess has the last of
    # them first, one it will not ask for, and another it asks for
    monkeypatch.setattr(runnable, "likely_keys", lambda *a: [(8, "fp32"), (1, "16-bit"), (16, "16-bit")])
    prefetch = runnable.MicroBatchTraces.prefetch

    def after_the_first_guess(self, keys):  # the worker's first trace is done before the planner asks (on a busy
        folder = self.speculation.folder  # machine it might not be: the result is the same, only made here)
        deadline = time.monotonic() + 120
        while self.speculation.running and not os.path.exists(os.path.join(folder, "0.done")) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        return prefetch(self, keys)

    monkeypatch.setattr(runnable.MicroBatchTraces, "prefetch", after_the_first_guess)
    shared, traced_here = planned(jobs=2)
    assert shared == alone
    assert traced_here < traced_alone


def test_the_guess_of_micro_batches_is_for_models_that_must_be_split():
    from mlfootprint.verbs.runnable import likely_keys

    big, small = model_spec("gpt3-175b"), model_spec("gpt2")
    wl = Workload(mode="train", precision="bf16-mixed")
    gib80 = 80 * 2**30
    # 175B parameters × 16 bytes of weights and Adam states cannot fit on one device: 16-bit working weights
    assert likely_keys(big, wl, 1024, gib80) == [(1, "16-bit"), (2, "16-bit"), (4, "16-bit")]
    assert likely_keys(big, wl, 1024, gib80, micro_batch=3) == [(3, "16-bit")]
    assert likely_keys(big, Workload(mode="train", precision="bf16-mixed", mixed_weights="fp32"), 1024, gib80) \
        == [(1, "fp32"), (2, "fp32"), (4, "fp32")]
    # 124M parameters fit on one device (2 GB): its layouts' micro-batches depend on the activations, no guess
    assert likely_keys(small, wl, 8, gib80) == []
    assert likely_keys(big, wl, 1, gib80) == []


def test_plan_jobs_is_checked_and_one_job_forks_nothing(monkeypatch, capsys):
    from mlfootprint.core import forked

    def no_fork():
        raise AssertionError("--jobs 1 forked a worker")

    monkeypatch.setattr(forked.os, "fork", no_fork)
    args = ["plan", "gpt2", "--devices", "8", "--hardware", "a100-80gb", "--seq", "256", "--batch", "64", "--top", "2"]
    assert main([*args, "--jobs", "1"]) == 0
    capsys.readouterr()
    for bad in ("0", "-2"):
        assert main([*args, "--jobs", bad]) == 2
        err = capsys.readouterr().err
        assert "jobs must be a whole number of processes, 1 or more" in err and len(err.strip().splitlines()) == 1
