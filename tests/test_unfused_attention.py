"""``--attention unfused``: Megatron-LM's attention of before FlashAttention (issue 12).

Megatron-LM (2019–2022) and Megatron-DeepSpeed write the T×T scores in 16 bits with a batched GEMM, scale, mask and
soft-max them in one fused kernel (16 bits in and out), drop out the probabilities (a one-byte mask) and multiply
the values with a second batched GEMM. Korthikanti et al. 2022 (arXiv:2205.05198, Sec. 4.1) count what that core
saves per layer: 2·a·s²·b bytes of softmax output, a·s²·b of dropout mask and 2·a·s²·b of dropout output,
5·a·s²·b in all.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlfootprint.analysis.predict.efficiency import efficiency_for
from mlfootprint.analysis.predict.fusion import fuse
from mlfootprint.analysis.predict.roofline import build_profile
from mlfootprint.hardware.catalog import get_device
from mlfootprint.models.source import resolve
from mlfootprint.trace.records import OpRecord
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload

pytest.importorskip("transformers")

CONFIGS = Path(__file__).parent / "data" / "configs"
B, S, A, D, LAYERS = 2, 32, 4, 16, 2  # tiny-gpt2: 4 heads of 16, 2 layers; batch 2 × 32 tokens
SQUARE = B * A * S * S  # elements of one layer's score matrix


@pytest.fixture(scope="module")
def gpt2_with_attention_dropout(tmp_path_factory) -> str:
    cfg = json.loads((CONFIGS / "tiny-gpt2" / "config.json").read_text())
    cfg["attn_pdrop"] = 0.1  # Megatron GPT's attention dropout
    path = tmp_path_factory.mktemp("gpt2") / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _trace(model: str, attention: str, **kw):
    wl = Workload(mode="train", seq=S, batch=B, hardware="a100-80gb", precision="bf16-mixed", attention=attention,
                  **kw)
    return trace(resolve(model), wl)


def _square_saved_bytes(tr) -> int:
    """Bytes of the distinct saved tensors whose last two dims are S×S."""
    seen = {s.storage: s.nbytes for s in tr.memory.saved if len(s.shape) >= 2 and tuple(s.shape[-2:]) == (S, S)}
    return sum(seen.values())


def test_the_core_runs_megatrons_kernels_in_16_bits(gpt2_with_attention_dropout):
    tr = _trace(gpt2_with_attention_dropout, "unfused")
    recs = [r for r in tr.records if r.phase == "forward" and r.module == "transformer.h.0.attn"]
    first = next(i for i, r in enumerate(recs) if r.attention_flops)
    last = max(i for i, r in enumerate(recs) if r.attention_flops)
    core = [r for r in recs[first:last + 1] if r.op != "aten.clone.default"]  # the values' layout copy aside
    assert [r.op.split(".")[1] for r in core] == ["bmm", "mul", "_softmax", "native_dropout", "bmm"]
    scores, scale, softmax, dropout, values = core
    # the scores product: 2·(B·A)·S·S·D FLOPs, a 16-bit S×S output
    assert scores.attention_flops == 2 * B * A * S * S * D and scores.bytes_written == 2 * SQUARE
    # the softmax reads and writes 16 bits (autocast would have written fp32 probabilities: 4 bytes)
    assert softmax.out_dtype == "bfloat16" and softmax.bytes_read == softmax.bytes_written == 2 * SQUARE
    assert scale.bytes_written == 2 * SQUARE
    # dropout writes its 16-bit output and a one-byte mask
    assert dropout.bytes_written == 3 * SQUARE
    assert values.attention_flops == 2 * B * A * S * S * D


def test_it_saves_korthikantis_5_a_s2_b_per_layer(gpt2_with_attention_dropout):
    assert _square_saved_bytes(_trace(gpt2_with_attention_dropout, "unfused")) == LAYERS * 5 * A * S * S * B
    assert _square_saved_bytes(_trace(gpt2_with_attention_dropout, "sdpa")) == 0  # flash keeps no square


def test_without_dropout_only_the_probabilities_are_saved():
    tr = _trace(str(CONFIGS / "tiny-gpt2" / "config.json"), "unfused")  # attn_pdrop 0
    assert _square_saved_bytes(tr) == LAYERS * 2 * A * S * S * B
    assert not any("dropout" in r.op for r in tr.records if r.module.endswith(".attn"))


def test_flops_are_the_same_full_square_as_sdpa(gpt2_with_attention_dropout):
    def products(tr, phase):
        return sum(r.attention_flops for r in tr.records if r.phase == phase)

    unfused, sdpa = _trace(gpt2_with_attention_dropout, "unfused"), _trace(gpt2_with_attention_dropout, "sdpa")
    assert products(unfused, "forward") == products(sdpa, "forward") == LAYERS * 2 * 2 * B * A * S * S * D
    assert products(unfused, "backward") == products(sdpa, "backward") == 2 * LAYERS * 2 * 2 * B * A * S * S * D
    assert any("attention: unfused" in n for n in unfused.assumptions)


def test_grouped_query_attention_repeats_the_key_value_heads():
    model = str(CONFIGS / "tiny-llama" / "config.json")
    cfg = json.loads(Path(model).read_text())
    heads = cfg["num_attention_heads"]
    dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    tr = _trace(model, "unfused")
    first = next(r for r in tr.records if r.phase == "forward" and r.attention_flops)
    assert first.op == "aten.bmm.default" and first.attention_flops == 2 * B * heads * S * S * dim
    assert _square_saved_bytes(tr) == cfg["num_hidden_layers"] * 2 * heads * S * S * B


# ------------------------------------------------------------------------------------------ fusion and recompute


def _rec(i: int, op: str, phase: str = "forward", read: int = 0, written: int = 0, attention: bool = False,
         module: str = "h.0.attn") -> OpRecord:
    flops = 1000 if attention else 0
    return OpRecord(index=i, op=op, module=module, phase=phase, model_flops=flops, other_flops=0 if flops else 10,
                    attention_flops=flops, causal=True if attention else None, recompute_flops=0, bytes_read=read,
                    bytes_written=written, alloc_bytes=0, supported=True, out_dtype="bfloat16")


# One layer's core with a 100-byte score matrix: scale (mul), softmax, dropout (writes output + one-byte mask)
CORE_FORWARD = [_rec(0, "aten.bmm.default", read=40, written=100, attention=True),
                _rec(1, "aten.mul.Tensor", read=100, written=100),
                _rec(2, "aten._softmax.default", read=100, written=100),
                _rec(3, "aten.native_dropout.default", read=100, written=150),
                _rec(4, "aten.bmm.default", read=120, written=20, attention=True)]
CORE_BACKWARD = [_rec(5, "aten.native_dropout_backward.default", "backward", read=150, written=100),
                 _rec(6, "aten._softmax_backward_data.default", "backward", read=200, written=100),
                 _rec(7, "aten.mul.Tensor", "backward", read=100, written=100)]


def test_the_fused_stack_runs_softmax_as_megatrons_kernel():
    kernels, summary = fuse(CORE_FORWARD + CORE_BACKWARD, "fused")
    names = [k.op for k in kernels]
    # forward: the scale fuses into the softmax kernel, which writes its probabilities; dropout is its own kernel
    assert names == ["aten.bmm.default", "fused[mul+_softmax]", "aten.native_dropout.default", "aten.bmm.default",
                     "aten.native_dropout_backward.default", "fused[_softmax_backward_data+mul]"]
    softmax, bwd = kernels[1], kernels[5]
    assert (softmax.bytes_read, softmax.bytes_written) == (100, 100)  # the scores in, the probabilities out
    # the backward kernel reads the gradient and the saved probabilities, and applies the scale in its epilogue
    assert (bwd.bytes_read, bwd.bytes_written) == (200, 100)
    assert summary.bytes_fused_away == (200 + 200) - 200 + (300 + 200) - 300
    # a compiler (Inductor) fuses the whole chain, dropout included
    compiled, _ = fuse(CORE_FORWARD, "compiled")
    assert [k.op for k in compiled][1] == "fused[mul+_softmax+native_dropout]"


def test_selective_recomputation_reruns_the_whole_core():
    dev = get_device("a100-80gb")
    eff = efficiency_for(dev, None)
    projection = _rec(9, "aten.mm.default", read=500, written=50, module="h.0.attn.c_proj")
    projection.model_flops = 5000
    records = CORE_FORWARD + [projection]
    profile = build_profile(SimpleNamespace(records=records), dev, eff, "bf16-mixed", fusion="none")
    core = profile.attention_forward
    # both products and the three kernels between them, not the projection after the core
    assert core.ops == 5
    assert core.bytes == sum(r.bytes_read + r.bytes_written for r in CORE_FORWARD)
    assert core.model_flops == 2000


def test_selective_recomputation_costs_time_only_with_unfused_attention(gpt2_with_attention_dropout):
    import mlfootprint as mf

    def recompute_s(attention: str, recompute: str) -> float:
        wl = mf.Workload(mode="train", seq=S, batch=B, hardware="a100-80gb", recompute=recompute, attention=attention)
        return mf.predict(gpt2_with_attention_dropout, wl).sections["time"]["phases"]["recompute_s"]

    assert recompute_s("sdpa", "selective") == 0.0  # the flash kernel keeps no square to redo
    assert recompute_s("unfused", "none") == 0.0
    assert recompute_s("unfused", "selective") > 0.0


def test_a_model_with_its_own_attention_code_says_it_was_not_applied(tmp_path):
    # BLOOM's attention is its own ALiBi baddbmm code: it takes no attention function
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bloom", "architectures": ["BloomForCausalLM"], "vocab_size": 256, "hidden_size": 64,
        "n_layer": 2, "n_head": 4}))
    tr = _trace(str(tmp_path / "config.json"), "unfused")
    assert any("BloomForCausalLM runs its own attention code" in n and "not applied" in n for n in tr.assumptions)
    assert not any(n.startswith("attention: unfused") for n in tr.assumptions)
    # and what is traced is its eager code as it runs, causal mask included: the same operators as --attention
    # eager (built with the registered function, the SDPA mask builder gave it no mask and its mask add vanished)
    eager = _trace(str(tmp_path / "config.json"), "eager")
    ops = lambda t: sorted((r.op, r.phase) for r in t.records)  # noqa: E731
    assert ops(tr) == ops(eager)
    assert [(r.model_flops, r.other_flops, r.bytes_read) for r in tr.records] == \
        [(r.model_flops, r.other_flops, r.bytes_read) for r in eager.records]
