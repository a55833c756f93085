"""Golden outputs: the JSON reports of a dozen catalog workloads across the verbs, saved in tests/golden/.

A change to any figure fails here, field by field. When a change is on purpose, regenerate with
``MLFOOTPRINT_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and give the reason in the commit.
Fields that measure this run rather than the workload (wall-clock times, the tool's version) are left out.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from mlfootprint.cli import main

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MLFOOTPRINT_UPDATE_GOLDEN") == "1"

# name → argv (every case is written as JSON). Small sequences keep the whole file under a minute.
CASES: dict[str, list[str]] = {
    "analyze-default": ["analyze"],
    "count-gpt2-inference": ["count", "gpt2", "--seq", "128", "--by-op"],
    "count-llama2-7b-train": ["count", "llama-2-7b", "--mode", "train", "--seq", "256", "--macs"],
    "count-mixtral-moe": ["count", "mixtral-8x7b", "--seq", "64", "--by-op"],
    "memory-gpt2-train-bf16": ["memory", "gpt2", "--mode", "train", "--seq", "512", "--batch", "8",
                               "--precision", "bf16-mixed", "--hardware", "a100-80gb"],
    "memory-llama2-qlora": ["memory", "llama-2-7b", "--mode", "train", "--seq", "512", "--precision", "bf16",
                            "--recompute", "full", "--lora-rank", "8", "--quant", "int4", "--hardware", "rtx-4090"],
    "memory-llama2-zero3-tp": ["memory", "llama-2-7b", "--mode", "train", "--seq", "512", "--batch", "64",
                               "--precision", "bf16-mixed", "--zero", "1", "--dp", "8", "--tp", "2", "--pp", "2",
                               "--grad-accum", "4", "--hardware", "a100-80gb"],
    "memory-llama2-generate": ["memory", "llama-2-7b", "--mode", "generate", "--seq", "256", "--gen-tokens", "64",
                               "--precision", "bf16", "--hardware", "h100-sxm"],
    "memory-gpt2-max-batch": ["memory", "gpt2", "--mode", "train", "--seq", "256", "--device-memory", "6GB",
                              "--max-batch"],
    "predict-gpt2-zero3": ["predict", "gpt2", "--mode", "train", "--batch", "16", "--seq", "1024", "--hardware",
                           "a100-80gb", "--devices", "16", "--dp", "16", "--zero", "3", "--precision", "bf16-mixed",
                           "--tokens", "1e9", "--deadline", "30d"],
    "predict-opt-tp-pp": ["predict", "opt-1.3b", "--mode", "train", "--seq", "2048", "--batch", "64", "--hardware",
                          "a100-80gb", "--devices", "16", "--tp", "2", "--pp", "2", "--dp", "4", "--precision", "bf16-mixed",
                          "--micro-batch", "2", "--tokens", "3e11"],
    "predict-llama2-serving": ["predict", "llama-2-7b", "--mode", "generate", "--seq", "512", "--batch", "4",
                               "--gen-tokens", "128", "--precision", "bf16", "--hardware", "h100-sxm"],
    "plan-llama2-64": ["plan", "llama-2-7b", "--devices", "64", "--hardware", "a100-80gb", "--seq", "2048",
                       "--batch", "256", "--precision", "bf16-mixed"],
    "mfu-palm": ["mfu", "--params", "540.35e9", "--layers", "118", "--heads", "48", "--head-dim", "256",
                 "--seq", "2048", "--tokens-per-s", "238.3e3", "--devices", "6144", "--hardware", "tpu-v4"],
    "mfu-gpt2-traced": ["mfu", "gpt2", "--seq", "1024", "--batch", "8", "--step-s", "0.5", "--hardware",
                        "a100-80gb", "--recompute", "full"],
    "footprint-llama2-7b": ["footprint", "--device-hours", "184320", "--hardware", "a100-80gb", "--power-w", "400",
                            "--pue", "1.1", "--intensity", "385"],
    "footprint-cloud": ["footprint", "--hours", "72", "--devices", "64", "--hardware", "h100-sxm", "--region",
                        "gcp:us-central1", "--inferences", "1e9", "--energy-per-inference-j", "2", "--params", "7e9"],
    "claims-some": ["claims", "--only", "zero-stage2", "--only", "zero-offload-13b", "--only", "palm-540b-mfu", "--only", "gpt3-train-flops",
                    "--only", "llama2-co2"],
}

# Measured on this run, not a property of the workload.
_VOLATILE = {"tool", "trace_s", "plan_s"}


def _scrub(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _scrub(v) for k, v in node.items() if k not in _VOLATILE}
    if isinstance(node, list):
        return [_scrub(v) for v in node]
    return node


def _differences(want: Any, got: Any, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in want if k not in got]
        out += [f"{path}.{k}: new" for k in got if k not in want]
        for k in want:
            if k in got:
                out += _differences(want[k], got[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} items, now {len(got)}"]
        out = []
        for i, (a, b) in enumerate(zip(want, got)):
            out += _differences(a, b, f"{path}[{i}]")
        return out
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        # the same arithmetic in another order may differ in the last bits; anything more is a change
        return [] if math.isclose(want, got, rel_tol=1e-12, abs_tol=0.0) else [f"{path}: {want!r} → {got!r}"]
    return [] if want == got and type(want) is type(got) else [f"{path}: {want!r} → {got!r}"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_output(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFOOTPRINT_HISTORY", str(tmp_path / "history.db"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no user catalog files
    out = tmp_path / "report.json"
    code = main(CASES[name] + ["--format", "json", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    got = _scrub(json.loads(out.read_text()))
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden output written")
    want = json.loads(path.read_text())
    diffs = _differences(want, got)
    assert not diffs, f"{len(diffs)} fields changed:\n" + "\n".join(diffs[:40])
