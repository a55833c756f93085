"""`mlfootprint.track` in plain training loops: optimizer steps under gradient accumulation, tokens/s and MFU by
hand from a fake clock, FLOPs from the lazy trace, faults (a failing meter, an unwritable report path, a model
that cannot be traced), the decorator form and the report."""
from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

import mlfootprint as mf
from mlfootprint.core.errors import UserError
from mlfootprint.hardware.catalog import get_device
from mlfootprint.measure.energy import EnergyMeter, EnergyReading
from mlfootprint.measure.track import Tracker
from mlfootprint.report.schema import Report
from helpers import FakeClock




def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def train_micro(model: torch.nn.Module, batch: int = 8) -> None:
    loss = model(torch.randn(batch, 16)).pow(2).mean() / 4
    loss.backward()


# --------------------------------------------------------------------------- acceptance: grad accumulation 4


def test_grad_accum_4_counts_optimizer_steps_and_rates_by_hand():
    clock = FakeClock()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    micro_s = [0.5, 0.25, 0.3, 0.2]  # seconds per micro-batch in optimizer steps 1..4
    with mf.track(model=model, hardware="a100-80gb", precision="bf16", grad_accum=4, flops_per_token=1e12,
                  energy=False, clock=clock) as t:
        for dt in micro_s:
            for _ in range(4):
                train_micro(model)
                clock.advance(dt)
                t.step(tokens=100)  # 100 tokens per micro-batch
            assert t.micro_step == 0
            opt.step()
            opt.zero_grad()
    m = t.report.sections["measured"]
    # 16 calls of step() = 4 optimizer steps of 4 micro-batches, 400 tokens each
    assert m["steps"] == 4 and m["micro_steps"] == 16 and m["tokens"] == 1600
    assert [r["step_s"] for r in m["series"]] == pytest.approx([2.0, 1.0, 1.2, 0.8])
    assert [r["tokens"] for r in m["series"]] == [400, 400, 400, 400]
    # The first step is warm-up: rates use steps 2..4, 1200 tokens in 1.0 + 1.2 + 0.8 = 3.0 s.
    assert m["warmup_steps_excluded"] == 1
    assert m["counted_elapsed_s"] == pytest.approx(3.0)
    assert m["tokens_per_s"] == pytest.approx(1200 / 3.0)
    assert m["step_s"] == pytest.approx(1.0)  # median of 1.0, 1.2, 0.8
    # MFU = 1200 tokens × 1e12 FLOP/token / (3.0 s × A100 bf16 dense peak)
    peak = get_device("a100-80gb").peak_for("bf16")
    assert peak == 312e12
    assert m["peak_flop_per_s"] == peak and m["peak_dtype"] == "bf16"
    assert m["mfu"] == pytest.approx(1200 * 1e12 / (3.0 * 312e12))
    # Per step: step 2 did 400 tokens × 1e12 in 1.0 s
    assert m["series"][1]["mfu"] == pytest.approx(400e12 / (1.0 * 312e12))
    assert m["series"][1]["tokens_per_s"] == pytest.approx(400.0)
    prov = t.report.provenance
    assert prov["measured.mfu"] == "measured" and prov["measured.model_flops_per_token"] == "assumed"
    assert prov["measured.peak_flop_per_s"] == "published"


def test_explicit_optimizer_step_and_an_unfinished_accumulation():
    clock = FakeClock()
    with mf.track(grad_accum=4, tokens_per_step=400, energy=False, warmup_steps=0, clock=clock) as t:
        for _ in range(4):
            clock.advance(0.25)
            t.step()  # tokens_per_step / grad_accum = 100 per call
        for _ in range(2):  # the epoch ends after 2 micro-batches: the user closes the step
            clock.advance(0.25)
            t.step(tokens=50, optimizer_step=True if _ == 1 else None)
        clock.advance(0.25)
        t.step(tokens=10)  # one micro-batch that never reaches an optimizer step
    m = t.report.sections["measured"]
    assert m["steps"] == 2
    assert [(r["micro_steps"], r["tokens"]) for r in m["series"]] == [(4, 400), (2, 100)]
    assert m["tokens_per_s"] == pytest.approx(500 / 1.5)
    assert any("1 micro-batch(es) after the last optimizer step were not counted" in a
               for a in t.report.assumptions)


def test_flops_from_the_lazy_trace_of_the_users_model():
    clock = FakeClock()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with mf.track(model=model, hardware="a100-80gb", grad_accum=4, energy=False, clock=clock) as t:
        for _ in range(3):
            for _ in range(4):
                train_micro(model, batch=8)
                clock.advance(0.1)
                t.step(tokens=8)  # the "tokens" of an MLP: its 8 samples
            opt.step()
            opt.zero_grad()
    m = t.report.sections["measured"]
    # Per micro-batch of 8: forward 2·8·16·32 + 2·8·32·4 = 10,240; backward: Linear 2 (input and weight grads)
    # 2·2·8·32·4 = 4,096, Linear 1 (weight grad only: the input needs none) 2·8·16·32 = 8,192 → 22,528.
    assert m["model_flops_per_micro_batch"] == 22_528
    assert m["forwards_in_first_step"] == 4
    assert m["model_flops_per_token"] == pytest.approx(22_528 * 4 / 32)  # = 2,816
    assert t.report.provenance["measured.model_flops_per_token"] == "counted"
    # MFU: steps 2 and 3, 64 tokens in 0.8 s, over the A100's fp32 peak (the weights are fp32, no autocast)
    assert m["peak_dtype"] == "fp32" and m["peak_flop_per_s"] == 19.5e12
    assert m["mfu"] == pytest.approx(64 * 2816 / (0.8 * 19.5e12))
    assert m["hfu"] == pytest.approx(m["mfu"])  # no recomputation
    assert model[0].weight.grad is None  # the user's model is untouched by the trace (grads zeroed by the loop)
    assert not model._forward_pre_hooks  # and the tracker's hook is gone


def test_autocast_is_detected_as_mixed_precision():
    model = mlp()
    with mf.track(model=model, hardware="a100-80gb", energy=False) as t:
        for _ in range(2):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(torch.randn(4, 16)).float().pow(2).mean()
            loss.backward()
            t.step(tokens=4)
    m = t.report.sections["measured"]
    assert t.report.sections["workload"]["precision"] == "bf16-mixed"
    assert m["peak_dtype"] == "bf16" and m["peak_flop_per_s"] == 312e12


def test_evaluation_passes_under_no_grad_are_not_traced():
    # The first forward is an evaluation under no_grad: it is not the one traced, nor counted as a micro-batch.
    model = mlp()
    with mf.track(model=model, energy=False, warmup_steps=0) as t:
        with torch.no_grad():
            model(torch.randn(2, 16))
        train_micro(model, batch=8)
        t.step(tokens=8)
    assert t.report.sections["measured"]["model_flops_per_micro_batch"] == 22_528


# --------------------------------------------------------------------------- faults


class FlakyMeter(EnergyMeter):
    """1 J per read; raises on the 3rd read."""

    name = "flaky"
    provenance = "measured"
    method = "test counter"

    def __init__(self) -> None:
        self.reads = 0

    def start(self) -> None:
        self.reads = 0

    def read(self) -> EnergyReading:
        self.reads += 1
        if self.reads >= 3:
            raise OSError("sysfs went away")
        return EnergyReading(float(self.reads), {"package-0": float(self.reads)}, 0.1 * self.reads, "measured",
                             self.method)

    def stop(self) -> EnergyReading:
        return self.read()


def test_meter_raising_mid_run_is_logged_once_and_the_loop_goes_on(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="mlfootprint.energy"):
        with mf.track(energy=FlakyMeter(), sample_interval_s=0, warmup_steps=0, clock=clock) as t:
            for _ in range(6):
                clock.advance(0.5)
                t.step(tokens=10)
    m = t.report.sections["measured"]
    assert m["steps"] == 6 and m["tokens"] == 60  # nothing lost
    assert "energy_j" not in m and "failed" in m["unavailable"]["energy_j"]
    assert m["partial_energy_j"] == 2.0  # the last good read
    assert any("sysfs went away" in n for n in m["energy_notes"])
    assert sum("sysfs went away" in r.getMessage() for r in caplog.records) == 1


def test_working_meter_gives_energy_per_step_and_token():
    class Counter(FlakyMeter):
        def read(self) -> EnergyReading:
            self.reads += 1
            return EnergyReading(3.0 * self.reads, {"gpu0": 3.0 * self.reads}, 1.0 * self.reads, "measured", "test")

    with mf.track(energy=Counter(), warmup_steps=0, clock=FakeClock()) as t:
        for _ in range(4):
            t.step(tokens=25)
    m = t.report.sections["measured"]
    # reads: stop() is the first read here (the sample interval was not reached): 3 J
    assert m["energy_j"] == 3.0 and m["energy_per_step_j"] == 0.75 and m["energy_per_token_j"] == 0.03
    assert m["energy_provenance"] == "measured" and t.report.provenance["measured.energy_j"] == "measured"


def test_report_path_in_a_missing_folder_warns_at_start_and_keeps_the_report(tmp_path, caplog):
    bad = tmp_path / "no-such-folder" / "run.json"
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="mlfootprint.track"):
        with mf.track(report=bad, energy=False, clock=clock) as t:
            assert any("cannot write the report" in r.getMessage() for r in caplog.records)  # said up front
            for _ in range(3):
                clock.advance(1.0)
                t.step(tokens=5)
    assert not bad.exists()
    assert t.report.sections["measured"]["steps"] == 3  # kept in memory
    saved = t.save(tmp_path / "elsewhere.json")
    assert Report.load(saved).sections["measured"]["tokens"] == 15


def test_report_folder_removed_during_the_run(tmp_path, caplog):
    folder = tmp_path / "out"
    folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="mlfootprint.track"):
        with mf.track(report=folder / "run.json", energy=False, clock=FakeClock()) as t:
            t.step(tokens=1)
            shutil.rmtree(folder)
            t.step(tokens=1)
    assert t.report_error and "does not exist" in t.report_error
    assert any("could not be written" in r.getMessage() and "tracker.save" in r.getMessage() for r in caplog.records)
    assert t.report.sections["measured"]["steps"] == 2


def test_model_that_cannot_be_traced_leaves_mfu_unavailable_and_the_loop_runs():
    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent: not traceable on fake tensors
                return self.lin(x)
            return self.lin(-x)

    model = Branchy()
    with mf.track(model=model, hardware="a100-80gb", energy=False, clock=FakeClock()) as t:
        for _ in range(3):
            model(torch.ones(2, 4)).sum().backward()
            t.step(tokens=2)
    m = t.report.sections["measured"]
    assert m["steps"] == 3
    assert "mfu" not in m and "could not be traced" in m["unavailable"]["mfu"]
    assert "flops_per_token" in m["unavailable"]["mfu"]


def test_bad_arguments_raise_before_training():
    with pytest.raises(UserError, match="grad_accum must be a positive whole number"):
        mf.track(grad_accum=0)
    with pytest.raises(UserError, match="unknown"):
        mf.track(hardware="a100-81gb")
    with pytest.raises(UserError, match="tokens_per_step"):
        mf.track(tokens_per_step=-1)
    with pytest.raises(UserError, match="must be a torch.nn.Module"):
        mf.track(model="gpt2")


# --------------------------------------------------------------------------- forms and the report


def test_decorator_form_and_current_tracker(tmp_path):
    clock = FakeClock()
    out = tmp_path / "run.json"

    @mf.track(report=out, energy=False, warmup_steps=0, clock=clock)
    def train(n: int, tracker: Tracker) -> int:
        assert mf.track.current() is tracker
        for _ in range(n):
            clock.advance(0.5)
            tracker.step(tokens=10)
        return n

    assert train(4) == 4
    assert mf.track.current() is None
    data = json.loads(out.read_text())
    assert data["verb"] == "track" and data["measured"]["steps"] == 4
    assert data["measured"]["tokens_per_s"] == pytest.approx(40 / 2.0)


def test_report_has_the_schema_series_and_renders(tmp_path):
    from mlfootprint.report.text import render_table

    clock = FakeClock()
    with mf.track(report=tmp_path / "r.json", energy=False, clock=clock) as t:
        for i in range(3):
            clock.advance(0.1 * (i + 1))
            t.step(tokens=7)
    rep = Report.load(tmp_path / "r.json")
    m = rep.sections["measured"]
    assert [r["step"] for r in m["series"]] == [1, 2, 3]
    assert [r["t_s"] for r in m["series"]] == pytest.approx([0.1, 0.3, 0.6])
    assert m["peak_bytes"] > 0 and "resident set" in m["memory_method"]
    text = render_table(rep, None)
    assert "Measured" in text and "tokens_per_s" in text


def test_step_after_stop_is_ignored_and_stop_twice_is_harmless():
    t = mf.track(energy=False, clock=FakeClock())
    with t:
        t.step(tokens=1)
    t.step(tokens=1)
    assert t.stop() is t.report
    assert t.report.sections["measured"]["steps"] == 1
