"""``--recompute selective-op``: PyTorch selective activation checkpointing with TorchTitan's 'op' policy (issue 12).

TorchTitan (torchtitan/parallelisms/parallelize_llama.py at 9dec370, ``_save_list``) keeps the outputs of the
matmuls and of the attention kernel of each transformer block, except every second matmul, and re-runs everything
else in the backward. Its Llama 3 configs set ``mode = 'selective'``, ``selective_ac_option = 'op'``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import mlfootprint as mf
from mlfootprint.core.errors import UserError
from mlfootprint.models.source import resolve
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload

pytest.importorskip("transformers")

TINY_LLAMA = str(Path(__file__).parent / "data" / "configs" / "tiny-llama" / "config.json")
# tiny-llama: hidden 64, 4 heads of 16 with 2 key/value heads (32 wide), MLP 176, 2 layers; batch 2 × 64 tokens
T, H, KV, FFN, LAYERS = 128, 64, 32, 176, 2


def _trace(recompute: str):
    wl = Workload(mode="train", seq=64, batch=2, hardware="h100-sxm", precision="bf16-mixed", recompute=recompute)
    return trace(resolve(TINY_LLAMA), wl, dedup=False)


def test_every_second_matmul_of_a_block_is_recomputed():
    tr = _trace("selective-op")
    recomputed = [r for r in tr.records if r.phase == "recompute"]
    # a block's matmuls in order: q, k, v, o, gate, up, down; the 2nd, 4th and 6th (k, o, up) are re-run
    k, o, up = 2 * T * H * KV, 2 * T * H * H, 2 * T * H * FFN
    assert [r.model_flops for r in recomputed if r.op == "aten.mm.default"] == [k, o, up] * LAYERS
    assert sum(r.model_flops for r in recomputed) == LAYERS * (k + o + up)
    # the attention kernel's outputs are kept: it does not run again
    assert not any("attention" in r.op for r in recomputed)
    # the norms, rotary embedding and activation are re-run
    assert any(r.op == "aten.rsqrt.default" for r in recomputed)
    assert any(n.startswith("selective-op recomputation") for n in tr.assumptions)


def test_it_keeps_more_than_full_recomputation_and_less_than_none():
    def activations(recompute: str) -> int:
        wl = mf.Workload(mode="train", seq=512, batch=4, hardware="h100-sxm", recompute=recompute)
        return mf.memory(TINY_LLAMA, wl, cache=False).sections["memory"]["activations_bytes"]

    full, op, none = activations("full"), activations("selective-op"), activations("none")
    assert full < op < none


def test_its_recomputation_is_timed_from_the_trace():
    def recompute_s(recompute: str) -> float:
        wl = mf.Workload(mode="train", seq=512, batch=4, hardware="h100-sxm", recompute=recompute)
        return mf.predict(TINY_LLAMA, wl, cache=False).sections["time"]["phases"]["recompute_s"]

    assert 0.0 < recompute_s("selective-op") < recompute_s("full")


def test_plan_says_it_needs_its_own_trace():
    wl = mf.Workload(mode="train", recompute="selective-op", hardware="a100-80gb", devices=8)
    with pytest.raises(UserError, match="selective-op\"? needs its own trace"):
        mf.plan("gpt2", wl)
