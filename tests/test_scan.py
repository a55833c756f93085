"""State-space scans (Mamba): their products are a class of their own — never attention, never causal-halved."""
import json

import pytest
import torch

import mlfootprint as mf

transformers = pytest.importorskip("transformers")

# Tiny Mamba: hidden 16, expand 2 → inner width D = 32, state N = 4, 2 layers; batch B = 2, T = 6 tokens.
# transformers' torch fallback (no mamba_ssm kernels) runs the selective scan step by step: per step
# h = Ā·h + B̄·x (pointwise), then y = h·C, a (B, D, N)·(B, N, 1) product: 2·B·D·N FLOPs per step and layer.
# Scan products: 2·2·32·4·6 = 3,072 per layer → 6,144 in forward; backward takes both operands' gradients of
# each product → 12,288.
SCAN_FORWARD = 2 * (2 * 2 * 32 * 4 * 6)


def _config() -> dict:
    cfg = transformers.MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
                                   conv_kernel=4, time_step_rank=2, use_cache=False)
    return cfg.to_dict()


@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_config()))
    return str(tmp_path)


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_mamba_scan_is_not_attention(config_dir, mode):
    rep = mf.count(config_dir, mf.Workload(batch=2, seq=6, mode=mode))
    flops = rep.sections["flops"]
    assert flops["attention"] == 0
    assert flops.get("attention_causal_halved") is None  # nothing to halve
    assert flops["scan"] == SCAN_FORWARD * (3 if mode == "train" else 1)
    assert not flops.get("unsupported_ops")


def test_scan_products_stay_model_flops_on_an_instance():
    model = transformers.MambaForCausalLM(transformers.MambaConfig(**_config()))
    ids = torch.zeros(2, 6, dtype=torch.long)
    from mlfootprint.verbs.common import traced

    _, _, tr = traced(model, mf.Workload(), inputs=[ids])
    scan_records = [r for r in tr.records if r.scan_flops]
    assert sum(r.scan_flops for r in scan_records) == SCAN_FORWARD
    assert all(r.op == "aten.bmm.default" and r.model_flops == r.scan_flops and not r.attention_flops
               for r in scan_records)
    assert all(".mixer" in r.module for r in scan_records)


def test_jamba_hybrid_halves_only_its_attention(tmp_path):
    # Jamba, 2 layers: layer 0 a Mamba mixer (D = 2·16 = 32, N = 4), layer 1 attention (2 heads × 8, GQA 1 KV head).
    # batch 2, 6 tokens. Scan: 2·2·32·4·6 = 3,072. Attention Q·Kᵀ + P·V: 4·B·T²·(H·E) = 4·2·36·16 = 4,608;
    # the causal-halved figure removes half of the attention only: forward − 2,304.
    cfg = transformers.JambaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, num_experts=2, num_experts_per_tok=1,
                                   expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2,
                                   attn_layer_offset=1, mamba_d_state=4, mamba_d_conv=4, mamba_expand=2,
                                   mamba_dt_rank=2, use_mamba_kernels=False, use_cache=False)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    flops = mf.count(str(tmp_path), mf.Workload(batch=2, seq=6)).sections["flops"]
    assert flops["scan"] == 3_072
    assert flops["attention"] == 4_608
    assert flops["attention_causal_halved"] == flops["forward"] - 4_608 // 2


def test_mamba2_chunked_scan_is_not_attention():
    # Mamba2's torch fallback computes the SSD scan in chunks with batched products of activations (C·Bᵀ within a
    # chunk, states across chunks) — attention-shaped, but a scan: none of it may be attention.
    from mlfootprint.verbs.common import traced

    cfg = transformers.Mamba2Config(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                                    conv_kernel=4, head_dim=16, num_heads=4, n_groups=1, chunk_size=4, use_cache=False)
    _, _, tr = traced(transformers.Mamba2ForCausalLM(cfg), mf.Workload(), inputs=[torch.zeros(2, 8, dtype=torch.long)])
    assert sum(r.attention_flops for r in tr.records) == 0
    assert sum(r.scan_flops for r in tr.records) > 0
    assert all(r.module.endswith(".mixer") for r in tr.records if r.scan_flops)
