"""Step-time model against hand-derived values: communication formulas, layouts, bubble, overlap, recompute.

A synthetic profile (fixed per-phase times) isolates the layout arithmetic from
the roofline; the catalog's a100-80gb gives the links (300 GB/s inside a node
of 8, 25 GB/s per device across nodes). Efficiency factors are set so the
arithmetic is exact: network 1, no collective latency. Overlap follows the windows of step.py (tests in
tests/test_predict_comm.py); the shape here reduces its 4 GB of gradients in one bucket-free layer stack.
"""
from __future__ import annotations

import dataclasses
import math

import pytest

from mlfootprint.core.errors import UserError
from mlfootprint.hardware.catalog import get_device
from mlfootprint.analysis.predict import comm
from mlfootprint.analysis.predict.efficiency import efficiency_for, parse_overrides
from mlfootprint.analysis.predict.roofline import PhaseProfile, Profile
from mlfootprint.analysis.predict.step import ModelShape, step_time
from mlfootprint.workload import Layout

A100 = get_device("a100-80gb")
EXACT = {"network": 1.0, "collective_latency_intra_s": 0.0, "collective_latency_inter_s": 0.0}


def profile(overhead: float = 0.0) -> Profile:
    return Profile(
        phases={
            "forward": PhaseProfile(compute_s=1.0, ops=100, model_flops=10**15),
            "backward": PhaseProfile(compute_s=2.0, ops=200, model_flops=2 * 10**15),
            "optimizer": PhaseProfile(memory_s=0.1, ops=50),
        },
        block_forward=PhaseProfile(compute_s=0.9, ops=90, model_flops=9 * 10**14),
        attention_forward=PhaseProfile(compute_s=0.2, ops=8, model_flops=2 * 10**14),
        fused_recompute_flops=0, per_op_overhead_s=overhead, peak_flops=312e12, peak_dtype="bf16",
        rates={"matmul": 234e12, "attention": 187e12, "conv": 187e12, "vector": 9.75e12, "memory": 1e12},
        fallbacks=[], overhead_source="test",
    )


# 1e9 parameters: bf16 working weights (2 GB gathered), fp32 gradients reduced in fp32 (4 GB)
SHAPE = ModelShape(batch=64, tokens_per_sample=2048, layers=4, hidden=1024, act_bytes=2, grad_bytes=4e9,
                   weight_bytes=2e9, param_bytes=4e9, training=True, weight_elem_bytes=2.0, reduce_elem_bytes=4.0)
BUCKETS = math.ceil(4e9 / (25 * 2**20))  # PyTorch DDP's 25 MiB buckets: 153


def run(par: Layout, factors: dict | None = None, overhead: float = 0.0):
    return step_time(profile(overhead), SHAPE, par, A100, efficiency_for(A100, {**EXACT, **(factors or {})}))


# --------------------------------------------------------------------------- formulas


def test_collective_volumes():
    assert comm.all_reduce_volume(1000, 4) == pytest.approx(1500)  # 2(n-1)/n
    assert comm.reduce_scatter_volume(1000, 4) == pytest.approx(750)
    assert comm.all_gather_volume(1000, 4) == pytest.approx(750)
    assert comm.all_reduce_volume(1000, 1) == 0


def test_zero_volumes_against_the_zero_paper():
    psi, n = 4e9, 16  # bytes of weights and of gradients (same dtype here)
    dp = comm.dp_volume(psi, psi, n, zero=0)
    assert dp.inter_bytes == pytest.approx(2 * 15 / 16 * psi)
    assert comm.dp_volume(psi, psi, n, zero=1).inter_bytes == pytest.approx(dp.inter_bytes)
    assert comm.dp_volume(psi, psi, n, zero=2).inter_bytes == pytest.approx(dp.inter_bytes)  # 2Ψ at one micro-batch
    z3 = comm.dp_volume(psi, psi, n, zero=3)
    assert z3.inter_bytes == pytest.approx(1.5 * dp.inter_bytes)  # 3Ψ vs 2Ψ
    zpp = comm.dp_volume(psi, psi, n, zero=3, zeropp=True, dp_per_node=8)
    assert zpp.inter_bytes == pytest.approx(z3.inter_bytes / 4)  # 3Ψ -> 0.75Ψ across nodes (16-bit)
    assert zpp.intra_bytes == pytest.approx(7 / 8 * psi)  # hpZ: backward gather inside the node of 8
    # gradient accumulation: stage 2 reduce-scatters every micro-batch, stage 3 also gathers every micro-batch
    assert comm.dp_volume(psi, psi, n, zero=2, micro_batches=4).inter_bytes == pytest.approx((4 + 1) * 15 / 16 * psi)
    assert comm.dp_volume(psi, psi, n, zero=3, micro_batches=4).inter_bytes == pytest.approx(4 * 3 * 15 / 16 * psi)
    assert comm.dp_volume(psi, psi, n, zero=0, micro_batches=4).inter_bytes == pytest.approx(dp.inter_bytes)


def test_pipeline_and_tensor_parallel_counts():
    assert comm.tp_all_reduces_per_layer(training=True, full_recompute=False) == 4
    assert comm.tp_all_reduces_per_layer(training=True, full_recompute=True) == 6
    assert comm.tp_all_reduces_per_layer(training=False, full_recompute=False) == 2


# --------------------------------------------------------------------------- layouts


def test_data_parallel_inside_a_node():
    st = run(Layout(dp=8, micro_batch=8))
    # work (1 + 2) / 8; optimizer 0.1 (replicated without ZeRO); all-reduce 2·7/8·4e9 B at 300 GB/s, in 153
    # buckets each shorter than its share of the 0.25 s backward: only the last bucket is exposed
    assert st.communication["dp_s"] == pytest.approx(7e9 / 300e9)
    assert st.step_s == pytest.approx(3 / 8 + 0.1 + 7e9 / 300e9 / BUCKETS)
    assert sum(st.breakdown.values()) == pytest.approx(st.step_s)


def test_data_parallel_across_nodes_uses_the_nodes_inter_node_links():
    st = run(Layout(dp=16, micro_batch=4))
    assert st.volumes["dp_bytes"] == pytest.approx(2 * 15 / 16 * 4e9)
    # 8 ranks of the ring in each node: NCCL runs one ring per NIC, 8 × 25 GB/s = 200 GB/s (under NVLink's 300)
    assert st.communication["dp_s"] == pytest.approx(7.5e9 / 200e9)
    # each bucket (0.0375 s / 153) is shorter than its share of the 0.125 s backward: the last one is exposed
    assert st.communication["dp_exposed_s"] == pytest.approx(0.0375 / BUCKETS)
    assert st.step_s == pytest.approx(3 / 16 + 0.1 + 0.0375 / BUCKETS)
    # one rank per node (tp 8 takes the node): the ring crosses nodes on that rank's own 25 GB/s link
    one = run(Layout(dp=2, tp=8, micro_batch=4))
    assert one.volumes["dp_bytes"] == pytest.approx(2 * 1 / 2 * 4e9 / 8)
    assert one.communication["dp_s"] == pytest.approx(0.5e9 / 25e9)


def test_zero3_and_zeropp():
    z3 = run(Layout(dp=16, micro_batch=4, zero=3))
    assert z3.volumes["dp_bytes"] == pytest.approx(15 / 16 * (2e9 + 2e9 + 4e9))  # two bf16 gathers, fp32 gradients
    assert z3.phases["optimizer_s"] == pytest.approx(0.1 / 16)  # each rank updates its shard
    zpp = run(Layout(dp=16, micro_batch=4, zero=3, zeropp=True))
    # int8 forward gather of 1e9 weights + int4 gradients across nodes; bf16 backward gather inside the node of 8
    inter, intra = 15 / 16 * (1e9 + 0.5e9), 7 / 8 * 2e9
    assert zpp.communication["dp_s"] == pytest.approx(inter / 200e9 + intra / 300e9)  # 8 NICs per node
    assert zpp.step_s < z3.step_s


def test_tensor_parallel_all_reduces():
    st = run(Layout(dp=4, tp=2, micro_batch=16))
    one = 2 * 1 / 2 * 16 * 2048 * 1024 * 2  # ring all-reduce of b·s·h bf16 elements over 2
    assert st.volumes["tp_bytes"] == pytest.approx(4 * 4 * one)  # 4 per layer × 4 layers × 1 micro-batch
    assert st.communication["tp_s"] == pytest.approx(16 * one / 300e9)
    full = run(Layout(dp=4, tp=2, micro_batch=16, recompute="full"))
    assert full.volumes["tp_bytes"] == pytest.approx(6 * 4 * one)
    across = run(Layout(dp=1, tp=16, micro_batch=64))  # a TP group larger than a node: inter-node link
    vol16 = 2 * 15 / 16 * 64 * 2048 * 1024 * 2
    assert across.communication["tp_s"] == pytest.approx(16 * vol16 / 25e9)


def test_parallel_block_all_reduces_the_summed_outputs_once_in_the_forward():
    # GPT-NeoX's gpt_j_residual: one forward all-reduce of attn + mlp per layer; the backward keeps one per branch
    assert [comm.tp_all_reduces_per_layer(False, False), comm.tp_all_reduces_per_layer(True, False),
            comm.tp_all_reduces_per_layer(True, True)] == [2, 4, 6]
    assert [comm.tp_all_reduces_per_layer(False, False, True), comm.tp_all_reduces_per_layer(True, False, True),
            comm.tp_all_reduces_per_layer(True, True, True)] == [1, 3, 4]
    parallel = dataclasses.replace(SHAPE, parallel_block=True)
    one = 2 * 1 / 2 * 16 * 2048 * 1024 * 2  # as in test_tensor_parallel_all_reduces
    st = step_time(profile(0.0), parallel, Layout(dp=4, tp=2, micro_batch=16), A100, efficiency_for(A100, EXACT))
    assert st.volumes["tp_bytes"] == pytest.approx(3 * 4 * one)  # 3 per layer × 4 layers × 1 micro-batch
    assert st.communication["tp_s"] == pytest.approx(12 * one / 300e9)
    full = step_time(profile(0.0), parallel, Layout(dp=4, tp=2, micro_batch=16, recompute="full"), A100,
                     efficiency_for(A100, EXACT))
    assert full.volumes["tp_bytes"] == pytest.approx(4 * 4 * one)


def test_pipeline_bubble():
    st = run(Layout(dp=2, pp=4, micro_batch=1))  # 32 per replica → 32 micro-batches
    assert st.micro_batches == 32
    pipe = st.step_s - st.breakdown["bubble_s"] - st.phases["optimizer_s"] - st.communication["dp_exposed_s"]
    # 1F1B: the slowest stage's 32 micro-batches, then the other 3 stages' fill and drain, one micro-batch each.
    # Equal stages would give 3/35 of the step; here the last stage also runs the 10% of the work outside the
    # blocks (the head and the loss): 0.225 + 0.1 of the model against the others' 0.225 each
    last, other = 0.9 / 4 + 0.1, 0.9 / 4
    sends = st.communication["pp_exposed_s"]  # each stage's, in its micro-batch time
    assert st.breakdown["bubble_s"] == pytest.approx(3 / 32 * ((pipe - sends) * other / last + sends))
    assert st.volumes["pp_bytes"] == pytest.approx(2 * 32 * 1 * 2048 * 1024 * 2)  # activations + gradients


def test_recompute_adds_the_block_forward():
    none = run(Layout(dp=8, micro_batch=8))
    full = run(Layout(dp=8, micro_batch=8, recompute="full"))
    sel = run(Layout(dp=8, micro_batch=8, recompute="selective"))
    assert full.step_s - none.step_s == pytest.approx(0.9 / 8)
    assert full.hardware_extra_flops == 9 * 10**14
    assert sel.step_s - none.step_s == pytest.approx(0.2 / 8)
    assert sel.hardware_extra_flops == 2 * 10**14


def test_per_op_overhead_counts_stage_ops_per_micro_batch():
    st = run(Layout(dp=2, pp=4, micro_batch=4), overhead=1e-5)  # 8 micro-batches of 300/4 ops; optimizer 50/4
    assert st.breakdown["overhead_s"] == pytest.approx(1e-5 * (300 / 4 * 8 + 50 / 4))


def test_monotone_in_devices():
    steps = [run(Layout(dp=d, micro_batch=64 // d)).step_s for d in (1, 2, 4, 8)]
    assert steps == sorted(steps, reverse=True)


def test_weight_streaming_floor():
    tiny = ModelShape(batch=64, tokens_per_sample=1, layers=4, hidden=1024, act_bytes=2, grad_bytes=4e9,
                      weight_bytes=2e12, param_bytes=4e12, training=True)
    st = step_time(profile(), tiny, Layout(dp=1, micro_batch=64), A100, efficiency_for(A100, EXACT))
    # 3 reads of the 2 TB of weights per micro-batch at 1 TB/s = 6 s > the 3 s of work; + 0.1 s optimizer
    assert st.step_s == pytest.approx(6.0 + 0.1)
    assert st.breakdown["memory_s"] == pytest.approx(3.0 + 0.1)


# --------------------------------------------------------------------------- efficiency factors


def test_efficiency_defaults_have_sources_and_overrides_apply():
    eff = efficiency_for(A100)
    for name in ("matmul", "attention", "conv", "vector", "memory_bandwidth", "network"):
        f = eff.factors[name]
        assert f.source and f.provenance in ("assumed", "published")
    assert efficiency_for(A100, "matmul=0.5")["matmul"] == 0.5
    assert parse_overrides("matmul=0.5, network=0.7") == {"matmul": 0.5, "network": 0.7}
    with pytest.raises(UserError, match="unknown efficiency factor 'matmull'.*matmul"):
        efficiency_for(A100, "matmull=0.5")
    with pytest.raises(UserError, match="between"):
        efficiency_for(A100, "matmul=75")
    with pytest.raises(UserError, match="NAME=VALUE"):
        parse_overrides("matmul")


def test_measured_profile_is_not_derated(tmp_path, monkeypatch):
    from dataclasses import replace

    src = {k: dict(v, provenance="measured") for k, v in A100.sources.items()}
    this = replace(A100, id="this", sources=src)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no op-class curves there
    eff = efficiency_for(this)
    assert eff["matmul"] == 1.0 and eff["memory_bandwidth"] == 1.0
    assert eff.curves is None
    assert math.isclose(efficiency_for(A100)["matmul"], 0.75)


# --------------------------------------------------------------------------- sequence parallelism


def test_phase_profile_unsharded_runs_the_replicated_part_whole_on_each_rank():
    # 0.3 s of a phase's memory-bound vector kernels and 0.1 s of compute-bound ones are replicated without
    # sequence parallelism: the sums (split over tp = 4 like every operator) gain 3 × each
    ph = PhaseProfile(compute_s=1.0, memory_s=0.5, by_class={"matmul": 0.9, "vector": 0.6},
                      replicated={"vector": (0.1, 0.3)})
    out = ph.unsharded(4)
    assert (out.compute_s, out.memory_s) == pytest.approx((1.3, 1.4))
    assert out.by_class == pytest.approx({"matmul": 0.9, "vector": 1.8})
    assert out.replicated == {"vector": pytest.approx((0.4, 1.2))}
    assert ph.compute_s == 1.0 and ph.replicated == {"vector": (0.1, 0.3)}  # the profile itself is unchanged
    assert ph.unsharded(1) is ph and PhaseProfile(compute_s=1.0).unsharded(8).compute_s == 1.0
    # scaled and plus carry the replicated part
    assert ph.scaled(2.0).replicated == {"vector": (0.2, 0.6)}
    assert ph.plus(ph).replicated == {"vector": (0.2, 0.6)}


def test_without_sequence_parallelism_the_replicated_operators_run_tp_times_longer():
    """A profile whose forward holds 0.4 s and backward 0.8 s of replicated memory-bound kernels (of 1.4 s and
    2.8 s): with sequence parallelism they are split over tp like the rest; without it each rank runs them whole,
    (tp − 1) × their split time more. No data parallelism, so no collective's overlap changes with it; the backward's
    tensor-parallel collectives exposed (--tp-backward exposed), so sequence parallelism re-gathers no input."""
    prof = profile()
    prof.phases["forward"] = PhaseProfile(compute_s=1.0, memory_s=0.4, ops=100, model_flops=10**15,
                                          replicated={"vector": (0.0, 0.4)})
    prof.phases["backward"] = PhaseProfile(compute_s=2.0, memory_s=0.8, ops=200, model_flops=2 * 10**15,
                                           replicated={"vector": (0.0, 0.8)})
    eff = efficiency_for(A100, EXACT)
    for tp in (2, 4):
        on = step_time(prof, SHAPE, Layout(tp=tp, micro_batch=16, sequence_parallel=True, tp_backward="exposed"),
                       A100, eff)
        off = step_time(prof, SHAPE, Layout(tp=tp, micro_batch=16, sequence_parallel=False, tp_backward="exposed"),
                        A100, eff)
        # the replicated share is 0.4 / 1.4 of the forward and 0.8 / 2.8 of the backward: 2/7 of each
        split = 2 / 7 * (on.phases["forward_s"] + on.phases["backward_s"])
        assert off.breakdown["memory_s"] - on.breakdown["memory_s"] == pytest.approx((tp - 1) * split)
        assert off.breakdown["compute_s"] == on.breakdown["compute_s"]
        assert off.step_s - on.step_s == pytest.approx((tp - 1) * split)
        assert off.phases["forward_s"] == pytest.approx(on.phases["forward_s"] * (1 + (tp - 1) * 2 / 7))


def test_the_replicated_operators_are_the_norms_the_dropouts_after_row_parallel_linears_and_the_residuals():
    # Korthikanti et al. 2022, Sec. 4.2.2: under tensor parallelism without sequence parallelism the layer norms,
    # the dropouts after attention and MLP and the residual adds run on the whole sequence on every rank; the
    # GEMMs, the attention core and the activation are split
    import mlfootprint as mf
    from mlfootprint.analysis.memory.timeline import tp_replicated
    from mlfootprint.trace.run import trace
    from mlfootprint.verbs.common import resolve_model

    tr = trace(resolve_model("gpt2", (), None),
               mf.Workload(mode="train", seq=64, batch=2, precision="bf16-mixed", hardware="h100-sxm"))
    replicated = tp_replicated(tr)
    block = {r.module for r in tr.records if r.module.startswith("transformer.h.0")}
    assert {m for m in block if replicated(m)} == {"transformer.h.0", "transformer.h.0.ln_1", "transformer.h.0.ln_2",
                                                   "transformer.h.0.attn.resid_dropout", "transformer.h.0.mlp.dropout"}
    assert not any(replicated(m) for m in ("transformer.wte", "transformer.ln_f", "lm_head", ""))
    # through predict: sequence parallelism off costs (tp − 1)/tp of the replicated work at tp, so the extra time
    # at tp 4 is 1.5 × that at tp 2 (3/4 over 1/2)
    def step(tp: int, sp: bool) -> float:
        wl = mf.Workload(mode="train", seq=1024, batch=16, micro_batch=4, precision="bf16-mixed", hardware="h100-sxm",
                         devices=tp, tp=tp, pp=1, zero=0, recompute="none", sequence_parallel=sp)
        return mf.predict("gpt2", wl).sections["time"]["breakdown"]["memory_s"]
    extra2, extra4 = step(2, False) - step(2, True), step(4, False) - step(4, True)
    assert extra2 > 0 and extra4 / extra2 == pytest.approx(1.5, rel=1e-9)


def test_a_layout_the_planner_completes_keeps_a_given_no_sequence_parallel():
    # --tp fixed, the rest chosen by the planner: the user's --no-sequence-parallel holds in memory and in time
    import mlfootprint as mf

    def run(sp):
        wl = mf.Workload(mode="train", seq=1024, batch=16, precision="bf16-mixed", hardware="a100-80gb", devices=4,
                         tp=4, sequence_parallel=sp)
        return mf.predict("gpt2", wl)
    off, on = run(False), run(None)
    assert any("without sequence parallelism" in a for a in off.assumptions)
    assert any("no sequence parallelism: the norms" in a for a in off.assumptions)
    assert any("with sequence parallelism" in a for a in on.assumptions)
    assert off.sections["time"]["breakdown"]["memory_s"] > on.sections["time"]["breakdown"]["memory_s"]


# --------------------------------------------------------------------------- ring context parallelism's kernels


def test_ring_context_parallelism_runs_attention_at_the_rate_of_its_blocks_keys():
    """Ring CP calls the fused kernel once per K/V block of S/cp keys; a device class whose attention rate depends on
    the key length (attention.toml: H100's rises from 4K to 8K keys) runs those calls at the S/cp rate. The other
    methods call it over all the keys (Llama 3's all-gather; Ulysses splits heads), and past the table's last point
    the rate is flat."""
    from mlfootprint.analysis.predict.attention_rate import attention_rate
    from mlfootprint.analysis.predict.step import ring_attention_slowdown

    h100 = get_device("h100-sxm")
    rate = attention_rate(h100, None)
    prof = dataclasses.replace(profile(), attention=rate)
    prof.phases["forward"] = PhaseProfile(compute_s=1.0, ops=100, model_flops=10**15,
                                          by_class={"matmul": 0.8, "attention": 0.2})
    shp = dataclasses.replace(SHAPE, tokens_per_sample=8192, head_dim=128, heads=8, kv_heads=8)
    slower = rate.share_at(8192, 128) / rate.share_at(1024, 128)
    assert slower > 1.05  # 8K keys run faster than 1K keys on the H100 class
    assert ring_attention_slowdown(prof, shp, Layout(cp=8)) == pytest.approx(slower)
    assert ring_attention_slowdown(prof, shp, Layout(cp=8, cp_comm="all-gather")) == 1.0
    assert ring_attention_slowdown(prof, shp, Layout(cp=8, cp_comm="all-to-all")) == 1.0
    assert ring_attention_slowdown(prof, dataclasses.replace(shp, tokens_per_sample=65536), Layout(cp=8)) == 1.0
    assert ring_attention_slowdown(profile(), shp, Layout(cp=8)) == 1.0  # a flat attention factor
    # the forward's attention (0.2 of its 1.0 s) takes `slower` times as long; the matmuls do not change
    eff = efficiency_for(h100, EXACT)
    ring = step_time(prof, shp, Layout(cp=8, micro_batch=1), h100, eff)
    gather = step_time(prof, shp, Layout(cp=8, micro_batch=1, cp_comm="all-gather"), h100, eff)
    assert ring.phases["forward_s"] / gather.phases["forward_s"] == pytest.approx(0.8 + 0.2 * slower)
