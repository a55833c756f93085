"""FSDP2's two buffer copies on the compute stream (ZeRO-3 on PyTorch's eager or compiled stack), against
hand-derived seconds: after each weight all-gather the gathered buffer is copied into the parameters (read + write),
and before each gradient reduce-scatter the unsharded gradients are copied into the reduce-dtype buffer (read in
their dtype, written in the reduce dtype); see analysis/predict/data/step_model.toml [fsdp2] for the code they are
read from. DeepSpeed and Megatron (the fused stack) gather into and reduce from buffers in place: no copies.

The synthetic profile is tests/test_predict_step.py's: memory at 1e12 B/s; 1e9 parameters with bf16 working weights
(2e9 B gathered) and gradients reduced in fp32 (4e9 B): per micro-batch the copy-out moves 2 × 2e9 B per gather
(4 ms at 1e12 B/s) and the copy-in 1e9 × (2 + 4) B (6 ms): 4 ms in the forward, 4 + 6 ms in the backward.
"""
from __future__ import annotations

import json

import pytest

from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.fusion import FusionSummary
from mlfootprint.analysis.predict.step import step_time
from mlfootprint.hardware.catalog import get_device
from mlfootprint.workload import Layout

from conftest import ROOT, run_cli
from test_predict_step import EXACT, SHAPE, profile

A100 = get_device("a100-80gb")
TINY = str(ROOT / "tests" / "data" / "configs" / "tiny-gpt2")
COPY_OUT_S = 2 * 2e9 / 1e12  # one gather's copy-out: the 2e9 B buffer read, the parameters written
COPY_IN_S = 1e9 * (2 + 4) / 1e12  # bf16 gradients read, the fp32 reduce-scatter input written


def run(stack: str, **layout):
    prof = profile()
    prof.fusion = FusionSummary(stack, "test")
    return step_time(prof, SHAPE, Layout(**layout), A100, efficiency_for(A100, EXACT))


@pytest.mark.parametrize("stack", ["none", "compiled"])
def test_zero3_on_pytorchs_stack_pays_the_copy_out_twice_and_the_copy_in_once_per_micro_batch(stack):
    fused, eager = run("fused", dp=8, zero=3, micro_batch=8), run(stack, dp=8, zero=3, micro_batch=8)
    assert eager.micro_batches == 1
    assert eager.step_s - fused.step_s == pytest.approx(2 * COPY_OUT_S + COPY_IN_S)  # 14 ms
    assert eager.phases["forward_s"] - fused.phases["forward_s"] == pytest.approx(COPY_OUT_S)
    assert eager.phases["backward_s"] - fused.phases["backward_s"] == pytest.approx(COPY_OUT_S + COPY_IN_S)
    assert eager.breakdown["memory_s"] - fused.breakdown["memory_s"] == pytest.approx(2 * COPY_OUT_S + COPY_IN_S)
    assert eager.volumes["fsdp_copy_bytes"] == pytest.approx(2 * 4e9 + 6e9)
    # the collectives themselves are the same on either stack
    assert eager.communication["dp_s"] == pytest.approx(fused.communication["dp_s"])
    assert eager.communication["dp_exposed_s"] == pytest.approx(fused.communication["dp_exposed_s"])
    assert any(n.startswith("ZeRO-3 as PyTorch's FSDP2") and "4 GB read and written" in n and "6 GB" in n
               for n in eager.notes)
    assert not any("FSDP2" in n for n in fused.notes) and "fsdp_copy_bytes" not in fused.volumes


def test_the_copies_repeat_for_every_micro_batch_and_shrink_with_the_pipeline_stages():
    # micro-batch 4: two micro-batches per replica, each gathering and reducing again
    two = run("none", dp=8, zero=3, micro_batch=4)
    assert two.micro_batches == 2
    assert two.step_s - run("fused", dp=8, zero=3, micro_batch=4).step_s == pytest.approx(2 * (2 * COPY_OUT_S
                                                                                                  + COPY_IN_S))
    # two pipeline stages: each device holds half the weights and gradients, so half the copies
    staged = run("none", dp=4, pp=2, zero=3, micro_batch=16)
    assert staged.volumes["fsdp_copy_bytes"] == pytest.approx((2 * 4e9 + 6e9) / 2)


def test_no_copies_below_zero3_or_under_deepspeeds_zeropp():
    for layout in ({"dp": 8, "zero": 2, "micro_batch": 8}, {"dp": 8, "zero": 1, "micro_batch": 8},
                   {"dp": 8, "zero": 3, "zeropp": True, "micro_batch": 8}):
        eager, fused = run("none", **layout), run("fused", **layout)
        assert eager.step_s == pytest.approx(fused.step_s), layout
        assert "fsdp_copy_bytes" not in eager.volumes


def test_predict_names_the_copies_on_the_eager_stack_and_not_on_the_fused_one():
    """gpt2 under ZeRO-3 on 8 H100: 124,439,808 parameters with bf16 working weights, reduced in bf16 (ZeRO-3's
    default): per micro-batch 2 × 2 × 124,439,808 B copied out per gather and 124,439,808 × (2 + 2) B copied in."""
    common = ["predict", "gpt2", "--mode", "train", "--batch", "8", "--seq", "512", "--zero", "3", "--dp", "8",
              "--devices", "8", "--hardware", "h100-sxm", "--precision", "bf16-mixed", "--format", "json"]
    eager = json.loads(run_cli(*common, "--fusion", "none").stdout)
    fused = json.loads(run_cli(*common, "--fusion", "fused").stdout)
    params = 124_439_808
    note = next(a for a in eager["assumptions"] if a.startswith("ZeRO-3 as PyTorch's FSDP2"))
    assert f"{2 * 2 * params / 1e6:.0f} MB read and written" in note
    assert f"the reduce-scatter buffer ({4 * params / 1e6:.0f} MB)" in note
    assert not any(a.startswith("ZeRO-3 as PyTorch's FSDP2") for a in fused["assumptions"])
    assert any("ZeRO-3 as DeepSpeed and Megatron run it" in a for a in fused["assumptions"])


def test_zero_impl_names_which_zero3_runs_whatever_the_stack():
    # --zero-impl deepspeed on the eager stack: DeepSpeed's in-place buffers, no copies
    ds = run("none", dp=8, zero=3, micro_batch=8, zero_impl="deepspeed")
    assert ds.zero_impl == "deepspeed" and "fsdp_copy_bytes" not in ds.volumes
    assert ds.step_s == pytest.approx(run("fused", dp=8, zero=3, micro_batch=8).step_s)
    # --zero-impl fsdp2 on the fused stack: FSDP2's copies all the same
    fsdp = run("fused", dp=8, zero=3, micro_batch=8, zero_impl="fsdp2")
    assert fsdp.zero_impl == "fsdp2"
    assert fsdp.volumes["fsdp_copy_bytes"] == pytest.approx(2 * 4e9 + 6e9)
    # auto: FSDP2 on PyTorch's stacks, DeepSpeed's on the fused one and under ZeRO++
    assert run("compiled", dp=8, zero=3, micro_batch=8).zero_impl == "fsdp2"
    assert run("fused", dp=8, zero=3, micro_batch=8).zero_impl == "deepspeed"
    assert run("none", dp=8, zero=3, zeropp=True, micro_batch=8).zero_impl == "deepspeed"


def test_fsdp2_runs_no_zeropp_and_a_bad_zero_impl_is_a_one_line_error():
    bad = run_cli("predict", "gpt2", "--mode", "train", "--zero", "3", "--zeropp", "--dp", "16", "--devices", "16",
                  "--hardware", "h100-sxm", "--zero-impl", "fsdp2")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "--zeropp is DeepSpeed's ZeRO++" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    typo = run_cli("predict", "gpt2", "--mode", "train", "--zero-impl", "fsdp3")
    assert typo.returncode == 2 and "Did you mean: fsdp2?" in typo.stderr


def test_the_planner_offers_zeropp_only_where_deepspeed_may_run():
    """ZeRO++ layouts (DeepSpeed's) are searched under auto, never under --zero-impl fsdp2."""
    common = ["plan", TINY, "--devices", "16", "--hardware", "h100-sxm", "--zero", "3", "--seq", "128",
              "--batch", "64", "--top", "50", "--format", "json"]
    auto = json.loads(run_cli(*common).stdout)["plan"]["layouts"]
    fsdp = json.loads(run_cli(*common, "--zero-impl", "fsdp2").stdout)["plan"]["layouts"]
    assert any(lay["zeropp"] for lay in auto)
    assert fsdp and not any(lay["zeropp"] for lay in fsdp)
