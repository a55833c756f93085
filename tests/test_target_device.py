"""The trace as the target device runs it (issue 11, parts 1 and 2).

A GPU target (``--hardware`` of kind gpu) emulates CUDA's kernels on the CPU's fake tensors: fused SDPA
(flash / memory-efficient: output, logsumexp, RNG seed and offset, no T×T tensor) with or without dropout,
one-byte dropout masks, foreach optimizers. The CPU target (no ``--hardware``) keeps the CPU's kernels.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlfootprint as mf
from mlfootprint.models import resolve
from mlfootprint.analysis.memory.timeline import build_profile
from mlfootprint.trace.records import OPTIMIZER
from mlfootprint.trace.run import trace


def _gpt_config(tmp: Path, layers: int, hidden: int, heads: int, seq: int, dropout: float,
                activation: str = "gelu", vocab: int = 1024) -> str:
    """A GPT-2-architecture config (GPT-3 style: pre-LN blocks, exact GeLU, dropout after attention
    probabilities, after attention and after the MLP)."""
    folder = tmp / f"gpt-{layers}-{hidden}-{heads}-{seq}-{dropout}-{activation}-{vocab}"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": layers, "n_embd": hidden,
        "n_head": heads, "n_positions": seq, "vocab_size": vocab, "activation_function": activation,
        "resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout}))
    return str(folder)


def _cli_memory(capsys, model: str, *args: str) -> dict:
    from mlfootprint.cli import main

    code = main(["memory", model, "--format", "json", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


# Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198),
# Table 2 (Sec. 4-5): activation bytes per transformer layer with 16-bit activations and one-byte dropout masks,
# s = sequence, b = micro-batch, h = hidden, a = heads, t = tensor-parallel size:
#   no parallelism            sbh·(34 + 5as/h)              (Eq. 1)
#   tensor parallel           sbh·(10 + 24/t + 5as/(ht))    (Eq. 2)
#   tensor + sequence par.    sbh/t·(34 + 5as/h)            (Eq. 4)
#   tensor par. + selective   sbh·(10 + 24/t)
#   tensor + seq. + selective sbh·34/t                       (Eq. 6)
# Selective recomputation recomputes the attention core (QKᵀ, softmax, softmax dropout, attention over V).
# The paper's model keeps the T×T probabilities, so attention is the eager one; pure bf16 keeps every
# activation 16-bit as the paper assumes. Per layer = the difference between a 4-layer and a 2-layer model
# (embedding, head and loss cancel).
S, H, A, B, T = 512, 512, 8, 2, 4
SBH = S * B * H
KORTHIKANTI = [
    ("none", (), SBH * (34 + 5 * A * S / H)),
    ("tp", ("--tp", str(T), "--no-sequence-parallel"), SBH * (10 + 24 / T + 5 * A * S / (H * T))),
    ("tp+sp", ("--tp", str(T), "--sequence-parallel"), SBH / T * (34 + 5 * A * S / H)),
    ("tp+selective", ("--tp", str(T), "--no-sequence-parallel", "--recompute", "selective"), SBH * (10 + 24 / T)),
    ("tp+sp+selective", ("--tp", str(T), "--sequence-parallel", "--recompute", "selective"), SBH * 34 / T),
]


@pytest.mark.parametrize("row,args,published", KORTHIKANTI, ids=[r[0] for r in KORTHIKANTI])
def test_korthikanti_per_layer_activations_on_a_gpu(capsys, tmp_path, row, args, published):
    acts = []
    for layers in (2, 4):
        rep = _cli_memory(capsys, _gpt_config(tmp_path, layers, H, A, S, 0.1), "--mode", "train",
                          "--batch", str(B), "--seq", str(S), "--precision", "bf16", "--attention", "eager",
                          "--optimizer", "sgd", "--hardware", "h100-sxm", "--other-bytes", "0", *args)
        assert rep["workload"]["kernels"] == "cuda"
        acts.append(rep["memory"]["activations_bytes"])
    per_layer = (acts[1] - acts[0]) / 2
    assert per_layer == pytest.approx(published, rel=0.02)


def test_korthikanti_on_the_cpu_keeps_the_cpu_kernels(capsys, tmp_path):
    # The CPU's dropout keeps its mask in the activation dtype (2 bytes, not 1): 3 masks per layer of
    # sbh, sbh and as²b bytes more than the paper's one-byte masks, i.e. sbh·(34 + 2 + 6as/h) in all.
    acts = []
    for layers in (2, 4):
        rep = _cli_memory(capsys, _gpt_config(tmp_path, layers, H, A, S, 0.1), "--mode", "train",
                          "--batch", str(B), "--seq", str(S), "--precision", "bf16", "--attention", "eager",
                          "--optimizer", "sgd", "--other-bytes", "0")
        assert rep["workload"]["kernels"] == "cpu"
        acts.append(rep["memory"]["activations_bytes"])
    per_layer = (acts[1] - acts[0]) / 2
    assert per_layer == pytest.approx(SBH * (36 + 6 * A * S / H), rel=0.02)


def _activations(model: str, **kw) -> int:
    wl = mf.Workload(mode="train", seq=1024, batch=8, precision="bf16-mixed", **kw)
    return mf.memory(model, wl, other_bytes=0).sections["memory"]["activations_bytes"]


def test_gpt2_sdpa_is_the_smallest_on_a_gpu_with_and_without_dropout(tmp_path):
    # The measurement: on the CPU, SDPA with dropout takes the math path and keeps fp32 T×T tensors
    # (25.6 GB), more than eager attention (20.3 GB). On a GPU the fused kernel keeps none.
    cpu_sdpa, cpu_eager = _activations("gpt2", attention="sdpa"), _activations("gpt2", attention="eager")
    assert cpu_sdpa > cpu_eager  # the CPU target is unchanged
    assert cpu_sdpa == pytest.approx(25.6e9, rel=0.01) and cpu_eager == pytest.approx(20.3e9, rel=0.01)
    gpu_sdpa = _activations("gpt2", attention="sdpa", hardware="h200")
    gpu_eager = _activations("gpt2", attention="eager", hardware="h200")
    assert gpu_sdpa <= gpu_eager
    # without dropout: the same model with every dropout probability 0
    no_drop = _gpt_config(tmp_path, 12, 768, 12, 1024, 0.0, "gelu_new", 50257)  # gpt2's own architecture
    gpu_sdpa0 = _activations(no_drop, attention="sdpa", hardware="h200")
    gpu_eager0 = _activations(no_drop, attention="eager", hardware="h200")
    assert gpu_sdpa0 <= gpu_eager0
    # dropout on a GPU adds only its one-byte masks (25 per step: 12×2 in the blocks, 1 after the embedding)
    # and the fused kernel's RNG state: with s·b·h = 1024·8·768 bytes each, 25 masks are 0.157 GB
    assert gpu_sdpa - gpu_sdpa0 == pytest.approx(25 * 1024 * 8 * 768, rel=0.02)


def test_the_gpu_trace_runs_the_fused_kernels():
    wl = mf.Workload(mode="train", seq=32, batch=2, precision="bf16-mixed", hardware="h200")
    tr = trace(resolve("gpt2"), wl)
    ops = [r.op for r in tr.records]
    assert ops.count("aten._scaled_dot_product_flash_attention.default") == 12
    assert ops.count("aten._scaled_dot_product_flash_attention_backward.default") == 12
    assert ops.count("aten.native_dropout.default") == 25
    # no T×T tensor is kept for backward; every dropout mask is one byte per element
    assert not any(len(s.shape) >= 2 and s.shape[-1] == s.shape[-2] == 32 for s in tr.memory.saved)
    masks = [s for s in tr.memory.saved if s.dtype == "bool"]
    assert len(masks) == 25 and all(s.nbytes == 2 * 32 * 768 for s in masks)
    # the optimizer is CUDA's default foreach implementation
    assert any(r.op.startswith("aten._foreach_") and r.phase == OPTIMIZER for r in tr.records)
    assert tr.kernels == "cuda"
    assert any("flash attention ×12" in a and "fused dropout (bool mask) ×25" in a for a in tr.assumptions)


def test_model_flops_do_not_depend_on_the_target():
    # The fused kernel's recomputed Q·Kᵀ in backward is hardware FLOPs (HFU), never model FLOPs (MFU).
    cpu = mf.count("gpt2", mf.Workload(mode="train", seq=256, batch=2, precision="bf16-mixed")).sections["flops"]
    gpu = mf.count("gpt2", mf.Workload(mode="train", seq=256, batch=2, precision="bf16-mixed",
                                       hardware="h200")).sections["flops"]
    for key in ("forward", "backward", "model", "attention", "optimizer"):
        assert gpu[key] == cpu[key], key
    assert cpu["recompute"] == 0
    # Q·Kᵀ once per layer in backward: 2·B·heads·L·S·E = 2·2·12·256·256·64 per layer, 12 layers
    assert gpu["recompute"] == 12 * 2 * 2 * 12 * 256 * 256 * 64
    assert gpu["hardware"] == gpu["model"] + gpu["recompute"]


def test_foreach_optimizer_temporaries_span_all_parameters():
    # CUDA's foreach AdamW keeps sqrt(v) of every parameter at once (_multi_tensor_adam); the CPU's
    # single-tensor loop one parameter's worth at a time (the denominator and the update of one tensor).
    def temporaries_peak(hardware):
        kw = {"hardware": hardware} if hardware else {}
        tr = trace(resolve("tests/data/configs/tiny-gpt2"), mf.Workload(mode="train", seq=16, **kw))
        marks = []
        for a in build_profile(tr, True, "float32").allocs:
            if a.kind == "opt":  # optimizer-step temporaries (states are kind "state")
                marks += [(a.start, a.size), (a.end, -a.size)]
        live = peak = 0
        for _, delta in sorted(marks, key=lambda m: (m[0], m[1] < 0)):
            live += delta
            peak = max(peak, live)
        return peak, tr
    gpu, tr = temporaries_peak("h200")
    cpu, _ = temporaries_peak(None)
    trainable_bytes = sum(p.numel * 4 for p in tr.params if p.trainable)  # 124,672 fp32 parameters
    largest = max(p.numel * 4 for p in tr.params if p.trainable)  # the 256×64 token embedding
    assert trainable_bytes == 498_688 and largest == 65_536
    assert trainable_bytes <= gpu <= trainable_bytes + 1024  # sqrt(v) of all, plus the step scalars
    assert largest < cpu <= 3 * largest


def test_the_report_states_the_kernels(capsys):
    rep = mf.memory("tests/data/configs/tiny-gpt2", mf.Workload(mode="train", seq=16, hardware="a100-80gb"))
    assert rep.sections["workload"]["kernels"] == "cuda"
    assert any(a.startswith("kernels: --hardware a100-80gb is a gpu") for a in rep.assumptions)
    cpu = mf.memory("tests/data/configs/tiny-gpt2", mf.Workload(mode="train", seq=16))
    assert cpu.sections["workload"]["kernels"] == "cpu"
    assert cpu.provenance.get("workload.kernels") == "assumed"


def test_sequence_parallel_default_follows_plan(capsys):
    tiny = "tests/data/configs/tiny-llama"
    base = ("--mode", "train", "--seq", "64", "--batch", "4", "--precision", "bf16", "--other-bytes", "0")
    default = _cli_memory(capsys, tiny, *base, "--tp", "2")
    on = _cli_memory(capsys, tiny, *base, "--tp", "2", "--sequence-parallel")
    off = _cli_memory(capsys, tiny, *base, "--tp", "2", "--no-sequence-parallel")
    assert default["workload"]["sequence_parallel"] is True  # plan assumes it under --tp
    assert default["memory"]["activations_bytes"] == on["memory"]["activations_bytes"]
    assert off["workload"]["sequence_parallel"] is False
    assert off["memory"]["activations_bytes"] > on["memory"]["activations_bytes"]
    # the API takes the same option with the same default
    api = mf.memory(tiny, mf.Workload(mode="train", seq=64, batch=4, precision="bf16", tp=2), other_bytes=0)
    assert api.sections["memory"]["activations_bytes"] == on["memory"]["activations_bytes"]
    api_off = mf.predict(tiny, mf.Workload(mode="train", seq=64, batch=4, precision="bf16", tp=2,
                                            sequence_parallel=False, hardware="h100-sxm"))
    assert api_off.sections["workload"]["sequence_parallel"] is False
    without_tp = _cli_memory(capsys, tiny, *base)
    assert without_tp["workload"]["sequence_parallel"] is False


def test_full_recomputation_recomputes_with_the_fused_kernels():
    # Activation checkpointing re-runs each block's forward inside backward: that forward must take the same
    # (fused) kernels, or checkpointing sees different saved tensors.
    tiny = resolve("tests/data/configs/tiny-llama")  # 2 layers
    tr = trace(tiny, mf.Workload(mode="train", seq=32, precision="bf16", recompute="full", hardware="h200"))
    flash = [r.phase for r in tr.records if r.op == "aten._scaled_dot_product_flash_attention.default"]
    assert flash == ["forward", "forward", "recompute", "recompute"]


def test_fp8_mixed_on_a_gpu_keeps_transformer_engine_fp8_copies():
    # Transformer Engine FP8 training (trace/data/kernels.toml [fp8], methods.toml [fp8]): each linear layer keeps
    # its input's FP8 cast for backward (1 byte instead of 2) and the weight's FP8 copy and transpose
    # (2 bytes per linear-weight element, with the weights); FLOPs are those of the 16-bit GEMMs.
    tiny = "tests/data/configs/tiny-llama"

    def run(precision, hardware="h100-sxm"):
        wl = mf.Workload(mode="train", seq=64, batch=4, precision=precision, hardware=hardware)
        return (mf.memory(tiny, wl, other_bytes=0).sections["memory"], mf.count(tiny, wl).sections["flops"],
                trace(resolve(tiny), wl))
    bf16, bf16_flops, _ = run("bf16-mixed")
    fp8, fp8_flops, tr = run("fp8-mixed")
    block_linears = [p for p in tr.params if p.name.startswith("model.layers.") and len(p.shape) == 2]
    assert len(block_linears) == 14  # 2 layers × q, k, v, o, gate, up, down
    assert fp8["weights_bytes"] - bf16["weights_bytes"] == 2 * sum(p.numel for p in block_linears)
    assert fp8["breakdown"]["fp8_weight_copies_bytes"] == 2 * sum(p.numel for p in block_linears)
    assert fp8_flops["model"] == bf16_flops["model"] and fp8_flops["forward"] == bf16_flops["forward"]
    assert fp8["activations_bytes"] < bf16["activations_bytes"]
    # per linear layer (14 in the blocks and the head) its FP8 input and FP8 weight are saved
    fp8_saved = {s.storage: s for s in tr.memory.saved if s.dtype == "float8_e4m3fn"}
    assert len(fp8_saved) == 2 * 15
    assert any("FP8 linear layers" in a and "×15" in a for a in tr.assumptions)
    # each FP8 linear's backward GEMMs are its own, as the 16-bit ones are (they once fell to the root module: the
    # autograd node of the FP8 linear, a custom Function, is made before its forward runs, under no_grad)
    def backward_by_module(t):
        out: dict[str, int] = {}
        for r in t.records:
            if r.phase == "backward" and r.model_flops:
                out[r.module] = out.get(r.module, 0) + r.model_flops
        return out
    fp8_bwd = backward_by_module(tr)
    assert "" not in fp8_bwd and fp8_bwd["model.layers.1.mlp.up_proj"] == 2 * 2 * (4 * 64) * 64 * 176
    assert fp8_bwd == backward_by_module(trace(resolve(tiny), tr.workload.with_changes(precision="bf16-mixed")))
    # the CPU target keeps today's behaviour: fp8-mixed is bf16-mixed there
    cpu_bf16, _, _ = run("bf16-mixed", None)
    cpu_fp8, _, _ = run("fp8-mixed", None)
    assert cpu_fp8["weights_bytes"] == cpu_bf16["weights_bytes"]
    assert cpu_fp8["activations_bytes"] == cpu_bf16["activations_bytes"]


def test_fp8_copies_under_zero3_are_those_of_the_gathered_blocks():
    # methods.toml [fp8]: under ZeRO-3 the FP8 casts go with each gathered block (Transformer Engine caches them
    # only with is_first_microbatch, which FSDP and DeepSpeed do not pass; torchao casts at each use). Llama 2 7B:
    # a block's linear weights are 4 × 4096² + 3 × 4096 × 11008 = 202,375,168 elements; 2 bytes each for the FP8
    # copy and its transpose; ZeRO-3 holds 2 blocks at once (zero.gathered_blocks) -> 809,500,672 bytes, where
    # ZeRO-1 keeps all 32 blocks' copies (12,952,010,752 bytes).
    block = 4 * 4096 ** 2 + 3 * 4096 * 11008
    wl = mf.Workload(mode="train", seq=512, batch=8, micro_batch=1, precision="fp8-mixed", hardware="h100-sxm",
                     devices=8, tp=1, pp=1)
    z3 = mf.memory("llama-2-7b", wl.with_changes(zero=3), other_bytes=0).sections["memory"]
    z1 = mf.memory("llama-2-7b", wl.with_changes(zero=1), other_bytes=0).sections["memory"]
    assert z1["breakdown"]["fp8_weight_copies_bytes"] == 2 * 32 * block == 12_952_010_752
    assert z3["breakdown"]["fp8_weight_copies_bytes"] == 2 * 2 * block == 809_500_672


def test_fp32_attention_takes_the_memory_efficient_kernel():
    # Flash attention needs fp16/bf16; CUDA's next choice, the memory-efficient kernel, takes fp32 (kernels.toml
    # [sdpa]): still no T×T tensor; its logsumexp is padded to a multiple of 32 queries.
    tr = trace(resolve("tests/data/configs/tiny-gpt2"), mf.Workload(mode="train", seq=40, batch=2, hardware="h200"))
    ops = [r.op for r in tr.records]
    assert ops.count("aten._scaled_dot_product_efficient_attention.default") == 2
    assert ops.count("aten._scaled_dot_product_efficient_attention_backward.default") == 2
    assert not any(s.shape[-2:] == (40, 40) for s in tr.memory.saved if len(s.shape) >= 2)
    lse = [s for s in tr.memory.saved if s.dtype == "float32" and s.shape == (2, 4, 64)]
    assert len(lse) == 2  # batch 2 × 4 heads × 40 queries padded to 64


def test_fp8_primary_weights_are_held_and_gathered_in_fp8():
    # --fp8-weights (NeMo fp8_params, Megatron-LM --fp8-param-gather, torchao's FP8 all-gather; methods.toml [fp8]
    # primary_weight_bytes): the FP8 linear layers' weights are FP8 (1 byte), the embedding, head and norms stay
    # 16-bit, and of Transformer Engine's FP8 copy and transpose only the transpose is added. Llama 2 7B: 32 blocks
    # of 4 × 4096² + 3 × 4096 × 11008 = 202,375,168 linear elements (6,476,005,376 in all); the embedding and the
    # untied head 2 × 32000 × 4096 = 262,144,000 and 65 norms of 4096 = 266,240 elements stay 16-bit.
    block = 4 * 4096 ** 2 + 3 * 4096 * 11008
    linears, others = 32 * block, 2 * 32000 * 4096 + 65 * 4096
    wl = mf.Workload(mode="train", seq=512, batch=8, micro_batch=1, precision="fp8-mixed", hardware="h100-sxm",
                     devices=8, tp=1, pp=1, zero=1, mixed_weights="16-bit")
    fp8_wl = wl.with_changes(fp8_weights=True)
    z1 = mf.memory("llama-2-7b", wl, other_bytes=0).sections["memory"]
    f1 = mf.memory("llama-2-7b", fp8_wl, other_bytes=0).sections["memory"]
    assert f1["breakdown"]["fp8_weights_bytes"] == linears == 6_476_005_376
    assert f1["breakdown"]["fp8_weight_copies_bytes"] == linears  # the transposes
    assert z1["weights_bytes"] == 2 * (linears + others) + 2 * linears
    assert f1["weights_bytes"] == linears + 2 * others + linears
    assert f1["optimizer_bytes"] == z1["optimizer_bytes"] and f1["gradients_bytes"] == z1["gradients_bytes"]
    # ZeRO-3 gathers two blocks at a time, each in FP8 now: half the 16-bit working set, and one byte of copies
    z3 = mf.memory("llama-2-7b", wl.with_changes(zero=3), other_bytes=0).sections["memory"]["breakdown"]
    f3 = mf.memory("llama-2-7b", fp8_wl.with_changes(zero=3), other_bytes=0).sections["memory"]["breakdown"]
    assert z3["weights_gathered_bytes"] == 2 * 2 * block * 7 // 8 == 708_313_088
    assert f3["weights_gathered_bytes"] == 2 * 1 * block * 7 // 8
    assert f3["fp8_weight_copies_bytes"] == 2 * block
    # the distributed optimizer's all-gather of the updated weights moves the FP8 ones in one byte: (s−1)/s of them
    rep = mf.predict("llama-2-7b", fp8_wl)
    volumes = rep.sections["time"]["communication_volume"]
    assert volumes["dp_weight_gather_step_bytes"] == pytest.approx(7 / 8 * (linears + 2 * others), rel=1e-12)
    assert any("1 B per element for the FP8 linear layers' weights" in a for a in rep.assumptions)
    base = mf.predict("llama-2-7b", wl).sections["time"]["communication_volume"]
    assert base["dp_weight_gather_step_bytes"] == pytest.approx(7 / 8 * 2 * (linears + others), rel=1e-12)


def test_fp8_weights_need_fp8_mixed_training(capsys):
    from mlfootprint.cli import main

    for argv, says in ((["--precision", "bf16-mixed"], "needs --precision fp8-mixed"),
                       (["--precision", "fp8-mixed", "--mode", "inference"], "use --quant fp8"),
                       (["--precision", "fp8-mixed", "--mode", "train", "--mixed-weights", "fp32"], "drop one")):
        assert main(["memory", "tests/data/configs/tiny-llama", "--fp8-weights", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err
    # auto working weights with FP8 primary weights are 16-bit (fp32 master copies with the optimizer)
    assert mf.Workload(mode="train", precision="fp8-mixed", fp8_weights=True).mixed_weights_resolved == "16-bit"
