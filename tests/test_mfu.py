"""`mfu`: MFU and HFU from a measured throughput.

PaLM 540B (Chowdhery et al. 2022, appendix B): N = 540.35e9, L = 118, H = 48, Q = 256, T = 2048;
model FLOPs per token 6N + 12·L·H·Q·T = 3.2421e12 + 3.5627e10 = 3.2777e12; at 238.3e3 tokens/s on
6,144 TPU v4 of 275 TFLOP/s (dense bf16): 7.8108e17 / 1.6896e18 = 46.2% MFU.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlfootprint.cli import main
from mlfootprint.analysis.predict.prediction import mfu_from_throughput, palm_flops_per_token

TINY_GPT2 = str(Path(__file__).parent / "data" / "configs" / "tiny-gpt2" / "config.json")
PALM = ["--params", "540.35e9", "--layers", "118", "--heads", "48", "--head-dim", "256", "--seq", "2048"]


def run(args, capsys):
    code = main(["mfu", *args, "--format", "json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_palm_540b_cli():
    from conftest import run_cli

    r = run_cli("mfu", *PALM, "--tokens-per-s", "238.3e3", "--hardware", "tpu-v4", "--devices", "6144", "--format", "json")
    assert r.returncode == 0, r.stderr
    u = json.loads(r.stdout)["time"]
    assert u["model_flops_per_token"] == pytest.approx(6 * 540.35e9 + 12 * 118 * 48 * 256 * 2048)
    assert round(u["mfu"] * 100, 1) == 46.2
    assert u["peak_flop_per_s"] == 275e12


def test_the_terminal_answers_first(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    # PaLM 540B (Chowdhery et al. 2022, Table 3: 46.2% MFU on 6144 TPU v4): the card leads with MFU and shows the
    # FLOPs per token beside their formula; the model's facts and every assumption come with --details
    code = main(["mfu", TINY_GPT2, "--seq", "64", "--tokens-per-s", "1e5", "--hardware", "h100-sxm"])
    card = capsys.readouterr().out
    assert code == 0 and len(card.splitlines()) <= 16 and "hardware_flops_per_token" not in card
    assert card.splitlines()[3].split()[:2] == ["MFU", next(w for w in card.splitlines()[3].split() if "%" in w)]
    code = main(["mfu", *PALM, "--tokens-per-s", "238.3e3", "--hardware", "tpu-v4", "--devices", "6144"])
    card = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[0]: line for line in card.splitlines() if line.split()}
    assert rows["MFU"].split()[1] == "46.2%" and "6,144 × tpu-v4" in rows["Throughput"]
    assert "3.28 TFLOP" in card and "6N + 12·L·H·Q·T" in card and "275 TFLOP/s per device" in card
    code = main(["mfu", TINY_GPT2, "--seq", "64", "--tokens-per-s", "1e5", "--hardware", "h100-sxm", "--details"])
    full = capsys.readouterr().out
    assert code == 0 and "hardware_flops_per_token" in full and "Assumptions" in full


def test_formulas():
    assert palm_flops_per_token(540.35e9, 118, 48, 256, 2048) == pytest.approx(3.2777e12, rel=1e-4)
    r = mfu_from_throughput(1e9, 1e3, 2, 1e12, hardware_flops_per_token=1.5e9)
    assert r.mfu == pytest.approx(1e12 / 2e12)  # 1e9 FLOP × 1e3 tok/s over 2 × 1e12
    assert r.hfu == pytest.approx(0.75)


def test_hfu_with_recomputation(capsys):
    code, rep = run([*PALM, "--tokens-per-s", "238.3e3", "--hardware", "tpu-v4", "--devices", "6144",
                     "--recompute", "full"], capsys)
    assert code == 0
    u = rep["time"]
    # full recomputation: one more forward, 2N + 4·L·H·Q·T per token
    extra = 2 * 540.35e9 + 4 * 118 * 48 * 256 * 2048
    assert u["hardware_flops_per_token"] == pytest.approx(u["model_flops_per_token"] + extra)
    assert u["hfu"] == pytest.approx(u["mfu"] * (1 + extra / u["model_flops_per_token"]))


def test_step_time_form(capsys):
    # tokens/s = batch × seq / step time
    code, rep = run([*PALM, "--step-s", "9.9", "--batch", "1152", "--hardware", "tpu-v4", "--devices", "6144"], capsys)
    assert code == 0
    assert rep["time"]["tokens_per_s"] == pytest.approx(1152 * 2048 / 9.9)


def test_traced_model_and_direct_flops(capsys):
    from mlfootprint.verbs.common import traced
    from mlfootprint.analysis.count.flops import flop_summary
    from mlfootprint.workload import Workload

    code, rep = run([TINY_GPT2, "--seq", "64", "--tokens-per-s", "1e5", "--hardware", "h100-sxm"], capsys)
    assert code == 0
    _, _, tr = traced(TINY_GPT2, Workload(batch=1, seq=64, mode="train", precision="bf16"))
    per_token = flop_summary(tr).model / tr.tokens
    u = rep["time"]
    assert u["model_flops_per_token"] == pytest.approx(per_token)
    assert u["mfu"] == pytest.approx(per_token * 1e5 / 989.4e12)  # h100-sxm dense bf16
    # the trace behind the FLOPs follows the named device's kernels, as predict's does
    assert any("emulated for the h100-sxm target" in a for a in rep["assumptions"])
    code, rep = run(["--flops-per-token", "1e12", "--tokens-per-s", "100", "--peak-flops", "1e15"], capsys)
    assert code == 0 and rep["time"]["mfu"] == pytest.approx(0.1)


@pytest.mark.parametrize("args, expected", [
    ([*PALM, "--hardware", "tpu-v4"], "measured throughput"),
    ([*PALM, "--tokens-per-s", "1", "--step-s", "1", "--hardware", "tpu-v4"], "not both"),
    (["--params", "1e9", "--tokens-per-s", "1", "--hardware", "tpu-v4"], "--layers"),
    ([*PALM, "--tokens-per-s", "1", "--hardware", "tpu-v4", "--precision", "fp32"], "no fp32 peak"),
    ([*PALM, "--tokens-per-s", "1", "--hardware", "tpu-v5"], "Did you mean"),
    ([*PALM, "--tokens-per-s", "-5", "--hardware", "tpu-v4"], "positive"),
    (["--tokens-per-s", "1", "--hardware", "tpu-v4"], "exactly one source"),
    # 238.3e6 tokens/s is PaLM's published rate × 1000: 46,200% MFU, no real run
    ([*PALM, "--tokens-per-s", "238.3e6", "--hardware", "tpu-v4", "--devices", "6144"], "implies an MFU of 46"),
    (["--params", "1e9", "--step-s", "2", "--layers", "2", "--heads", "2", "--head-dim", "2", "--seq", "8",
      "--hardware", "tpu-v4"], "--batch"),
])
def test_bad_input(args, expected, capsys):
    code, err = run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
