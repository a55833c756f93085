"""A deep stack's trace synthesized from four shallow ones (trace/dedup.py) equals the full trace, bit for bit.

Each case traces the same workload twice, in full (``dedup=False``) and deduplicated, and compares: the trace
itself (every op record with its module and phase, every memory event with storages as allocation instances,
saved tensors, weight casts, block spans, gradients and optimizer states alive at the end, parameters, the
module tree, the scalar totals and the assumptions), then what the analyses read from it: the FLOP summary, FLOPs
by operator and by module, the parameter statistics, and the per-device memory estimate (every component, the
peak and what is live at it) for the workload's own layout and, in training, for ZeRO-3 over 8 devices.

Catalog models are traced at depth 5 (their own configs with the depth key set to 5: the smallest stack that
deduplicates, one base block and four copies; a 126-layer full trace would take minutes), batch 1, 8 tokens.
"""
from __future__ import annotations

import dataclasses
import json

import pytest

from mlfootprint.analysis.count.flops import by_module, by_op, flop_summary
from mlfootprint.analysis.count.params import parameter_stats
from mlfootprint.analysis.memory.model import memory_model
from mlfootprint.models import catalog
from mlfootprint.models.source import resolve
from mlfootprint.trace import dedup, run
from mlfootprint.workload import Workload

transformers = pytest.importorskip("transformers")

DEPTH = 5


def _shallow(name: str, depth: int = DEPTH):
    spec = resolve(name)
    key = next(k for k in dedup._DEPTH_KEYS if k in spec.hf_config)
    return dataclasses.replace(spec, hf_config=dict(spec.hf_config, **{key: depth}))


def _figures(spec, wl: Workload, tr) -> dict:
    mm = memory_model(spec, wl, tr)
    out = {
        "trace": dedup._canonical(tr),
        "params": tr.params, "tree": tr.module_tree, "assumptions": tr.assumptions,
        "scalars": [getattr(tr, k) for k in ("param_bytes", "buffer_bytes", "input_bytes", "grad_bytes",
                                             "optimizer_state_bytes", "tokens", "causal", "moe", "kernels")],
        "flops": dataclasses.asdict(flop_summary(tr)), "by_op": by_op(tr), "by_module": by_module(tr),
        "param_stats": dataclasses.asdict(parameter_stats(tr)),
        "memory": mm.per_device(mm.layout()).to_dict(),
    }
    if wl.training:
        out["memory_zero3"] = mm.per_device(mm.layout().replace(zero=3, dp=8)).to_dict()
    return out


def _assert_exact(spec, wl: Workload) -> None:
    full = run.trace(spec, wl, dedup=False)
    synthesized = run._trace_deduplicated(spec, wl, True)
    assert synthesized is not None, f"{spec.name}: expected a deduplicated trace"
    assert len(synthesized.records) == len(full.records) and len(synthesized.events) == len(full.events)
    a, b = _figures(spec, wl, full), _figures(spec, wl, synthesized)
    for key in a:
        assert a[key] == b[key], f"{spec.name} {wl.mode}: {key} differs"


DEDUPLICATED = [n for n in catalog.names() if n != "t5-base"]


@pytest.mark.parametrize("name", DEDUPLICATED)
def test_catalog_model_train(name):
    spec = _shallow(name)
    _assert_exact(spec, Workload(batch=1, seq=8, mode="train"))


@pytest.mark.parametrize("name", ["gpt2", "llama-2-7b", "mixtral-8x7b", "vit-base-16", "opt-350m"])
def test_catalog_model_inference(name):
    _assert_exact(_shallow(name), Workload(batch=2, seq=8, mode="inference"))


@pytest.mark.parametrize("name,recompute", [("llama-2-7b", "full"), ("gpt2", "selective"), ("opt-125m", "full"),
                                            ("llama-3-8b", "selective-op")])
def test_recompute(name, recompute):
    _assert_exact(_shallow(name), Workload(batch=1, seq=8, mode="train", recompute=recompute))


@pytest.mark.parametrize("name,precision", [("opt-125m", "fp16"), ("llama-2-7b", "fp32"), ("mixtral-8x7b", "fp16")])
def test_zeroth_order_step(name, precision):
    """MeZO's step alternates parameter perturbations (optimizer phase) with forward passes: each run of a phase
    is deduplicated on its own."""
    _assert_exact(_shallow(name), Workload(batch=1, seq=8, mode="train", optimizer="zo-sgd", precision=precision))


@pytest.mark.parametrize("name,precision", [("gpt3-175b", "bf16-mixed"), ("llama-3-8b", "bf16-mixed"),
                                            ("mixtral-8x7b", "bf16")])
def test_gpu_target(name, precision):
    """--hardware h100-sxm: fused attention, one-byte dropout masks and the foreach optimizer (one operator over
    every parameter: its figures and its memory events grow with depth inside the one record)."""
    _assert_exact(_shallow(name), Workload(batch=1, seq=8, mode="train", precision=precision, hardware="h100-sxm"))


@pytest.mark.parametrize("name", ["gpt3-175b", "mixtral-8x7b"])
def test_gpu_target_with_16bit_working_weights(name):
    """--mixed-weights 16-bit: the optimizer steps fp32 master copies (their gradient buffers filled and the
    weights written back in place): the step still repeats block by block."""
    _assert_exact(_shallow(name), Workload(batch=1, seq=8, mode="train", precision="bf16-mixed", hardware="h100-sxm",
                                           mixed_weights="16-bit"))


@pytest.mark.parametrize("name,recompute", [("gpt3-175b", "none"), ("llama-3-8b", "selective")])
def test_unfused_attention(name, recompute):
    """--attention unfused: Megatron-LM's attention core (16-bit scores, softmax with autocast off, dropout with
    GPT-3's attention dropout) is synthesized exactly too."""
    _assert_exact(_shallow(name), Workload(batch=1, seq=8, mode="train", precision="bf16-mixed", hardware="h100-sxm",
                                           attention="unfused", recompute=recompute))


def _sweep_config(model_type: str, folder, depth: int, **extra):
    from tests.test_hf_sweep import CASES, _write_config

    case = CASES[model_type]
    key = next(k for k in dedup._DEPTH_KEYS if k in case.config)
    _write_config(model_type, dataclasses.replace(case, config=dict(case.config, **{key: depth}, **extra)), folder)
    return resolve(str(folder))


@pytest.mark.parametrize("model_type", ["gpt_neox", "qwen3", "phi", "gemma", "falcon", "qwen3_moe", "olmoe", "mamba",
                                        "roberta", "deit"])
def test_hf_sweep_configs(model_type, tmp_path):
    _assert_exact(_sweep_config(model_type, tmp_path, DEPTH), Workload(batch=1, seq=16, mode="train"))


def test_alternating_layers_group_by_period(tmp_path):
    """Gemma-2 alternates sliding-window and global attention (layer_types, period 2): it deduplicates by pairs
    of blocks (base 2, depths 2, 4, 6, 8) and still equals the full trace of 10 blocks; the window (4) is shorter
    than the 16 tokens, so the two kinds of layer differ."""
    spec = _sweep_config("gemma2", tmp_path, 10, sliding_window=4)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["layer_types"][:2] == ["sliding_attention", "full_attention"]
    plan = dedup.plan_for(spec, Workload(batch=1, seq=16, mode="train"))
    assert (plan.period, plan.base, plan.depths()) == (2, 2, [2, 4, 6, 8])
    _assert_exact(spec, Workload(batch=1, seq=16, mode="train"))


def test_checkpointed_blocks_in_16_bit_working_weights():
    """A checkpointed block saves its input (torch.utils.checkpoint's input saver) before its first operator; in
    16-bit working weights the final norm's first operator (a cast to fp32) saves nothing, so filed at the last
    operator before it, the top copy would save less than the others. Filed at the operator of the module that
    saved it (run._pack_index), every copy saves alike and the stack deduplicates (TorchTitan's Llama 3 runs)."""
    wl = Workload(batch=1, seq=8, mode="train", recompute="selective-op", precision="bf16-mixed",
                  mixed_weights="16-bit", hardware="h100-sxm")
    _assert_exact(_shallow("llama-3-8b"), wl)
    _assert_exact(_shallow("llama-2-7b"), wl.with_changes(recompute="full"))


def test_trace_deduplicates_by_default_and_on_request_not(monkeypatch):
    """``trace()`` takes the deduplicated path by default (4 shallow traces, not the 12 blocks: its op records are
    the synthesis'), and every block with ``dedup=False`` or ``MLFOOTPRINT_TRACE_DEDUP=0``; the figures agree."""
    spec, wl = _shallow("gpt2", 12), Workload(batch=1, seq=8, mode="train")
    calls = []
    original = run._trace_once
    monkeypatch.setattr(run, "_trace_once", lambda s, *a: calls.append(s.hf_config["n_layer"]) or original(s, *a))
    deduplicated = run.trace(spec, wl)
    assert calls == [1, 2, 3, 4]
    full = run.trace(spec, wl, dedup=False)
    monkeypatch.setenv("MLFOOTPRINT_TRACE_DEDUP", "0")
    run.trace(spec, wl)
    assert calls == [1, 2, 3, 4, 12, 12]
    assert _figures(spec, wl, deduplicated) == _figures(spec, wl, full)
    assert len(full.records) == len(deduplicated.records)


def test_blocks_that_do_not_repeat_are_traced_in_full(tmp_path):
    """A per-layer list without a short period (one global layer among sliding ones), an encoder-decoder, and a
    stack too shallow to gain: no plan, and the trace is the full one."""
    spec = _sweep_config("gemma2", tmp_path, 10, sliding_window=4,
                         layer_types=["sliding_attention"] * 9 + ["full_attention"])
    wl = Workload(batch=1, seq=16, mode="train")
    assert dedup.plan_for(spec, wl) is None
    assert dedup.plan_for(resolve("t5-base"), wl) is None
    assert dedup.plan_for(_shallow("gpt2", 4), wl) is None  # 1 base block + 3 copies: not worth four traces
    assert run._trace_deduplicated(spec, wl, True) is None
    assert dedup._canonical(run.trace(spec, wl)) == dedup._canonical(run.trace(spec, wl, dedup=False))


def test_a_top_block_that_frees_differently_is_traced_in_full():
    """BERT in inference: the top encoder layer frees a hidden state that a lower layer leaves to the next one,
    so the copies' memory events differ by position in the stack; the check refuses, and the trace is the full
    one."""
    spec, wl = _shallow("bert-base"), Workload(batch=2, seq=8, mode="inference")
    assert dedup.plan_for(spec, wl) is not None
    assert run._trace_deduplicated(spec, wl, True) is None
    assert _figures(spec, wl, run.trace(spec, wl)) == _figures(spec, wl, run.trace(spec, wl, dedup=False))


def test_the_check_refuses_traces_that_do_not_repeat():
    """The synthesis is checked against the real trace at the fourth depth: when that one is not what the
    first three predict (here, a model whose MLP is wider), the synthesis refuses and the caller traces in full."""
    spec = _shallow("gpt2", 12)
    wl = Workload(batch=1, seq=8, mode="train")
    plan = dedup.plan_for(spec, wl)
    traces = [run._trace_once(dedup.variant(spec, plan, d), wl, True, True)[0] for d in plan.depths()[:3]]
    wider = dataclasses.replace(spec, hf_config=dict(spec.hf_config, n_inner=4 * 768 + 64))
    traces.append(run._trace_once(dedup.variant(wider, plan, plan.depths()[3]), wl, True, True)[0])
    with pytest.raises(dedup.NotRepeating):
        dedup.synthesize(plan, traces, lambda: {})


def test_full_depth_llama_2_7b_with_recompute():
    """At the catalog's own depth (32 blocks: 31 synthesized copies), with full recomputation in backward."""
    _assert_exact(resolve("llama-2-7b"), Workload(batch=2, seq=64, mode="train", recompute="full"))
