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


def ssd_chunked_scan_flops(batch: int, seq: int, chunk: int, heads: int, head_dim: int, state: int) -> int:
    """FLOPs of the products in one layer of Mamba-2's chunked SSD scan, as HF's torch fallback runs it.

    Dao & Gu 2024 (arXiv:2405.21060) §6, the SSD algorithm: the sequence is cut into c = ⌈T/Q⌉ chunks of Q
    (the last one zero-padded, and computed); B and C are repeated from their groups to every head, so the groups
    do not enter. Each product is a batched matmul, 2 FLOPs per multiply–accumulate:
      1. diagonal blocks, C·Bᵀ within a chunk:          2·b·c·Q²·H·N
      2. diagonal blocks, (C·Bᵀ ∘ L)·X:                  2·b·c·Q²·H·P
      3. each chunk's final state, Bᵀ·X:                 2·b·c·Q·H·P·N
      4. state passing across chunks (c + 1 with the zero initial state, a (c+1)×(c+1) decay matrix):
                                                         2·b·(c+1)²·H·P·N
      5. off-diagonal blocks, C·state:                   2·b·c·Q·H·P·N
    """
    c = -(-seq // chunk)
    return 2 * batch * heads * (c * chunk * chunk * state + c * chunk * chunk * head_dim
                                + 2 * c * chunk * head_dim * state + (c + 1) ** 2 * head_dim * state)


@pytest.mark.parametrize("seq, groups, mode", [(8, 1, "inference"), (7, 2, "inference"), (7, 2, "train")])
def test_mamba2_chunked_scan_count_is_exact(seq, groups, mode):
    # hidden 32, expand 2 → 64 = H·P with H = 4 heads of P = 16; state N = 8; chunk Q = 4; batch 2; 2 layers.
    # seq 8: c = 2 chunks. Per layer: 4,096 + 8,192 + 16,384 + 18,432 + 16,384 = 63,488; 2 layers 126,976.
    # seq 7 pads to the same 2 chunks (the padded position is computed), and 2 groups change nothing in the scan.
    # Training: each product's backward takes both operands' gradients (two products of the same size): 3×.
    from mlfootprint.verbs.common import traced

    assert ssd_chunked_scan_flops(2, 8, 4, 4, 16, 8) == 63_488
    cfg = transformers.Mamba2Config(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                                    conv_kernel=4, head_dim=16, num_heads=4, n_groups=groups, chunk_size=4,
                                    use_cache=False)
    _, _, tr = traced(transformers.Mamba2ForCausalLM(cfg), mf.Workload(mode=mode),
                      inputs=[torch.zeros(2, seq, dtype=torch.long)])
    per_layer = ssd_chunked_scan_flops(2, seq, 4, 4, 16, 8)
    forward = sum(r.scan_flops for r in tr.records if r.phase == "forward")
    assert forward == 2 * per_layer == 126_976
    backward = sum(r.scan_flops for r in tr.records if r.phase == "backward")
    assert backward == (2 * forward if mode == "train" else 0)
    assert sum(r.attention_flops for r in tr.records) == 0
    assert not tr.unsupported
