"""Sliding-window attention on the fused GPU stack (issue 12: a gap the issue names).

transformers builds a causal sliding-window mask for SDPA where the sequence is longer than the window; on a GPU
that mask sends SDPA to the memory-efficient kernel with a float bias, which computes the whole T×T square (the
trace's FLOPs and what an eager or compiled stack runs). Transformer Engine's FlashAttention takes the window and
skips the tiles outside it: on the fused stack the attention kernels are timed on the share of the square inside
the window, Σ min(i+1, w) over T queries / T² (query i sees keys i−w+1 … i, transformers' sliding_window_overlay).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import mlfootprint as mf
from mlfootprint.analysis.predict.roofline import CAUSAL_TILE_SHARE, compute_share
from mlfootprint.models.source import resolve
from mlfootprint.trace import run
from mlfootprint.trace.mode import sliding_window_share
from mlfootprint.workload import Workload

pytest.importorskip("transformers")

CONFIG = Path(__file__).parent / "data" / "configs" / "tiny-mistral-window"
GPU = dict(mode="train", hardware="h100-sxm", precision="bf16-mixed")


def test_the_share_of_the_square_inside_a_causal_window_by_hand():
    # T = 64, w = 16: 16·64 − 16·15/2 = 904 of the 4,096 pairs
    assert sliding_window_share(64, 64, 16) == pytest.approx(904 / 4096)
    # a window at least as long as the sequence keeps the causal triangle with its diagonal: 36 of 64
    assert sliding_window_share(8, 8, 100) == pytest.approx(36 / 64)
    assert sliding_window_share(1, 8, 4) == 0.0  # decode against a cache: not a square, not described


def _attention(tr):
    return [r for r in tr.records if r.attention_flops]


def test_the_trace_marks_every_windowed_kernel_forward_and_backward():
    spec = resolve(str(CONFIG))
    tr = run.trace(spec, Workload(batch=2, seq=64, **GPU), dedup=False)
    attention = _attention(tr)
    assert [r.op for r in attention] == ["aten._scaled_dot_product_efficient_attention.default"] * 2 + \
        ["aten._scaled_dot_product_efficient_attention_backward.default"] * 2
    assert all(r.window_share == pytest.approx(904 / 4096) for r in attention)
    # nothing else takes the window: the mask's conversions pass it on, matrix products stop it
    assert not [r for r in tr.records if r.window_share and not r.attention_flops]
    # at or under the window transformers builds no mask: causal SDPA, no window
    short = run.trace(spec, Workload(batch=2, seq=16, **GPU), dedup=False)
    assert all(r.window_share == 0.0 and r.causal for r in _attention(short))


def test_only_the_windowed_layers_of_a_mixed_model_are_marked(tmp_path):
    # Qwen2 with use_sliding_window: layers from max_window_layers on are windowed (its config's layer_types)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 256, "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    tr = run.trace(resolve(str(tmp_path)), Workload(batch=1, seq=32, **GPU), dedup=False)
    shares = {r.module: r.window_share for r in _attention(tr) if r.phase == "forward"}
    assert shares == {"model.layers.0.self_attn": 0.0,
                      "model.layers.1.self_attn": pytest.approx(sliding_window_share(32, 32, 16))}


def test_the_fused_stack_times_the_window_and_the_others_the_square():
    tr = run.trace(resolve(str(CONFIG)), Workload(batch=2, seq=64, **GPU), dedup=False)
    r = _attention(tr)[0]
    assert compute_share(r, "fused") == pytest.approx(904 / 4096)
    assert compute_share(r, "none") == 1.0 and compute_share(r, "compiled") == 1.0
    unwindowed = dataclasses.replace(r, window_share=0.0, causal=True)
    assert compute_share(unwindowed, "fused") == CAUSAL_TILE_SHARE
    rep = mf.predict(str(CONFIG), Workload(batch=2, seq=64, **GPU))
    assert any("sliding-window attention (4 kernel calls)" in a and "0.2207" in a for a in rep.assumptions)
    eager = mf.predict(str(CONFIG), Workload(batch=2, seq=64, fusion="none", **GPU))
    assert not any("sliding-window attention" in a for a in eager.assumptions)


def test_a_deduplicated_trace_keeps_the_windows_exactly():
    from test_trace_dedup import _assert_exact, _shallow
    spec = _shallow("mistral-7b")
    spec = dataclasses.replace(spec, hf_config=dict(spec.hf_config, sliding_window=4))
    _assert_exact(spec, Workload(batch=1, seq=8, **GPU))
    tr = run._trace_deduplicated(spec, Workload(batch=1, seq=8, **GPU), True)
    assert len(_attention(tr)) == 10 and all(r.window_share == pytest.approx(sliding_window_share(8, 8, 4))
                                              for r in _attention(tr))
