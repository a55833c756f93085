"""Mixed precision with 16-bit working weights (--mixed-weights 16-bit): the stack of Megatron-LM, NeMo, DeepSpeed
and FSDP's param_dtype, against PyTorch AMP's autocast over fp32 weights (the default).

The model: tests/data/configs/tiny-llama (vocabulary 256, hidden 64, 2 layers, 4 heads of 16 with 2 KV heads,
SwiGLU width 176, untied head). Its parameters by hand: embedding 256·64 = 16,384; per layer q 64·64 = 4,096,
k and v 64·32 = 2,048 each, o 4,096, gate/up/down 3 · 64·176 = 33,792, two norms 128 → 46,208; final norm 64;
head 16,384. Total 16,384 + 2 · 46,208 + 64 + 16,384 = 125,248.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlfootprint.models.source import resolve
from mlfootprint.trace import run
from mlfootprint.trace.optim import MasterWeights, master_copies
from mlfootprint.workload import Workload

from conftest import run_cli

pytest.importorskip("transformers")

CONFIG = Path(__file__).parent / "data" / "configs" / "tiny-llama"
PARAMS = 125_248
STEP = dict(batch=2, seq=32, mode="train", precision="bf16-mixed", hardware="h100-sxm")


@pytest.fixture(scope="module")
def traces():
    spec = resolve(str(CONFIG))
    return {w: run.trace(spec, Workload(**STEP, mixed_weights=w), dedup=False) for w in ("fp32", "16-bit")}


def test_the_weights_are_16_bit_and_the_optimizer_states_stay_fp32(traces):
    amp, half = traces["fp32"], traces["16-bit"]
    assert amp.param_bytes == 4 * PARAMS and half.param_bytes == 2 * PARAMS
    assert {p.dtype for p in half.params} == {"bfloat16"}
    # Adam's m and v belong to the fp32 masters under 16-bit weights, to the fp32 weights themselves under autocast
    assert amp.optimizer_state_bytes == half.optimizer_state_bytes == 2 * 4 * PARAMS
    # the gradients the backward leaves are the weights' own dtype
    assert amp.grad_bytes == 4 * PARAMS and half.grad_bytes == 2 * PARAMS


def test_no_autocast_weight_casts_and_a_16_bit_residual_stream(traces):
    amp, half = traces["fp32"], traces["16-bit"]
    casts = [r for r in amp.records if r.phase == "forward" and r.op == "aten._to_copy.default" and r.out_dtype == "bfloat16"]
    assert len(casts) >= 2 * 7 + 1  # autocast's copies of each layer's seven weights and of the head, at least
    assert amp.memory.param_casts and not half.memory.param_casts
    # the residual adds of the decoder layers: fp32 under autocast (the embedding's fp32 output flows through),
    # bf16 with 16-bit weights
    def residual_dtypes(tr):
        return {r.out_dtype for r in tr.records if r.phase == "forward" and r.op == "aten.add.Tensor"
                and r.module in ("model.layers.0", "model.layers.1")}
    assert residual_dtypes(amp) == {"float32"} and residual_dtypes(half) == {"bfloat16"}
    assert all(r.out_dtype == "bfloat16" for r in half.records if r.phase == "forward" and r.model_flops)
    assert any("16-bit working weights" in a for a in half.assumptions)


def test_the_master_step_updates_fp32_copies_and_writes_the_weights_back():
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        w = torch.nn.Parameter(torch.ones(4, 3, dtype=torch.bfloat16))
        w.grad = torch.ones(4, 3, dtype=torch.bfloat16)
        masters = master_copies([w])
        step = MasterWeights([w], masters, torch.optim.SGD(masters, lr=0.5))
        assert step.masters[0].dtype == torch.float32 and step.masters[0].grad.dtype == torch.float32
        assert len(step.storages()) == 2  # the master and its gradient buffer
    # on real tensors: 1 - 0.5 · 1 = 0.5 in the fp32 master, copied back into the bf16 weight
    w = torch.nn.Parameter(torch.ones(4, 3, dtype=torch.bfloat16))
    w.grad = torch.ones(4, 3, dtype=torch.bfloat16)
    masters = master_copies([w])
    step = MasterWeights([w], masters, torch.optim.SGD(masters, lr=0.5))
    step.step()
    assert step.masters[0].dtype == torch.float32 and torch.equal(step.masters[0], torch.full((4, 3), 0.5))
    assert w.dtype == torch.bfloat16 and torch.equal(w.detach(), torch.full((4, 3), 0.5, dtype=torch.bfloat16))


def test_activations_shrink_and_the_cli_states_the_choice():
    figures = {}
    for w in ("fp32", "16-bit"):
        out = run_cli("memory", str(CONFIG), "--mode", "train", "--batch", "2", "--seq", "32", "--hardware",
                      "h100-sxm", "--precision", "bf16-mixed", "--mixed-weights", w, "--format", "json", "--no-cache")
        assert out.returncode == 0, out.stderr
        rep = json.loads(out.stdout)
        assert rep["workload"]["mixed_weights"] == w
        figures[w] = rep["memory"]["activations_bytes"]
    assert figures["16-bit"] < figures["fp32"]
    bad = run_cli("memory", str(CONFIG), "--mixed-weights", "8-bit")
    assert bad.returncode == 2 and "--mixed-weights" in bad.stderr and "Traceback" not in bad.stderr


def test_inference_keeps_the_weights_in_their_traced_dtype():
    # 125,248 parameters: 4 B each under autocast over fp32 weights, 2 B each as 16-bit working weights
    for w, nbytes in (("fp32", 4), ("16-bit", 2)):
        out = run_cli("memory", str(CONFIG), "--mode", "inference", "--seq", "32", "--hardware", "h100-sxm",
                      "--precision", "bf16-mixed", "--mixed-weights", w, "--format", "json", "--no-cache")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["memory"]["weights_bytes"] == nbytes * PARAMS


def test_auto_takes_16_bit_weights_under_zero_3_or_a_model_split():
    # FSDP's param_dtype and DeepSpeed's bf16 engine gather and compute with 16-bit weights under ZeRO-3; Megatron-LM,
    # NeMo, DeepSpeed's pipeline engine and TorchTitan run tensor, pipeline and context parallelism over 16-bit
    # weights; PyTorch AMP's DDP (with or without ZeroRedundancyOptimizer) runs autocast over fp32 weights
    from mlfootprint.trace.cache import trace_key
    mixed = Workload(**STEP)
    assert mixed.mixed_weights == "auto" and mixed.mixed_weights_resolved == "fp32" and mixed.autocast
    for zero, expected in ((0, "fp32"), (1, "fp32"), (2, "fp32"), (3, "16-bit")):
        assert Workload(**STEP, zero=zero).mixed_weights_resolved == expected, zero
    for split in (dict(tp=2), dict(pp=2), dict(cp=2), dict(tp=2, pp=2, zero=1)):
        assert Workload(**STEP, **split).mixed_weights_resolved == "16-bit", split
        assert Workload(**STEP, **split, mixed_weights="fp32").mixed_weights_resolved == "fp32", split
    assert mixed.mixed_weights_at(0, 4) == "16-bit" and mixed.mixed_weights_at(1, 1) == "fp32"
    assert Workload(**STEP, zero=3).weights_16bit and not Workload(**STEP, zero=3).autocast
    assert not Workload(**STEP, zero=3, mixed_weights="fp32").weights_16bit  # as given
    assert not Workload(batch=2, seq=32, mode="train", precision="fp32", zero=3).weights_16bit
    spec = resolve(str(CONFIG))
    # one trace serves auto under ZeRO-3 and 16-bit
    assert trace_key(spec, Workload(**STEP, zero=3)) == trace_key(spec, Workload(**STEP, mixed_weights="16-bit"))
    assert trace_key(spec, Workload(**STEP, zero=1)) == trace_key(spec, Workload(**STEP, mixed_weights="fp32"))


def test_zero_3_is_sized_and_timed_with_16_bit_weights_by_default():
    args = ["memory", str(CONFIG), "--mode", "train", "--batch", "2", "--seq", "32", "--hardware", "h100-sxm",
            "--precision", "bf16-mixed", "--zero", "3", "--dp", "2", "--devices", "2", "--format", "json", "--no-cache"]
    auto = json.loads(run_cli(*args).stdout)
    half = json.loads(run_cli(*args, "--mixed-weights", "16-bit").stdout)
    amp = json.loads(run_cli(*args, "--mixed-weights", "fp32").stdout)
    assert auto["workload"]["mixed_weights"] == "auto"
    assert auto["memory"]["peak_bytes"] == half["memory"]["peak_bytes"] != amp["memory"]["peak_bytes"]
    assert auto["memory"]["activations_bytes"] == half["memory"]["activations_bytes"] < amp["memory"]["activations_bytes"]
    assert any("--mixed-weights auto under ZeRO-3" in a for a in auto["assumptions"])


def test_gradients_follow_megatron_under_a_model_split():
    # Megatron-LM forces fp32 main gradients under --bf16 (accumulate_allreduce_grads_in_fp32): reduced in fp32 and
    # held in fp32; under fp16 it keeps and reduces 16-bit gradients; ZeRO-3 reduce-scatters 16-bit ones; autocast over
    # fp32 weights leaves fp32 gradients (PyTorch DDP)
    bf16 = Workload(**STEP, tp=2)
    assert bf16.grad_reduce_resolved == "fp32" and bf16.fp32_main_grads_at(0, 2)
    fp16 = Workload(**{**STEP, "precision": "fp16-mixed"}, tp=2)
    assert fp16.grad_reduce_resolved == "compute" and not fp16.fp32_main_grads_at(0, 2)
    assert Workload(**STEP, tp=2, zero=3).grad_reduce_resolved == "compute"
    assert Workload(**STEP).grad_reduce_resolved == "fp32" and not Workload(**STEP).fp32_main_grads_at(0, 1)
    assert Workload(**STEP, tp=2, grad_reduce_dtype="compute").grad_reduce_resolved == "compute"
    assert not Workload(**STEP, tp=2, grad_reduce_dtype="compute").fp32_main_grads_at(0, 2)
    # fp8-mixed computes the rest in bf16: Megatron's --bf16 --fp8-format
    assert Workload(**{**STEP, "precision": "fp8-mixed"}, pp=2).grad_reduce_resolved == "fp32"


@pytest.mark.parametrize("precision, weights, grad_per_weight, opt_per_weight", [
    # bf16 over a model split: 2 B weights, 4 B fp32 main gradients, 4 B fp32 masters + 8 B of Adam states
    ("bf16-mixed", "auto", 2, 6),
    # fp16: 16-bit gradients
    ("fp16-mixed", "auto", 1, 6),
    # AMP on request: 4 B weights and gradients, the weights the masters, 8 B of Adam states
    ("bf16-mixed", "fp32", 1, 2),
])
def test_model_states_of_a_tensor_parallel_layout(precision, weights, grad_per_weight, opt_per_weight):
    out = run_cli("memory", str(CONFIG), "--mode", "train", "--batch", "2", "--seq", "32", "--hardware", "h100-sxm",
                  "--precision", precision, "--mixed-weights", weights, "--tp", "2", "--dp", "1", "--devices", "2",
                  "--optimizer", "adam", "--format", "json", "--no-cache")
    assert out.returncode == 0, out.stderr
    mem = json.loads(out.stdout)["memory"]
    w = mem["weights_bytes"]
    assert mem["gradients_bytes"] == pytest.approx(grad_per_weight * w, rel=1e-9)
    assert mem["optimizer_bytes"] == pytest.approx(opt_per_weight * w, rel=1e-9)
    # half the parameters' matrices on each of 2 tensor-parallel ranks, each 2 or 4 bytes
    per_param = 4 if weights == "fp32" else 2
    assert PARAMS * per_param / 2 < w < PARAMS * per_param
