"""Activation offload (``--offload-activations``, MEMO-style): device memory saved, host memory, host-link traffic,
and the exposed time in predict. Every expected figure is derived by hand in the comment next to it.

The model: tiny-llama with 4 blocks (hidden 64) at batch 4, seq 128, fp32. A block's output, the next block's
input, is one [4, 128, 64] fp32 tensor: 4 × 128 × 64 × 4 = 131,072 bytes.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from mlfootprint.analysis.memory import memory_model
from mlfootprint.analysis.predict.prediction import predict_step
from mlfootprint.analysis.predict.step import _activation_offload, _Communication
from mlfootprint.core.errors import UserError
from mlfootprint.models import resolve
from mlfootprint.trace.run import trace
from mlfootprint.workload import Layout, Workload

warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parent.parent
BLOCK_OUT = 4 * 128 * 64 * 4  # one block's output: 131,072 bytes
LAYERS = 4


@pytest.fixture(scope="module")
def four_blocks(tmp_path_factory) -> str:
    cfg = json.loads((ROOT / "tests/data/configs/tiny-llama/config.json").read_text())
    cfg["num_hidden_layers"] = LAYERS
    d = tmp_path_factory.mktemp("tiny-llama-4")
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


@pytest.fixture(scope="module")
def model(four_blocks):
    spec = resolve(four_blocks)
    wl = Workload(mode="train", batch=4, seq=128, precision="fp32", optimizer="sgd", other_bytes=0)
    return memory_model(spec, wl, trace(spec, wl))


def lay(**kw) -> Layout:
    return Layout(micro_batch=4, precision="fp32", optimizer="sgd", **kw)


def test_full_recomputation_offloads_every_block_input_but_the_heads(model):
    base = model.per_device(lay(recompute="full"))
    est = model.per_device(lay(recompute="full", offload_activations=1.0))
    # Full recomputation keeps each block's output (the next block's input) from forward to backward; offload
    # moves blocks 0..2's outputs to the host (block 3's feeds the head, whose backward runs first): 3 × 131,072.
    assert est.activations_host_bytes == (LAYERS - 1) * BLOCK_OUT == 393_216
    assert est.host_bytes == 393_216  # no model states offloaded
    assert est.activation_offload_traffic_bytes == 2 * 393_216  # out after the forward, back for the backward
    # The activation peak is in block 3's backward: block 2's output is back (block 3 recomputes from it), blocks
    # 0 and 1's are still on the host: 2 × 131,072 = 262,144 bytes fewer.
    assert base.activations_bytes - est.activations_bytes == (LAYERS - 2) * BLOCK_OUT == 262_144
    # The step's peak is not there (gradients and the head's tensors make it): the device saves nothing at the peak.
    assert est.activations_offloaded_bytes == base.peak_bytes - est.peak_bytes == 0


def test_fraction_grad_accum_and_tensor_parallel_scale_the_bytes(model):
    half = model.per_device(lay(recompute="full", offload_activations=0.5))
    assert half.activations_host_bytes == 196_608  # half of 393,216
    accum = model.per_device(lay(recompute="full", offload_activations=1.0, grad_accum=2))
    assert accum.activations_host_bytes == 393_216  # one micro-batch in flight at a time
    assert accum.activation_offload_traffic_bytes == 2 * 2 * 393_216  # two micro-batches, out and back each
    # The residual stream is replicated under tensor parallelism, sharded with sequence parallelism (1/tp each).
    sp = model.per_device(lay(recompute="full", offload_activations=1.0, tp=2, sequence_parallel=True))
    assert sp.activations_host_bytes == 393_216 // 2
    no_sp = model.per_device(lay(recompute="full", offload_activations=1.0, tp=2, sequence_parallel=False))
    assert no_sp.activations_host_bytes == 393_216


def test_without_recomputation_every_saved_block_tensor_moves(model):
    base = model.per_device(lay())
    full = model.per_device(lay(offload_activations=1.0))
    quarter = model.per_device(lay(offload_activations=0.25))
    # Every tensor a block saves for its backward is offloadable: more than the block inputs alone.
    assert full.activations_host_bytes > (LAYERS - 1) * BLOCK_OUT
    assert abs(quarter.activations_host_bytes - full.activations_host_bytes / 4) <= 1  # rounding of one byte
    # Without recomputation the peak is the start of backward, where the saved activations are: the device saves
    # what is then on the host (at most all of it).
    assert 0 < full.activations_offloaded_bytes <= full.activations_host_bytes
    assert full.peak_bytes == base.peak_bytes - full.activations_offloaded_bytes


def test_the_exposed_time_rule_by_hand():
    c = _Communication()
    # 1 GB per micro-batch, 2 micro-batches, 25 GB/s: 0.08 s each way. Sends hide under a 0.05 s forward (0.03 s
    # exposed), fetches under a 0.1 s backward (none exposed).
    _activation_offload(c, 1e9, 2, {"host_link": 25e9}, 0.05, 0.10)
    assert c.act_s == pytest.approx(0.16)
    assert c.act_x == pytest.approx(0.03)
    assert c.volumes["activation_offload_bytes"] == 4e9


def test_predict_adds_only_the_exposed_transfer(four_blocks):
    spec = resolve(four_blocks)
    base_wl = Workload(mode="train", batch=4, seq=128, precision="fp32", optimizer="sgd", recompute="full",
                       hardware="a100-80gb")
    off_wl = base_wl.with_changes(offload_activations="all")
    slow = {"host_link": 1e9}  # a 1 GB/s link: 393,216 bytes take 0.39 ms each way, longer than the compute
    base = predict_step(spec, base_wl, trace(spec, base_wl, checkpoint_early_stop=False), "a100-80gb", efficiency=slow)
    off = predict_step(spec, off_wl, trace(spec, off_wl, checkpoint_early_stop=False), "a100-80gb", efficiency=slow)
    assert off.communication["activation_offload_s"] == pytest.approx(2 * 393_216 / 1e9)
    assert off.volumes["activation_offload_bytes"] == 2 * 393_216
    exposed = off.communication["activation_offload_exposed_s"]
    assert 0 < exposed < off.communication["activation_offload_s"]
    assert off.step_s == pytest.approx(base.step_s + exposed)
    fast = predict_step(spec, off_wl, trace(spec, off_wl, checkpoint_early_stop=False), "a100-80gb")
    assert fast.communication["activation_offload_exposed_s"] == 0  # 25 GB/s: hidden under the compute
    assert fast.step_s == pytest.approx(base.step_s - base.breakdown["compute_s"] + fast.breakdown["compute_s"])


@pytest.mark.parametrize("value", [1.5, -0.1, "half", float("nan")])
def test_bad_fractions_are_user_errors(value):
    with pytest.raises(UserError, match="offload.activations takes a fraction between 0 and 1"):
        Workload(mode="train", offload_activations=value)


def test_all_and_numbers_and_the_mode():
    assert Workload(mode="train", offload_activations="all").offload_activations == 1.0
    assert Workload(mode="train", offload_activations="0.25").offload_activations == 0.25
    with pytest.raises(UserError, match="training step saves"):
        Workload(mode="inference", offload_activations=0.5)
    # without a mode, the option makes the step a training one (tests/test_implied_training.py)
    assert Workload(offload_activations=0.5).mode == "train"
    # listed like every workload field: 0 when not used
    assert Workload(mode="train").to_dict()["offload_activations"] == 0.0
    assert Workload(mode="train", offload_activations=1).to_dict()["offload_activations"] == 1.0


def test_cli_reports_the_offload(four_blocks):
    from conftest import run_cli

    out = run_cli("memory", four_blocks, "--mode", "train", "--batch", "4", "--seq", "128", "--recompute", "full",
                  "--offload-activations", "all", "--optimizer", "sgd", "--format", "json", cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    mem = json.loads(out.stdout)["memory"]
    assert mem["activations_host_bytes"] == 393_216 and mem["activation_offload_traffic_bytes"] == 786_432
    assert mem["offload_activations"] == 1.0
    bad = run_cli("memory", four_blocks, "--mode", "train", "--offload-activations", "2", cwd=str(ROOT))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--offload-activations takes a fraction" in bad.stderr


def test_memo_setting_by_hand():
    # MEMO's 1M-token run (llama-2-7b standing in), TP 8 with sequence parallelism, full recomputation, everything
    # offloaded: the 31 block inputs that can move are each 1,048,576 tokens × 4096 × 2 bytes (the residual stream is
    # bf16: under tensor parallelism --mixed-weights auto takes Megatron-LM's 16-bit working weights) / 8 (sequence
    # parallel): 2^30 bytes, 33,285,996,544 on the host of each GPU.
    spec = resolve("llama-2-7b")
    wl = Workload(mode="train", batch=1, seq=1_048_576, tp=8, devices=8, recompute="full", precision="bf16-mixed",
                  optimizer="adam", hardware="a100-80gb", offload_activations="all")
    est = memory_model(spec, wl, trace(spec, wl)).per_device(Layout.from_workload(wl))
    assert est.activations_host_bytes == 31 * 1_048_576 * 4096 * 2 // 8 == 33_285_996_544
    assert est.activation_offload_traffic_bytes == 2 * 33_285_996_544
    # all of it comes off the peak (in the first block's backward, where every block input waited)
    assert est.activations_offloaded_bytes == 33_285_996_544
    assert est.peak_bytes < 80 * 2**30  # 78.2 GB: it fits the A100-80GB


def test_plan_refuses_what_it_does_not_search():
    import mlfootprint as mf

    with pytest.raises(UserError, match="plan does not search activation offload"):
        mf.plan("gpt2", mf.Workload(mode="train", hardware="a100-80gb", devices=8, offload_activations=0.5))
