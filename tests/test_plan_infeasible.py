"""`plan` on a request nothing can satisfy: a 405B-parameter model on 2 × rtx-3090 → one line, exit 2."""
from __future__ import annotations

from conftest import run_cli


def test_405b_on_two_rtx_3090():
    r = run_cli("plan", "llama-3.1-405b", "--devices", "2", "--hardware", "rtx-3090", "--precision", "bf16-mixed")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "warn" not in ln.lower()]
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("mlfootprint: error: no layout of llama-3.1-405b fits on 2 × rtx-3090")
    # 405e9 parameters × 16 bytes (bf16 weights and gradients, fp32 master + Adam moments) / 2 devices
    # ≈ 3.24e12 bytes ≈ 3018 GiB, plus activations of micro-batch 1
    gib = float(line.split("still needs ")[1].split(" GiB")[0])
    assert 3018 < gib < 3400
