"""Generation time in closed form: the sum over decode steps equals the per-token loop, at any length."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from mlfootprint.analysis.predict.inference import DecodeLine, decode_line, decode_model, decode_token, generate_time
from mlfootprint.analysis.predict.prediction import inference_latency, parallel_from, prepare
from mlfootprint.workload import Layout, Workload
from tests.helpers import traced_for_prediction

CONFIGS = Path(__file__).parent / "data" / "configs"
TINY_LLAMA = str(CONFIGS / "tiny-llama" / "config.json")


def loop_sum(line: DecodeLine, first: int, count: int) -> float:
    """The former per-token loop: one decode step per generated token, the context growing by one each."""
    return sum(line.step(first + i).token_s for i in range(count))


def line(m0: float, m1: float, c0: float, c1: float, fixed: float = 0.0, pp: int = 1, p2p: float = 0.0) -> DecodeLine:
    return DecodeLine(memory_0=m0, memory_1=m1, compute_0=c0, compute_1=c1, fixed_s=fixed, pp=pp, p2p_s=p2p,
                      bytes_0=0.0, bytes_1=0.0, flops_0=0.0, flops_1=0.0, overhead_s=0.0, tp_s=0.0)


# memory steeper than compute, compute steeper, identical and parallel lines, a crossing between two integers,
# pipeline stages and p2p sends; the pairs put each crossing before, inside and after the range
LINES = [
    line(100.0, 1.0, 150.0, 0.0),            # compute until c = 50, memory from 50 on
    line(150.0, 0.0, 100.0, 1.0),            # memory until c = 50, compute after
    line(100.0, 0.5, 100.0, 0.5),            # identical lines
    line(100.0, 0.5, 90.0, 0.5),             # parallel, memory above
    line(90.0, 0.5, 100.0, 0.5),             # parallel, compute above
    line(3.0, 0.25, 20.5, 0.125, fixed=7.0, pp=4, p2p=2.5),  # crossing between integers (c = 140)
]
PAIRS = [(0, 1), (1, 49), (1, 50), (10, 80), (49, 2), (50, 1), (51, 7), (120, 40), (200, 300), (1000, 3)]


@pytest.mark.parametrize("first,count", PAIRS)
@pytest.mark.parametrize("i", range(len(LINES)))
def test_closed_form_equals_the_loop_on_hand_lines(i: int, first: int, count: int) -> None:
    ln = LINES[i]
    assert ln.total_s(first, count) == pytest.approx(loop_sum(ln, first, count), rel=1e-13, abs=0.0)


def test_hand_derived_sum() -> None:
    # compute (150) for c = 10 … 49 (40 steps), then memory 100 + c for c = 50 … 79 (30 steps):
    # 40·150 + 30·100 + Σ_{50}^{79} c = 6000 + 3000 + 30·(50 + 79)/2 = 10,935
    assert LINES[0].total_s(10, 70) == 10_935.0
    assert LINES[0].total_s(10, 0) == 0.0


@pytest.fixture(scope="module")
def gpt2_serving():
    spec, wl, tr = traced_for_prediction("gpt2", Workload(batch=1, seq=128, mode="inference", precision="bf16"))
    dev, eff, profile, _shape = prepare(spec, wl, tr, "h100-sxm")
    return decode_model(spec, wl, tr), profile, dev, eff


@pytest.mark.parametrize("batch,layout", [(1, Layout()), (64, Layout()), (512, Layout()),
                                          (256, Layout(tp=2, pp=2, dp=1))])
@pytest.mark.parametrize("prompt,gen", [(1, 1), (7, 33), (128, 200), (900, 124), (3000, 1500)])
def test_gpt2_generate_time_equals_the_per_token_loop(gpt2_serving, batch: int, layout: Layout, prompt: int,
                                                       gen: int) -> None:
    dm, profile, dev, eff = gpt2_serving
    loop = sum(decode_token(dm, profile, layout, dev, eff, batch, prompt + i).token_s for i in range(gen))
    assert generate_time(dm, profile, layout, dev, eff, batch, prompt, gen) == pytest.approx(loop, rel=1e-12)


def test_the_range_crosses_from_compute_to_memory_bound(gpt2_serving) -> None:
    # at batch 512 on an H100 a gpt2 decode step is compute bound at short context and memory bound at long
    # (the KV cache grows 2·2 bytes per element against 4 FLOPs of attention): the loop test above covers both
    dm, profile, dev, eff = gpt2_serving
    ln = decode_line(dm, profile, Layout(), dev, eff, 512)
    short, long = ln.step(1), ln.step(4000)
    assert short.compute_s > short.memory_s and long.memory_s > long.compute_s


def test_a_billion_tokens_in_closed_form(gpt2_serving) -> None:
    # batch 1 is memory bound at every context, so the sum is one arithmetic series:
    # n·(m0 + fixed) + m1·(n·P + n(n−1)/2) with n = 1e9 new tokens after a P = 128 prompt
    dm, profile, dev, eff = gpt2_serving
    ln = decode_line(dm, profile, Layout(), dev, eff, 1)
    assert ln.memory_0 > ln.compute_0 and ln.memory_1 > ln.compute_1
    n, p = 10**9, 128
    expected = n * (ln.memory_0 + ln.fixed_s) + ln.memory_1 * (n * p + n * (n - 1) / 2)
    total = generate_time(dm, profile, Layout(), dev, eff, 1, p, n)
    assert total == pytest.approx(expected, rel=1e-12)
    # the KV term dominates: 12 layers × 2 × 768 × 2 bytes per position, read (n²/2) times over
    assert math.isfinite(total) and total > ln.memory_1 * n * n / 2


def test_inference_latency_uses_the_closed_form(gpt2_serving) -> None:
    spec, wl, tr = traced_for_prediction(TINY_LLAMA, Workload(batch=2, seq=32, mode="generate", gen_tokens=10**9))
    s = inference_latency(spec, wl, tr, "h100-sxm")
    dm = decode_model(spec, wl, tr)
    dev, eff, profile, _ = prepare(spec, wl, tr, "h100-sxm")
    par = parallel_from(wl)
    assert s.generate.tokens == 10**9
    assert s.generate.total_s == pytest.approx(s.prefill_s + generate_time(dm, profile, par, dev, eff, 2, 32, 10**9),
                                               rel=1e-12)


# --------------------------------------------------------------------------- the model's positions

TINY_GPT2 = str(CONFIGS / "tiny-gpt2" / "config.json")  # learned positions, n_positions 128


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from mlfootprint.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("args,message", [
    (("--gen-tokens", "1000000000"), "--gen-tokens 1000000000 exceeds tiny-gpt2's context of 128 positions "
                                     "(learned position embeddings: no position past 128 exists); generate fewer "
                                     "than 128 tokens"),
    (("--seq", "100", "--gen-tokens", "29"), "--seq 100 + --gen-tokens 29 exceeds tiny-gpt2's context of 128 "
                                             "positions (learned position embeddings: no position past 128 exists); "
                                             "generate at most 28 tokens or shorten the prompt (--seq)"),
])
@pytest.mark.parametrize("verb", ["predict", "memory", "analyze"])
def test_generation_past_learned_positions_is_a_user_error(capsys, verb: str, args: tuple[str, ...],
                                                           message: str) -> None:
    code, out, err = cli(capsys, verb, TINY_GPT2, "--mode", "generate", *args)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"mlfootprint: error: {message}"]


def test_default_prompt_leaves_room_for_the_generated_tokens() -> None:
    import mlfootprint as mf

    rep = mf.predict(TINY_GPT2, mf.Workload(mode="generate", gen_tokens=28, hardware="h100-sxm"))
    assert rep.sections["workload"]["seq"] == 100  # 128 positions − 28 generated
    assert "prompt length 100: tiny-gpt2's context of 128 positions less the 28 generated tokens, as no --seq was " \
           "given" in rep.assumptions
    assert not any(a.startswith("sequence length") for a in rep.assumptions)
    ok = mf.predict(TINY_GPT2, mf.Workload(mode="generate", seq=100, gen_tokens=28, hardware="h100-sxm"))
    assert ok.sections["time"]["generate_s"] > 0  # exactly at the context: allowed


def test_rotary_positions_run_past_the_context_as_a_stated_assumption() -> None:
    import mlfootprint as mf

    # (a billion tokens of KV cache do not fit: the report says so; its generation time is tested above)
    rep = mf.predict(TINY_LLAMA, mf.Workload(mode="generate", seq=32, gen_tokens=10**9, hardware="h100-sxm"))
    assert ("generation runs to 1,000,000,032 positions, past tiny-llama's trained context of 128: costed as if the "
            "positions extended (rotary/relative positions allow it; the quality of text past the trained context is "
            "not modelled)") in rep.assumptions


def test_count_of_a_generate_call_has_its_decode_flops():
    # count --mode generate once gave the prompt's prefill alone and ignored --gen-tokens (helper sweep). gpt2, a
    # 128-token prompt, 64 new tokens: the prefill's attention is 4·128²·64·12 heads·12 layers = 603,979,776 FLOPs, its
    # linear layers (model − attention) / 128 a token; the 64 decode steps each run one token's linear FLOPs plus
    # 4·12·12·64 = 36,864 per context position, over contexts 128 … 191 (Σ = 64·128 + 64·63/2 = 10,208)
    import mlfootprint as mf

    wl = Workload(mode="generate", seq=128, gen_tokens=64)
    f = mf.count("gpt2", wl).sections["flops"]
    assert f["attention"] == 4 * 128 ** 2 * 64 * 12 * 12
    linear_per_token = (f["model"] - f["attention"]) / 128
    assert f["decode"] == round(64 * linear_per_token + 36_864 * 10_208)
    # predict's generate call has the same decode steps
    assert mf.predict("gpt2", wl.with_changes(hardware="h100-sxm")).sections["flops"]["decode"] == f["decode"]
    assert mf.count("gpt2", Workload(mode="inference", seq=128)).sections["flops"].get("decode") is None
