"""Whole models from the bundled catalog against analytic counts and published figures."""
import pytest

import mlfootprint as mf
from mlfootprint.api import count


def flops(name, **wl):
    return count(name, mf.Workload(**wl), ops=False)


def test_gpt2_params_and_forward():
    rep = flops("gpt2", batch=1, seq=1024)
    # Hugging Face's gpt2 checkpoint: 124,439,808 parameters (tied LM head counted once).
    assert rep.sections["params"]["total"] == 124_439_808
    T, d, L, V = 1024, 768, 12, 50257
    # per block: qkv 3d², proj d², mlp 8d² → 12d² weights, 2 FLOPs per weight per token;
    # LM head 2·T·d·V; attention QKᵀ and PV over the full T×T square: 4·T²·d per layer.
    expected = 2 * T * L * 12 * d * d + 2 * T * d * V + 4 * L * T * T * d
    assert rep.sections["flops"]["forward"] == pytest.approx(expected, rel=1e-3)
    # causal-halved: half of the attention products
    assert rep.sections["flops"]["attention_causal_halved"] == pytest.approx(expected - 2 * L * T * T * d, rel=1e-3)


def llama_forward(T, L, h, f, V, kv_dim):
    # q and o: h×h; k and v: h×kv_dim (grouped-query attention); SwiGLU MLP: gate, up, down h×f;
    # attention 4·T²·h; untied LM head 2·T·h·V.
    per_layer = 2 * T * (2 * h * h + 2 * h * kv_dim + 3 * h * f) + 4 * T * T * h
    return L * per_layer + 2 * T * h * V


def test_llama2_7b():
    rep = flops("llama-2-7b", batch=1, seq=4096)
    assert rep.sections["params"]["total"] == 6_738_415_616
    expected = llama_forward(4096, 32, 4096, 11008, 32000, kv_dim=4096)
    assert rep.sections["flops"]["forward"] == pytest.approx(expected, rel=1e-3)


def test_llama2_70b_grouped_query_attention():
    rep = flops("llama-2-70b", batch=1, seq=2048)
    # 8 KV heads of 128 → k/v projections 8192×1024
    expected = llama_forward(2048, 80, 8192, 28672, 32000, kv_dim=1024)
    assert rep.sections["flops"]["forward"] == pytest.approx(expected, rel=1e-3)
    assert rep.sections["params"]["total"] == 68_976_648_192


def test_gpt3_175b_train_step_matches_megatron():
    # Narayanan et al. 2021 (Megatron-LM, SC'21), eq. (3): model FLOPs of one iteration
    # 72·B·s·l·h²·(1 + s/(6h)) + 6·B·s·h·V  (forward + backward, no recomputation).
    B, s, l, h, V = 1536, 2048, 96, 12288, 50257
    rep = flops("gpt3-175b", batch=B, seq=s, mode="train")
    megatron = 72 * B * s * l * h * h * (1 + s / (6 * h)) + 6 * B * s * h * V
    assert rep.sections["flops"]["model"] == pytest.approx(megatron, rel=5e-3)
    assert rep.sections["flops"]["backward"] == 2 * rep.sections["flops"]["forward"]
    assert rep.sections["flops"]["optimizer"] > 0


def test_mixtral_total_and_active_params():
    rep = flops("mixtral-8x7b", batch=1, seq=64)
    p = rep.sections["params"]
    # Mixtral 8x7B (Jiang et al. 2024: "47B total, 13B active"): derived exactly here as
    # total = 46,702,792,704; the 8 experts per layer hold 3·4096·14336 weights each (32 layers):
    # expert = 45,097,156,608; active = total − expert + expert·2/8 = 12,879,925,248.
    assert p["total"] == 46_702_792_704
    assert p["expert"] == 32 * 8 * 3 * 4096 * 14336
    assert p["active"] == 12_879_925_248
    # forward with balanced top-2 routing: 2 FLOPs per active non-embedding weight per token + attention
    T = 64
    expected = 2 * T * (p["active"] - p["embedding"]) - 2 * T * 32 * 4096 * 8 + 4 * 32 * T * T * 4096
    # (router weights 4096×8 per layer are matmuls too and are active: the subtraction undoes nothing of
    # consequence; keep the identity exact by recomputing it)
    router = 2 * T * 32 * 4096 * 8
    assert rep.sections["flops"]["forward"] == pytest.approx(expected + router, rel=1e-3)
    assert any("balanced top-2" in a for a in rep.assumptions)


def test_moe_backward_is_twice_forward():
    rep = flops("tests/data/configs/tiny-mixtral", batch=2, seq=16, mode="train")
    f = rep.sections["flops"]
    assert f["backward"] == pytest.approx(2 * f["forward"], rel=0.02)
    assert "unsupported_ops" not in f


@pytest.mark.parametrize("config", ["tiny-gpt2", "tiny-llama", "tiny-mixtral", "tiny-qwen2-moe", "tiny-bert", "tiny-t5", "tiny-vit"])
def test_every_architecture_traces_train_without_unknown_ops(config):
    rep = flops(f"tests/data/configs/{config}", batch=2, seq=16, mode="train")
    f = rep.sections["flops"]
    assert f["forward"] > 0 and f["backward"] > f["forward"]
    assert "unsupported_ops" not in f, f.get("unsupported_ops")
    tree = f["by_module"]
    assert tree["forward"] == f["forward"]  # the tree's root accounts for every forward FLOP


def test_by_module_tree_rolls_up():
    rep = flops("tests/data/configs/tiny-gpt2", batch=1, seq=32)
    tree = rep.sections["flops"]["by_module"]
    def check(node):
        if node["children"]:
            assert node["forward"] >= sum(c["forward"] for c in node["children"])
            assert node["params"] >= sum(c["params"] for c in node["children"])
            for c in node["children"]:
                check(c)
    check(tree)
    assert tree["params"] == rep.sections["params"]["total"]


def test_lm_tokens_and_per_token():
    rep = flops("tests/data/configs/tiny-llama", batch=4, seq=32)
    f = rep.sections["flops"]
    assert f["tokens"] == 128
    assert f["per_token"] == pytest.approx(f["model"] / 128)


def test_seventy_b_trace_allocates_no_weights():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rep = flops("llama-2-70b", batch=1, seq=512, mode="train")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # 69B fp32 weights would be 276 GB; the trace must stay far below 1 GB of extra resident memory.
    assert (after - before) * 1024 < 1e9
    assert rep.sections["params"]["total"] == 68_976_648_192


@pytest.mark.parametrize("config", ["tiny-gpt2", "tiny-llama"])
def test_backward_attributed_to_the_module_that_ran_forward(config):
    # Every linear layer's backward (input grad + weight grad) is twice its forward — per module,
    # including siblings that share an input (q/k/v, gate/up) and blocks behind identity dropouts.
    from collections import Counter

    from mlfootprint.verbs.common import traced

    _, _, tr = traced(f"tests/data/configs/{config}", mf.Workload(mode="train", seq=16))
    fwd, bwd = Counter(), Counter()
    for r in tr.records:
        (fwd if r.phase == "forward" else bwd if r.phase == "backward" else Counter())[r.module] += r.model_flops
    leaves = [m for m in fwd if fwd[m] and m.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                     "up_proj", "down_proj", "c_attn", "c_proj", "c_fc")]
    assert len(leaves) >= 8
    for m in leaves:
        assert bwd[m] == 2 * fwd[m], m
