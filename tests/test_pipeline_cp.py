"""Pipeline schedules, uneven stages and context parallelism (issue 12, parts 2 and 3), by hand.

The step-model tests run on a hand-built roofline profile (no trace): one device does 1 s of forward and 2 s of
backward work for the whole traced batch, so every figure below is arithmetic on those numbers.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mlfootprint.analysis.memory.model import inflight_micro_batches, memory_model
from mlfootprint.analysis.predict.roofline import PhaseProfile, Profile
from mlfootprint.analysis.predict.step import ModelShape, step_time
from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.workload import (Layout, Workload, check_against_model, check_context_parallel, grad_accum_of,
                                  max_virtual_stages, stage_layers)
from tests.helpers import traced_for_prediction

# no communication cost unless a test sets a bandwidth: only the schedule's own arithmetic shows
EFF = {"network": 1.0, "collective_latency_intra_s": 0.0, "collective_latency_inter_s": 0.0, "overlap_tp": 0.0,
       "overlap_pp": 0.0, "overlap_dp": 0.0, "host_link": 1e9}
FAST = SimpleNamespace(id="fast", devices_per_node=8, intra_node_bandwidth_bytes_per_s=1e30,
                       inter_node_bandwidth_bytes_per_s=1e30)


def profile(block_share: float = 1.0, attention_fwd_s: float = 0.0, attention_bwd_s: float = 0.0) -> Profile:
    fwd = PhaseProfile(compute_s=1.0, ops=0, by_class={"matmul": 1.0 - attention_fwd_s, "attention": attention_fwd_s})
    bwd = PhaseProfile(compute_s=2.0, ops=0, by_class={"matmul": 2.0 - attention_bwd_s, "attention": attention_bwd_s})
    block = PhaseProfile(compute_s=block_share, ops=1)
    return Profile(phases={"forward": fwd, "backward": bwd}, block_forward=block, attention_forward=PhaseProfile(),
                   fused_recompute_flops=0, per_op_overhead_s=0.0, peak_flops=1e15, peak_dtype="bf16",
                   rates={"memory": 1e30}, fallbacks=[], overhead_source="test")


def shape(layers: int = 16, batch: int = 16, **kw) -> ModelShape:
    base = dict(batch=batch, tokens_per_sample=128, layers=layers, hidden=64, act_bytes=2, grad_bytes=0.0,
                weight_bytes=0.0, param_bytes=0.0, heads=4, kv_heads=2, head_dim=16)
    base.update(kw)
    return ModelShape(**base)


# ------------------------------------------------------------------ uneven stages

def test_stage_layers_even_uneven_and_126_on_16():
    assert stage_layers(96, 8) == (12,) * 8
    # 126 = 14 × 8 + 2 × 7: the two 7-block stages at the ends, which also hold the embedding and the head
    # (Megatron-LM's account_for_embedding/loss_in_pipeline_split gives the same: (126 + 2) / 16 = 8)
    assert stage_layers(126, 16) == (7,) + (8,) * 14 + (7,)
    assert stage_layers(18, 4) == (4, 5, 5, 4)
    assert stage_layers(10, 4) == (2, 3, 3, 2)
    assert sum(stage_layers(127, 16)) == 127
    with pytest.raises(UserError, match="exceeds the model's 4 layers"):
        stage_layers(4, 8)


def test_virtual_stages_an_end_chunk_may_hold_the_embedding_or_the_head_alone():
    # Llama 3 405B (126 layers, PP 16): stages of 7, 8 × 14, 7 blocks; the ends take the embedding and the head as a
    # chunk each, so 8 chunks of one block (or the embedding / head alone) per stage — the paper's "first model chunk
    # on the first stage has only the embedding" (Sec. 3.3.2)
    assert max_virtual_stages(126, 16) == 8
    assert max_virtual_stages(96, 8) == 12  # even stages: a block per chunk, as before
    assert max_virtual_stages(10, 4) == 3  # (2, 3, 3, 2): the ends 2 + 1, the middle 3
    assert max_virtual_stages(12, 5) == 2  # (2, 2, 3, 3, 2): stage 1 has two blocks and no end piece
    assert max_virtual_stages(2, 2) == 2  # E t | t L
    assert max_virtual_stages(5, 1) == 5
    facts = {"heads": 128, "layers": 126}
    check_against_model(Layout(pp=16, vp=8, micro_batch=1, grad_accum=16), facts)
    with pytest.raises(UserError, match=r"pp.16 × (--)?vp.9: a stage would hold a model chunk with no layer .*use a (--)?vp of at most 8"):
        check_against_model(Layout(pp=16, vp=9, micro_batch=1, grad_accum=16), facts)


# ------------------------------------------------------------------ schedules

def test_bubble_1f1b_interleaved_and_zero_bubble_by_hand():
    # pp 4, 16 micro-batches of 1 on one replica; each device does 1/4 of 3 s = 0.75 s of work
    base = Layout(pp=4, micro_batch=1)
    st = step_time(profile(), shape(), base, FAST, EFF)
    assert st.micro_batches == 16
    assert st.breakdown["compute_s"] == pytest.approx(0.75)
    # 1F1B: (p-1)/m of the ideal time = 3/16 × 0.75 s
    assert st.breakdown["bubble_s"] == pytest.approx(3 / 16 * 0.75)
    assert st.bubble_fraction == pytest.approx(3 / 16)
    assert st.step_s == pytest.approx(0.75 * (1 + 3 / 16))
    # interleaved, v = 2: (p-1)/(v·m)
    st2 = step_time(profile(), shape(), base.replace(vp=2), FAST, EFF)
    assert st2.breakdown["bubble_s"] == pytest.approx(3 / 32 * 0.75)
    # ZB-H1: (p-1)(T_F + T_B - T_W) with T_B = T_W = half the backward: T_F / (T_F + T_B + T_W) = 1/3 of 1F1B's
    zb = step_time(profile(), shape(), base.replace(schedule="zero-bubble"), FAST, EFF)
    assert zb.breakdown["bubble_s"] == pytest.approx(st.breakdown["bubble_s"] / 3)
    assert any("ZB-H1" in n for n in zb.notes)


def test_interleaving_multiplies_the_pipeline_sends_by_v():
    # 2 sends (activation forward, gradient back) per micro-batch per boundary, × v when interleaved:
    # 2 × 16 micro-batches × v 2 × (1 × 128 tokens × 64 hidden × 2 B) = 1,048,576 B
    st = step_time(profile(), shape(), Layout(pp=4, vp=2, micro_batch=1), FAST, EFF)
    assert st.volumes["pp_bytes"] == 2 * 16 * 2 * 128 * 64 * 2 == 1_048_576
    st1 = step_time(profile(), shape(), Layout(pp=4, micro_batch=1), FAST, EFF)
    assert st1.volumes["pp_bytes"] == 1_048_576 / 2
    # under tensor parallelism 2 each rank sends its half (Megatron's scatter/gather, Narayanan et al. 2021, Sec. 4.1)
    st2 = step_time(profile(), shape(), Layout(pp=4, tp=2, micro_batch=1), FAST, EFF)
    assert st2.volumes["pp_bytes"] == 1_048_576 / 4


def test_uneven_stages_the_slowest_sets_the_step():
    # 18 blocks on 4 stages: 4, 5, 5, 4; all work in the blocks: the 5-block stage does 5/18 of it
    st = step_time(profile(), shape(layers=18), Layout(pp=4, micro_batch=1), FAST, EFF)
    assert st.stages == (4, 5, 5, 4)
    assert st.breakdown["compute_s"] == pytest.approx(3.0 * 5 / 18)
    # the bubble is the other stages' fill and drain (4 + 5 + 4 blocks), once each per step, 1/16 of their work
    assert st.breakdown["bubble_s"] == pytest.approx((4 + 5 + 4) / 18 * 3.0 / 16)
    # 80% of the forward in the blocks, 20% (head, loss) on the last stage: 0.8 × 4/18 + 0.2 = 0.3778 of the
    # model, more than a middle stage's 0.8 × 5/18 = 0.2222
    st = step_time(profile(block_share=0.8), shape(layers=18), Layout(pp=4, micro_batch=1), FAST, EFF)
    assert st.breakdown["compute_s"] == pytest.approx(3.0 * (0.8 * 4 / 18 + 0.2))
    # the last stage paces the step; the bubble is the others': 0.8 × (4 + 5 + 5) / 18 of the work, over 16
    assert st.breakdown["bubble_s"] == pytest.approx(3.0 * 0.8 * 14 / 18 / 16)
    assert any("uneven pipeline stages: 4, 5 × 2, 4" in n for n in st.notes)


# ------------------------------------------------------------------ context parallelism

def test_ring_context_parallel_volume_and_overlap_by_hand():
    # cp 4 (devices = dp 1 × cp 4): each device holds 128 / 4 = 32 tokens of each sequence; its K and V block is
    # 2 × 32 tokens × 2 kv heads × 16 × 2 B = 4,096 B. Per layer and micro-batch: 3 − 1 = 3 ring steps forward
    # (one KV pass) and backward (KV and dKV: two), so 3 passes × 3 steps × 4,096 B; × 16 layers × 16 micro-batches
    dev = SimpleNamespace(id="slow", devices_per_node=8, intra_node_bandwidth_bytes_per_s=1e9,
                          inter_node_bandwidth_bytes_per_s=1e9)
    par = Layout(cp=4, micro_batch=1)
    assert par.devices == 4
    st = step_time(profile(attention_fwd_s=0.01, attention_bwd_s=0.02), shape(), par, dev, EFF)
    volume = 3 * 3 * 4096 * 16 * 16
    assert st.volumes["cp_bytes"] == volume == 9_437_184
    assert st.communication["cp_s"] == pytest.approx(volume / 1e9)
    # hidden under the attention of the block in hand: (0.01 + 0.02) s / 4 devices of attention per device
    assert st.communication["cp_exposed_s"] == pytest.approx(volume / 1e9 - 0.03 / 4)
    # work splits over the 4 devices
    assert st.breakdown["compute_s"] == pytest.approx(3.0 / 4)


def test_all_gather_context_parallel_volume_and_exposure_by_hand():
    # Llama 3's K/V all-gather, cp 4: the local K and V block is 4,096 B (as in the ring test); each all-gather
    # brings the other 3 blocks (12,288 B); per layer and micro-batch 1 gather forward, 1 gather + 1 dK/dV
    # reduce-scatter backward: 3 × 12,288 B × 16 layers × 16 micro-batches, all exposed (no overlap with attention)
    dev = SimpleNamespace(id="slow", devices_per_node=8, intra_node_bandwidth_bytes_per_s=1e9,
                          inter_node_bandwidth_bytes_per_s=1e9)
    par = Layout(cp=4, micro_batch=1, cp_comm="all-gather")
    st = step_time(profile(attention_fwd_s=0.01, attention_bwd_s=0.02), shape(), par, dev, EFF)
    volume = 3 * 3 * 4096 * 16 * 16
    assert st.volumes["cp_bytes"] == volume  # the ring's bytes too: 3 passes of 3 blocks
    assert st.communication["cp_s"] == pytest.approx(volume / 1e9)
    # the same bytes as the ring, but the ring hides (0.01 + 0.02) s / 4 devices of them under the attention it runs
    # beside; the all-gather waits for all of them
    assert st.communication["cp_exposed_s"] == pytest.approx(volume / 1e9)
    ring = step_time(profile(attention_fwd_s=0.01, attention_bwd_s=0.02), shape(), Layout(cp=4, micro_batch=1), dev,
                     EFF)
    assert st.breakdown["communication_s"] - ring.breakdown["communication_s"] == pytest.approx(0.03 / 4)
    assert any("K/V all-gather (Llama 3)" in n and "not overlapped" in n for n in st.notes)
    # the same two-chunk split as the ring: the sequence divides into 2 × cp chunks
    with pytest.raises(UserError, match=r"K/V all-gather needs (--)?seq divisible by 2 × cp = 8"):
        check_context_parallel(par, 100, 4)


def test_all_to_all_context_parallel_volume_by_hand():
    # Ulysses: Q, K, V, output of 32 tokens × (2 × 4 heads + 2 × 2 kv heads) × 16 × 2 B = 12,288 B per layer pass;
    # each all-to-all sends (cp-1)/cp of its buffer, forward and backward: 2 × 3/4 × 12,288 = 18,432 B per layer
    dev = SimpleNamespace(id="slow", devices_per_node=8, intra_node_bandwidth_bytes_per_s=1e9,
                          inter_node_bandwidth_bytes_per_s=1e9)
    st = step_time(profile(), shape(), Layout(cp=4, cp_comm="all-to-all", micro_batch=1), dev, EFF)
    assert st.volumes["cp_bytes"] == 18_432 * 16 * 16
    assert st.communication["cp_s"] == pytest.approx(18_432 * 16 * 16 / 1e9)  # one node: all on its 1 GB/s links
    assert st.communication["cp_exposed_s"] == st.communication["cp_s"]  # not overlapped
    # cp 16 over two nodes of 8: a rank's buffers go 7/16 to node peers (10 GB/s) and 8/16 over its own NIC (1 GB/s)
    # at once: the NIC sets the time, 8/16 of the buffers where one link for all of them would carry 15/16
    two = SimpleNamespace(id="two", devices_per_node=8, intra_node_bandwidth_bytes_per_s=10e9,
                          inter_node_bandwidth_bytes_per_s=1e9)
    wide = step_time(profile(), shape(tokens_per_sample=256, heads=16, kv_heads=16),
                     Layout(cp=16, cp_comm="all-to-all", micro_batch=1), two, EFF)
    buffers = wide.volumes["cp_bytes"] * 16 / 15
    assert wide.communication["cp_s"] == pytest.approx(8 / 16 * buffers / 1e9)


def test_gradients_reduce_over_dp_times_cp():
    # dp 2 × cp 2 hold the same weights: ring all-reduce over 4 ranks, 2 × 3/4 × 1 MB
    st = step_time(profile(), shape(grad_bytes=1e6), Layout(dp=2, cp=2, micro_batch=1), FAST, EFF)
    assert st.volumes["dp_bytes"] == pytest.approx(2 * 3 / 4 * 1e6)


def test_context_parallel_checks():
    check_context_parallel(Layout(cp=4), 1024, 32)
    with pytest.raises(UserError, match="divisible by 2 × cp = 8"):
        check_context_parallel(Layout(cp=4), 100, 32)
    with pytest.raises(UserError, match="heads"):
        check_context_parallel(Layout(cp=8, cp_comm="all-to-all"), 1024, 4)
    with pytest.raises(UserError, match="devices=12 is not divisible by tp=2 × pp=1 × cp=4 = 8"):
        Workload(devices=12, tp=2, cp=4)
    assert Workload(devices=64, tp=2, pp=2, cp=4).dp == 4
    with pytest.raises(UserError, match="zero-bubble"):
        Layout(pp=4, vp=2, schedule="zero-bubble")
    with pytest.raises(UserError, match="needs pipeline parallelism"):
        Layout(vp=2)


# ------------------------------------------------------------------ memory

def test_inflight_micro_batches_by_schedule():
    assert inflight_micro_batches(16, 1, 0, 128) == 16  # 1F1B: pp − stage
    assert inflight_micro_batches(16, 1, 15, 128) == 1
    assert inflight_micro_batches(16, 1, 0, 4) == 4  # at most the micro-batches there are
    # interleaved, first stage: (1 + (p−1)/(p·v))·p = (1 + 15/32)·16 = 23.5 (Korthikanti et al. 2022, Sec. 4.2.3)
    assert inflight_micro_batches(16, 2, 0, 128) == pytest.approx((1 + 15 / 32) * 16) == 23.5
    assert inflight_micro_batches(16, 2, 15, 128) == pytest.approx((0 + 16 + 1) / 2)
    assert inflight_micro_batches(4, 2, 0, 2) == 2  # capped by the 2 × 2 chunks there are


DEEP = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 12, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 128, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    path = tmp_path_factory.mktemp("deep") / "config.json"
    path.write_text(json.dumps(DEEP))
    spec, wl, tr = traced_for_prediction(str(path), Workload(batch=8, seq=64, mode="train", precision="bf16-mixed"))
    return path, memory_model(spec, wl, tr)


def test_memory_interleaved_first_stage_and_context_parallel(deep):
    _, mm = deep
    base = Layout(pp=4, micro_batch=1, grad_accum=8, precision="bf16-mixed")
    one = mm.per_device(base)
    two = mm.per_device(base.replace(vp=2))
    # 12 blocks on 4 stages of 3; stage 0 holds min(4, 8) = 4 micro-batches under 1F1B, (1 + 3/8)·4 = 5.5
    # interleaved: 3 and 4.5 more than the one being computed
    assert (one.stage, two.stage) == (0, 0)  # the first stage holds the most micro-batches
    assert one.breakdown["inflight_micro_batches"] == 4 and two.breakdown["inflight_micro_batches"] == 5.5
    per_micro_batch = one.breakdown["inflight_activations_bytes"] / 3
    assert two.breakdown["inflight_activations_bytes"] == pytest.approx(per_micro_batch * 4.5, abs=2)
    assert two.peak_bytes - one.peak_bytes == pytest.approx(per_micro_batch * 1.5, abs=4)
    # context parallelism 2: each device keeps half of each sequence's activations
    full = mm.per_device(Layout(micro_batch=2, precision="bf16-mixed"))
    half = mm.per_device(Layout(micro_batch=2, cp=2, precision="bf16-mixed"))
    assert half.activations_bytes == pytest.approx(full.activations_bytes / 2, abs=2)
    # the model split over 2 context-parallel devices: --mixed-weights auto takes Megatron-LM's 16-bit working
    # weights (2 bytes a parameter where the autocast layout keeps 4), each device all of them
    assert half.weights_bytes == full.weights_bytes / 2


def test_uneven_stages_in_memory(deep):
    _, mm = deep
    # 12 blocks on 5 stages: the two extra blocks go to the middle stages
    assert stage_layers(12, 5) == (2, 2, 3, 3, 2)
    # the first stage (2 blocks, the embedding, 5 micro-batches in flight) outweighs the middle 3-block stage
    # (3 in flight): 2 × 5 > 3 × 3 block-micro-batches of saved activations
    est = mm.per_device(Layout(pp=5, micro_batch=1, grad_accum=8, precision="bf16-mixed"))
    assert est.stage == 0 and est.breakdown["inflight_micro_batches"] == 5


def test_micro_batch_and_global_batch_give_the_micro_batches_a_stage_holds(deep):
    # --batch 8 --micro-batch 1 on one replica is 8 micro-batches, the same step as --grad-accum 8: a pipeline stage
    # holds min(pp − stage, 8) of them, not one
    wl = Workload(batch=8, seq=64, mode="train", precision="bf16-mixed", pp=4, micro_batch=1)
    assert grad_accum_of(wl) == 8 and Layout.from_workload(wl).grad_accum == 8
    wl_dp = Workload(batch=2048, seq=64, mode="train", devices=16384, tp=8, pp=16, micro_batch=1)
    assert wl_dp.dp == 128 and grad_accum_of(wl_dp) == 16  # Llama 3 405B on 16,384 GPUs: 2048 / 128 / 1
    assert grad_accum_of(Workload(batch=8, mode="train", pp=4, micro_batch=1, grad_accum=8)) == 8  # given, agreeing
    with pytest.raises(UserError, match="drop grad.accum"):  # contradicting: refused (it was echoed and ignored)
        Workload(batch=8, mode="train", pp=4, micro_batch=1, grad_accum=2)
    assert grad_accum_of(Workload(mode="train", pp=4, micro_batch=1)) == 1  # no global batch given
    # a micro-batch that does not divide the per-replica batch is a one-line error (memory took it silently)
    with pytest.raises(UserError, match=r"micro.batch.4 does not divide the per-replica batch 5 \(global "):
        Workload(batch=10, dp=2, micro_batch=4, mode="train")
    assert main(["memory", "gpt2", "--mode", "train", "--batch", "10", "--micro-batch", "4", "--seq", "32"]) == 2
    _, mm = deep
    by_micro_batch = mm.per_device(Layout.from_workload(wl))
    by_accumulation = mm.per_device(Layout.from_workload(Workload(batch=8, seq=64, mode="train",
                                                                  precision="bf16-mixed", pp=4, grad_accum=8)))
    assert by_micro_batch.breakdown["inflight_micro_batches"] == 4
    assert by_micro_batch.peak_bytes == by_accumulation.peak_bytes


def test_pp_16_on_a_126_layer_model_from_the_command_line(tmp_path):
    cfg = dict(DEEP, num_hidden_layers=126, hidden_size=16, intermediate_size=32)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "p.json"
    assert main(["predict", str(path), "--mode", "train", "--batch", "32", "--seq", "32", "--pp", "16", "--vp", "2",
                 "--devices", "16", "--hardware", "h100-sxm", "--format", "json", "-o", str(out)]) == 0
    rep = json.loads(out.read_text())
    notes = " ".join(rep["assumptions"])
    assert "uneven pipeline stages: 7, 8 × 14, 7 blocks" in notes
    assert "interleaved 1F1B with 2 virtual stages" in notes
    assert rep["workload"]["pp"] == 16 and rep["workload"]["vp"] == 2
    assert rep["time"]["breakdown"]["bubble_s"] > 0


def test_virtual_stages_with_only_devices_leave_the_pipeline_to_the_planner(tmp_path):
    # --vp needs --pp > 1 on a layout of your own; with --devices and no --pp the planner chooses the pipeline, so a
    # given --vp fixes its virtual stages and rules out the unpipelined layouts (it was refused up front before)
    with pytest.raises(UserError, match="needs pipeline parallelism"):
        Workload(vp=2, mode="train")
    assert Workload(vp=2, mode="train", devices=8).pp == 1  # open: the planner's
    with pytest.raises(UserError, match="needs pipeline parallelism"):  # --pp given as 1: refused
        Workload(vp=2, mode="train", devices=8, pp=1)
    with pytest.raises(UserError, match="needs pipeline parallelism"):  # a layout of your own (--dp) keeps pp = 1
        Layout.from_workload(Workload(vp=2, mode="train", devices=8, dp=8))
    out = tmp_path / "plan.json"
    assert main(["plan", str(tmp_path_config(tmp_path)), "--devices", "8", "--vp", "2", "--hardware", "h100-sxm",
                 "--batch", "64", "--seq", "32", "--top", "3", "--format", "json", "-o", str(out)]) == 0
    rows = json.loads(out.read_text())["plan"]["layouts"]
    assert rows and all(r["pp"] > 1 and r["vp"] == 2 for r in rows)
    assert main(["plan", str(tmp_path_config(tmp_path)), "--devices", "8", "--hardware", "h100-sxm",
                 "--batch", "64", "--seq", "32", "--top", "10", "--format", "json", "-o", str(out)]) == 0
    assert any(r["vp"] != 2 for r in json.loads(out.read_text())["plan"]["layouts"])  # what --vp 2 rules out


def test_expert_parallelism_on_a_model_without_experts_is_named_by_plan(tmp_path, capsys):
    # every layout was refused by the memory model, and plan said "no layout ... is possible ... use another device
    # count" where the fix is to drop --ep
    assert main(["plan", str(tmp_path_config(tmp_path)), "--devices", "8", "--ep", "2", "--hardware", "h100-sxm",
                 "--batch", "64", "--seq", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfootprint: error: --ep 2 needs a mixture-of-experts model; ") and \
        err.endswith(" has no experts (drop --ep)") and "\n" not in err, err


def tmp_path_config(tmp_path):
    path = tmp_path / "config.json"
    if not path.exists():
        path.write_text(json.dumps(dict(DEEP, num_hidden_layers=8, hidden_size=16, intermediate_size=32)))
    return path


def test_a_pipeline_of_your_own_takes_the_fastest_micro_batch_that_fits():
    # --dp 2 --pp 2 without --micro-batch: 16 samples per replica. The largest micro-batch that fits (16) is one
    # micro-batch per step, a bubble of (p - 1)/m = 1 whole step; the card takes the fastest that fits instead, and each
    # micro-batch given explicitly is predicted no faster
    import mlfootprint as mf

    base = dict(mode="train", seq=1024, batch=32, hardware="h100-sxm", devices=4, dp=2, pp=2)
    chosen = mf.predict("gpt2", Workload(**base))
    mb = chosen.sections["workload"]["micro_batch"]
    assert mb not in (16, None) and 16 % mb == 0
    assert any(f"micro-batch {mb} with {16 // mb} accumulation steps" in a and "the fastest over 2 pipeline stages" in a
               for a in chosen.assumptions)
    for other in (1, 16):
        given = mf.predict("gpt2", Workload(**base, micro_batch=other))
        assert chosen.sections["time"]["step_s"] <= given.sections["time"]["step_s"], other


@pytest.mark.parametrize("options,reason", [
    (["--devices", "8", "--pp", "2", "--vp", "8"], "use a --vp of at most"),
    (["--devices", "6", "--tp", "3"], "--tp 3 does not divide the model's 4 attention heads; use one of: 1, 2, 4"),
])
def test_a_fixed_choice_the_model_refuses_is_named_not_every_layout(tmp_path, capsys, options, reason):
    # every layout the planner made was refused by the memory model, and the message said to use another device
    # count; the fixed choice's own reason is what to change
    for verb in ("plan", "predict"):
        capsys.readouterr()
        assert main([verb, str(tmp_path_config(tmp_path)), "--mode", "train", "--hardware", "h100-sxm", "--seq", "32",
                     *options]) == 2
        err = capsys.readouterr().err.strip()
        assert reason in err and "another device count" not in err and "\n" not in err, err


def test_an_expert_split_the_model_refuses_is_named_by_plan(capsys):
    capsys.readouterr()
    assert main(["plan", "tests/data/configs/tiny-qwen2-moe", "--hardware", "h100-sxm", "--seq", "32", "--devices",
                 "8", "--ep", "3", "--batch", "1024"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mlfootprint: error: --ep 3 does not divide the model's 4 experts", err
