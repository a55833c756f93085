"""Activations a fused-kernel stack keeps (analysis/memory/fusion.py), against hand-derived bytes.

Hugging Face's eager Llama block (16-bit weights, the GPU target's kernels) keeps for backward, per token:
- in each RMSNorm: the fp32 copy of its input (4h B), the 16-bit normalized tensor (2h B) and 1/rms (4 B);
- in the SwiGLU: silu(gate) (2f B) beside gate and up (which the product's backward reads);
A fused stack (Megatron-LM's SwiGLUFunction saves only its input; Transformer Engine's RMSNorm its input and
statistics) keeps none of those. In their place each norm keeps its 16-bit input (2h B), which eager PyTorch frees
in the forward pass: the residual stream.

The loss: Megatron-LM's vocabulary-parallel cross entropy keeps an fp32 softmax, as eager PyTorch keeps its fp32
log-probabilities, but writes its backward into that buffer in place, where eager PyTorch allocates two fp32 T×V
tensors (nll_loss_backward, _log_softmax_backward_data), and it returns the loss, not the 16-bit logits that Hugging
Face's model hands back to the caller for the rest of the step.
"""
from __future__ import annotations

import json

import pytest

from mlfootprint.analysis.memory.fusion import stack_for
from mlfootprint.analysis.memory.model import MemoryModel
from mlfootprint.models import resolve
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload

LLAMA = "tests/data/configs/tiny-llama"
CONFIG = json.load(open(f"{LLAMA}/config.json"))
H, F, V, L = (CONFIG[k] for k in ("hidden_size", "intermediate_size", "vocab_size", "num_hidden_layers"))
SEQ, BATCH = 32, 2


def _model(fusion: str, **options) -> MemoryModel:
    spec = resolve(LLAMA, [], None)
    wl = Workload(seq=SEQ, batch=BATCH, mode="train", precision="bf16-mixed", hardware="h100-sxm",
                  mixed_weights="16-bit", fusion=fusion, **options)
    return MemoryModel(spec, wl, trace(spec, wl))


@pytest.fixture(scope="module")
def eager() -> MemoryModel:
    return _model("none")


@pytest.fixture(scope="module")
def fused() -> MemoryModel:
    return _model("fused")


def test_the_fused_stack_drops_the_chain_intermediates_by_hand(eager, fused):
    tokens = SEQ * BATCH
    norm = 4 * H + 2 * H + 4  # fp32 input copy, 16-bit normalized tensor, 1/rms
    per_layer = 2 * norm + 2 * F  # two norms, silu(gate)
    dropped = tokens * (L * per_layer + norm)  # + the final norm
    # each norm's 16-bit input kept: 2 per layer and the final one
    kept = tokens * (2 * L + 1) * 2 * H
    assert (fused.profile.fused_dropped, fused.profile.fused_kept) == (dropped, kept)
    assert (eager.profile.fused_dropped, eager.profile.fused_kept) == (0, 0)
    saved_eager, saved_fused = sum(eager.profile.saved_vector()), sum(fused.profile.saved_vector())
    # and the 16-bit logits, which the fused stack's loss does not hold past its forward (the last test)
    assert saved_eager - saved_fused == dropped - kept + 2 * tokens * V


def test_the_estimate_says_which_stack_it_kept(eager, fused):
    line = next(a for a in fused.per_device(fused.layout()).assumptions if a.startswith("the activations a fused"))
    assert "--fusion none for eager PyTorch" in line
    assert f"{fused.profile.fused_dropped / 1e6:,.4g} MB of intermediates" in line
    line = next(a for a in eager.per_device(eager.layout()).assumptions if a.startswith("the activations eager"))
    assert "--fusion fused" in line
    assert fused.per_device(fused.layout()).peak_bytes <= eager.per_device(eager.layout()).peak_bytes


def test_the_default_stack_follows_the_step_time_model():
    assert stack_for(Workload(hardware="h100-sxm"))[0] == "fused"
    assert stack_for(Workload())[0] == "none"  # the CPU: eager PyTorch, as measured by the CPU reality tests
    assert stack_for(Workload(hardware="h100-sxm", fusion="none")) == ("none", "given with --fusion")


def test_under_full_recomputation_only_what_is_outside_the_blocks_changes():
    # A checkpointed block saves nothing in its forward pass but its input, whatever the stack: what changes is
    # outside the blocks: the final norm (its input kept instead), and the logits the loss does not hold.
    a, b = _model("none", recompute="full"), _model("fused", recompute="full")
    tokens = SEQ * BATCH
    dropped, kept = tokens * (4 * H + 2 * H + 4), tokens * 2 * H
    assert (b.profile.fused_dropped, b.profile.fused_kept) == (dropped, kept)
    assert sum(a.profile.recompute_kept_vector()) - sum(b.profile.recompute_kept_vector()) == \
        dropped - kept + 2 * tokens * V  # and the logits (the loss)
    assert a.profile.recompute_kept_vector(frozenset({0})) == b.profile.recompute_kept_vector(frozenset({0}))


def test_the_memory_card_shows_the_stack_when_it_moved_the_activations():
    import mlfootprint as mf

    def keys(fusion: str, model: str = LLAMA) -> list[str]:
        wl = Workload(seq=SEQ, batch=BATCH, mode="train", precision="bf16-mixed", hardware="h100-sxm",
                      mixed_weights="16-bit", fusion=fusion)
        return mf.memory(model, wl).key_assumptions

    assert any(k.startswith("memory: the activations a fused stack keeps") for k in keys("fused"))
    assert not any("the activations" in k for k in keys("none"))


def test_the_fused_stack_runs_the_loss_as_megatrons_in_place_cross_entropy(eager, fused):
    tv = SEQ * BATCH * V  # the traced step's tokens × vocabulary
    # two fp32 T×V gradients written in place (4 B each) and the 16-bit logits not held past the loss (2 B)
    assert fused.profile.fused_loss == tv * (4 + 4 + 2)
    assert eager.profile.fused_loss == 0 and _model("compiled").profile.fused_loss == 0  # Inductor: as traced
    allocs, fwd_end = fused.profile.allocs, fused.profile.fwd_end
    records = fused.trace.records
    in_place = [a for a in allocs if a.phase != "forward" and records[a.op].module == ""
                and records[a.op].op in ("aten.nll_loss_backward.default", "aten._log_softmax_backward_data.default")]
    assert len(in_place) == 2 and all(a.size == 0 for a in in_place)
    kept = [a for a in allocs if records[a.op].op == "aten._log_softmax.default" and records[a.op].module == ""]
    assert len(kept) == 1 and kept[0].size == 4 * tv and kept[0].end > fwd_end  # held into the loss's backward
    logits = [a for a in allocs if a.phase == "forward" and records[a.op].module == "lm_head" and a.size == 2 * tv]
    assert len(logits) == 1 and logits[0].end < fwd_end
    eager_logits = [a for a in eager.profile.allocs if a.phase == "forward" and records[a.op].module == "lm_head"
                    and a.size == 2 * tv]
    assert eager_logits[0].end >= fwd_end  # eager: the caller holds them
    line = next(a for a in fused.per_device(fused.layout()).assumptions if a.startswith("the activations a fused"))
    assert f"vocabulary-parallel cross entropy, whose backward writes into the kept fp32 probabilities and which " \
           f"does not hold the logits past the loss: {tv * 10 / 1e6:,.4g} MB fewer held" in line
