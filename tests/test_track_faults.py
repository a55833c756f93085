"""`mlfootprint.track` never breaks the user's loop (issue 14): bad step() arguments are warned about once and
their step left out; a meter that blocks is abandoned after meter_timeout_s; nested trackers measure exactly what
each would alone; bad constructor arguments are one-line UserErrors before the loop; NaN/inf never reach the
JSON; a rank that dies (or a job store that hangs) does not stop the surviving ranks from finishing their report.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import ClassVar

import pytest
import torch

import mlfootprint as mf
from mlfootprint.core.errors import UserError
from mlfootprint.measure import distributed as dist_mod
from mlfootprint.measure import track as track_mod
from mlfootprint.measure.distributed import RankLog, rank_file
from mlfootprint.measure.energy import EnergyMeter, EnergyReading
from helpers import FakeClock

A100_BF16 = 312e12  # the catalog's dense bf16 peak of a100-80gb (tests/test_track.py checks it)




def strict_json(text: str) -> dict:
    """json.loads that refuses NaN, Infinity and -Infinity (as a strict parser, e.g. JavaScript's, does)."""
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


# --------------------------------------------------------------------------- bad step() arguments


@pytest.mark.parametrize("bad", ["8", [8], object(), -5, float("nan"), float("inf"), True, torch.tensor(1j)],
                         ids=["str", "list", "object", "negative", "nan", "inf", "bool", "complex-tensor"])
def test_bad_tokens_warn_once_and_leave_that_step_out(bad, tmp_path, caplog):
    clock = FakeClock()
    out = tmp_path / "run.json"
    with caplog.at_level(logging.WARNING, logger="mlfootprint.track"):
        with mf.track(hardware="a100-80gb", precision="bf16", flops_per_token=1e12, energy=False, warmup_steps=0,
                      report=out, clock=clock) as t:
            for i in range(8):
                clock.advance(0.5 if i not in (2, 5) else 7.0)  # the two bad steps are also slow ones
                t.step(tokens=bad if i in (2, 5) else 10)  # raises nothing
    m = t.report.sections["measured"]
    # 6 good steps of 10 tokens in 0.5 s each; the bad steps (and their 7 s) are left out of every figure
    assert m["steps"] == 6 and m["tokens"] == 60
    assert [r["step_s"] for r in m["series"]] == [0.5] * 6
    assert m["tokens_per_s"] == 20.0
    assert m["mfu"] == pytest.approx(60 * 1e12 / (3.0 * A100_BF16))
    warnings = [r.getMessage() for r in caplog.records if "t.step() got" in r.getMessage()]
    assert len(warnings) == 1 and "left out" in warnings[0]  # once per run, not per call
    assert any("2 optimizer step(s) left out" in a and "2 call(s)" in a for a in t.report.assumptions)
    data = strict_json(out.read_text())
    assert data["measured"]["tokens_per_s"] == 20.0


def test_a_bad_call_inside_gradient_accumulation_keeps_micro_step_in_line():
    clock = FakeClock()
    seen = []
    with mf.track(grad_accum=4, energy=False, warmup_steps=0, clock=clock) as t:
        for k in range(12):
            clock.advance(0.25)
            t.step(tokens="many" if k == 5 else 100)
            seen.append(t.micro_step)
        clock.advance(0.25)
        t.step(tokens=1, optimizer_step="yes")  # not a bool: this (unfinished) step is left out too
    # micro_step follows the user's loop exactly: the optimizer steps happen where they would without tracking
    assert seen == [1, 2, 3, 0] * 3
    m = t.report.sections["measured"]
    assert m["steps"] == 2 and m["tokens"] == 800  # optimizer steps 1 and 3; step 2 held the bad call
    assert [r["step_s"] for r in m["series"]] == [1.0, 1.0]


def test_a_tensor_of_tokens_holding_nan_leaves_its_step_out():
    clock = FakeClock()
    with mf.track(energy=False, warmup_steps=0, clock=clock) as t:
        for value in (4.0, float("nan"), 4.0, -1.0, 4.0):
            clock.advance(1.0)
            t.step(tokens=torch.tensor(value))  # checked when recorded, not in step(): no device sync per step
    m = t.report.sections["measured"]
    assert m["steps"] == 3 and m["tokens"] == 12.0 and m["tokens_per_s"] == 4.0


# --------------------------------------------------------------------------- meters


class BlockingMeter(EnergyMeter):
    """Reads 2 J per read, until `block_from`: then read() waits until released (a hung driver)."""

    name = "stuck"
    provenance = "measured"
    method = "test"

    def __init__(self, block_from: int = 1, block_start: bool = False) -> None:
        self.reads = 0
        self.block_from = block_from
        self.block_start = block_start
        self.release = threading.Event()

    def start(self) -> None:
        if self.block_start:
            self.release.wait(60)

    def read(self) -> EnergyReading:
        self.reads += 1
        if self.reads >= self.block_from:
            self.release.wait(60)
        return EnergyReading(2.0 * self.reads, {"gpu0": 2.0 * self.reads}, 1.0, "measured", "test")

    def stop(self) -> EnergyReading:
        return self.read()


def test_a_meter_whose_read_blocks_is_abandoned_once_and_the_loop_goes_on(caplog):
    meter = BlockingMeter(block_from=3)
    clock = FakeClock()
    try:
        with caplog.at_level(logging.WARNING, logger="mlfootprint.track"):
            with mf.track(energy=meter, meter_timeout_s=0.2, sample_interval_s=0, warmup_steps=0,
                          clock=clock) as t:
                for _ in range(10):
                    clock.advance(0.5)
                    t.step(tokens=10)
    finally:
        meter.release.set()
    m = t.report.sections["measured"]
    assert m["steps"] == 10 and m["tokens"] == 100 and m["tokens_per_s"] == 20.0  # every step is there
    assert meter.reads == 3  # the third read blocked; the meter was never asked again
    assert "energy_j" not in m
    assert "did not answer within 0.2 s" in m["unavailable"]["energy_j"] and "read()" in m["unavailable"]["energy_j"]
    assert m["partial_energy_j"] == 4.0  # the last read that answered (2 reads × 2 J)
    assert sum("did not answer" in r.getMessage() for r in caplog.records) == 1


def test_a_meter_whose_start_blocks_leaves_energy_unavailable():
    meter = BlockingMeter(block_start=True)
    try:
        with mf.track(energy=meter, meter_timeout_s=0.2, warmup_steps=0, clock=FakeClock()) as t:
            t.step(tokens=1)
    finally:
        meter.release.set()
    m = t.report.sections["measured"]
    assert m["steps"] == 1 and "start() blocked" in m["unavailable"]["energy_j"]


class NanMeter(BlockingMeter):
    def read(self) -> EnergyReading:
        return EnergyReading(float("nan"), {"gpu0": float("inf")}, 1.0, "measured", "test")


def test_nan_and_inf_from_a_meter_are_null_in_strict_json(tmp_path):
    out = tmp_path / "run.json"
    clock = FakeClock()
    with mf.track(energy=NanMeter(block_from=10**9), report=out, warmup_steps=0, clock=clock) as t:
        for _ in range(3):
            clock.advance(1.0)
            t.step(tokens=5)
    text = out.read_text()
    data = strict_json(text)  # parses: no NaN / Infinity anywhere
    assert "NaN" not in text and "Infinity" not in text
    assert data["measured"]["tokens"] == 15
    assert "energy_j" not in data["measured"] or data["measured"]["energy_j"] is None
    notes = " ".join(data["assumptions"])
    assert "not finite, written as null" in notes and "energy.energy_j (nan)" in notes


def test_a_clock_giving_nan_cannot_put_nan_in_the_report(tmp_path):
    values = iter([0.0, 1.0, float("nan"), 3.0, 4.0] + [5.0] * 20)
    out = tmp_path / "run.json"
    with mf.track(energy=False, report=out, warmup_steps=0, clock=lambda: next(values)) as t:
        for _ in range(3):
            t.step(tokens=1)
    data = strict_json(out.read_text())
    # start at 0; steps end at 1, nan (left out, the next step measures from 1), 3
    assert [r["step_s"] for r in data["measured"]["series"]] == [1.0, 2.0]
    assert any("clock gave no usable time" in a for a in data["assumptions"])


# --------------------------------------------------------------------------- nested trackers


class FakeFlops:
    model = 1000.0
    hardware = 1000.0
    unsupported_ops: ClassVar[dict] = {}


def test_nested_trackers_each_measure_exactly_what_they_would_alone(monkeypatch):
    """Each tracker's trace (and report) is its own work: it is left out of the other tracker's steps. Here a
    trace takes 5 s of the shared (fake) clock; without that rule the outer tracker's step holding the inner one's
    trace read 5.5 s instead of 0.5 s, and its MFU fell 8/3 ≈ 2.7× (more for faster steps: 40× was seen)."""
    clock = FakeClock()

    def slow_trace(*args, **kwargs):
        clock.advance(5.0)
        return FakeFlops(), []

    monkeypatch.setattr(track_mod, "trace_flops", slow_trace)
    model = mlp()

    def loop(nested: bool) -> tuple:
        outer = mf.track(model=model, hardware="a100-80gb", precision="bf16", energy=False, warmup_steps=0,
                         clock=clock)
        inner = None
        with outer:
            for i in range(6):
                if nested and i == 2:  # a second tracker starts mid-run, inside the first
                    inner = mf.track(model=model, hardware="a100-80gb", precision="bf16", energy=False,
                                     warmup_steps=0, clock=clock).start()
                model(torch.randn(8, 16)).sum().backward()
                clock.advance(0.5)
                if inner is not None:
                    inner.step(tokens=8)
                outer.step(tokens=8)
            if inner is not None:
                inner.stop()
        return outer, inner

    alone, _ = loop(False)
    outer, inner = loop(True)
    a, o, n = (x.report.sections["measured"] for x in (alone, outer, inner))
    assert [r["step_s"] for r in a["series"]] == [0.5] * 6
    assert [r["step_s"] for r in o["series"]] == [0.5] * 6  # the inner trace's 5 s are not the outer's
    assert [r["step_s"] for r in n["series"]] == [0.5] * 4  # nor the outer's 5 s the inner's
    # 1000 FLOPs per forward+backward × 1 forward / 8 tokens, over 0.5 s steps of 8 tokens
    assert o["model_flops_per_token"] == n["model_flops_per_token"] == a["model_flops_per_token"] == 125.0
    assert o["mfu"] == a["mfu"] == n["mfu"] == pytest.approx(8 * 125.0 / (0.5 * A100_BF16))
    assert any("other trackers' own work" in x for x in outer.report.assumptions)


def test_nested_trackers_on_one_real_model_trace_the_same_flops():
    model = mlp()
    with mf.track(model=model, hardware="a100-80gb", energy=False) as outer:
        with mf.track(model=model, hardware="a100-80gb", energy=False) as inner:
            for _ in range(3):
                model(torch.randn(8, 16)).pow(2).mean().backward()
                inner.step(tokens=8)
                outer.step(tokens=8)
            assert mf.track.current() is inner
        assert mf.track.current() is outer
    # tests/test_track.py derives 22,528 FLOPs per micro-batch of 8 for this MLP: 2,816 per sample
    for t in (outer, inner):
        m = t.report.sections["measured"]
        assert m["model_flops_per_token"] == 2816 and m["forwards_in_first_step"] == 1
    assert not model._forward_pre_hooks


# --------------------------------------------------------------------------- constructor arguments


@pytest.mark.parametrize("kwargs, words", [
    ({"report": 5}, "report must be a file path"),
    ({"report": ""}, "report must be a file path"),
    ({"device": "banana"}, "not a torch device"),
    ({"device": 3.5}, "device must be a torch device"),
    ({"device": "meta"}, "meta"),
    ({"hardware": 5}, "hardware must be a catalog device id"),
    ({"name": 5}, "name must be a string"),
    ({"energy": "yes"}, "energy must be True, False or an EnergyMeter"),
    ({"sync": "no"}, "sync must be True or False"),
    ({"clock": 5}, "clock must be a callable"),
    ({"log": "stderr"}, "log must be a callable"),
    ({"precision": 16}, "precision must be a name"),
    ({"meter_timeout_s": -1}, "meter_timeout_s must be a number of seconds"),
    ({"tokens_per_step": float("nan")}, "tokens_per_step must be a positive number"),
    ({"optimizer": "banana"}, "banana"),
])
def test_bad_constructor_arguments_are_one_line_user_errors(kwargs, words):
    with pytest.raises(UserError) as info:
        mf.track(**kwargs)
    msg = str(info.value)
    assert words in msg and "\n" not in msg


def test_a_cuda_device_that_is_not_there_is_refused():
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UserError) as info:
        mf.track(device=f"cuda:{n + 6}")
    msg = str(info.value)
    if n == 0:
        assert "is not available here" in msg and "device='cpu'" in msg
    else:
        assert f"torch sees {n} cuda device(s)" in msg


# --------------------------------------------------------------------------- rank death


class HungStore:
    """The job's key-value store after the rank serving it died: every call blocks."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.returned = 0  # calls that came back (none may have, when the tracker finished: it did not wait)

    def _block(self, *args, **kwargs):
        self.calls += 1
        try:
            self.release.wait(60)
            raise RuntimeError("store connection closed")
        finally:
            self.returned += 1

    set = check = get = delete_key = _block


def test_a_surviving_rank_finishes_its_report_when_the_store_hangs(monkeypatch, tmp_path, caplog):
    store = HungStore()
    monkeypatch.setattr(dist_mod, "rank_info", lambda: (1, 2, 1))
    monkeypatch.setattr(dist_mod, "default_store", lambda: store)
    clock = FakeClock()
    try:
        with caplog.at_level(logging.WARNING, logger="mlfootprint.track"):
            with mf.track(energy=False, warmup_steps=0, gather_timeout_s=1, report=tmp_path / "run.json",
                          clock=clock) as t:
                for _ in range(3):
                    clock.advance(0.5)
                    t.step(tokens=4)
        assert store.returned == 0  # finished without waiting for the hung store
    finally:
        store.release.set()
    assert store.calls == 1  # it tried to publish once, gave up after the timeout
    rec = t.records[0]
    assert rec["rank"] == 1 and rec["status"] == "complete" and len(rec["series"]) == 3
    assert t.report.sections["measured"]["tokens"] == 12 and t.report.sections["measured"]["tokens_per_s"] == 8.0
    assert any("could not publish" in r.getMessage() for r in caplog.records)
    # its own file holds the final record, for rank 0 or a later merge
    final = dist_mod.read_rank_file(rank_file(tmp_path / "run.json.ranks", 1))
    assert final["status"] == "complete" and [r["tokens"] for r in final["series"]] == [4, 4, 4]


def test_rank_0_reports_when_another_rank_died_and_the_store_hangs(monkeypatch, tmp_path):
    store = HungStore()
    monkeypatch.setattr(dist_mod, "rank_info", lambda: (0, 3, 0))
    monkeypatch.setattr(dist_mod, "default_store", lambda: store)
    ranks = tmp_path / "run.json.ranks"
    # rank 1 died after flushing two steps (no final record); rank 2 left nothing
    log = RankLog(rank_file(ranks, 1))
    log.write({"kind": "header", "record": {"rank": 1, "world_size": 3, "status": "running"}})
    log.write({"kind": "steps", "rows": [{"step": k, "step_s": 0.5, "tokens": 4, "micro_steps": 1, "t_s": 0.5 * k}
                                         for k in (1, 2)]})
    clock = FakeClock()
    try:
        with mf.track(energy=False, warmup_steps=0, gather_timeout_s=1, report=tmp_path / "run.json",
                      clock=clock) as t:
            for _ in range(3):
                clock.advance(0.5)
                t.step(tokens=4)
        assert store.calls >= 1 and store.returned == 0  # asked the store, did not wait for it
    finally:
        store.release.set()
    data = strict_json((tmp_path / "run.json").read_text())
    m = data["measured"]
    assert m["status"] == "incomplete" and m["ranks"] == 3 and m["ranks_reporting"] == 2
    assert m["by_rank"]["0"]["status"] == "complete" and m["by_rank"]["0"]["tokens"] == 12
    assert m["by_rank"]["1"]["status"] == "partial" and m["by_rank"]["1"]["tokens"] == 8
    assert m["by_rank"]["2"]["status"] == "missing"
    assert m["tokens"] == 12 + 8  # the tokens of the ranks that reported (rank 2 is listed as missing)
