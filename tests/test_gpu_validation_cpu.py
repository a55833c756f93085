"""benchmarks/gpu_validation.py on a CPU: the cases run, the prediction path is exercised, and every figure
that only a GPU gives is null with the reason (the script is run once, later, on an H200)."""
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_validation.py"
CASES = ["gpt2-train", "llama-gqa-inference", "cnn-train"]
GPU_ONLY = ("measured_peak_bytes", "measured_reserved_bytes")


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ), timeout=timeout)


def test_small_cpu_run_writes_the_cases_with_reasons_for_gpu_only_figures(tmp_path):
    out = tmp_path / "gpu_validation.cpu.json"
    proc = _run("--scale", "small", "--device", "cpu", "--cases", ",".join(CASES), "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())

    assert data["device_type"] == "cpu" and data["device"].startswith("cpu")
    assert data["complete"] is True and data["scale"] == "small"
    assert data["torch_version"] == torch.__version__
    assert dt.datetime.fromisoformat(data["date_utc"]).tzinfo is not None
    for key in ("cuda_version", "driver_version", "transformers_version", "mlfootprint_version"):
        assert key in data
    assert [c["case"] for c in data["cases"]] == CASES

    for case in data["cases"]:
        name = case["case"]
        assert case["error"] is None, (name, case["error"], case["extra"].get("traceback_tail"))
        assert case["skipped"] is None, (name, case["skipped"])
        assert case["workload"]["batch"] == 2
        assert case["measured_step_s"] > 0, name
        assert case["predicted_peak_bytes"] > 0, name
        for key in GPU_ONLY:  # allocator statistics: CUDA only
            assert case[key] is None, (name, key)
            assert "CPU" in case["null_reasons"][key], (name, key)
        # No calibrated CPU profile in the test's isolated config folder: no step-time prediction, with the reason;
        # the H200 prediction is still made (the GPU run's path), for reference only.
        assert case["predicted_step_s"] is None and case["null_reasons"]["predicted_step_s"], name
        assert case["extra"]["h200_prediction"]["step_s"] > 0, name
        assert case["step_error"] is None and case["peak_error"] is None
        assert case["null_reasons"]["peak_error"] and case["null_reasons"]["step_error"]
        if case["energy_j"] is None:  # no RAPL here (containers, VMs): the meter says why
            assert case["null_reasons"]["energy_j"], name
        else:
            assert case["energy_j"] > 0 and case["energy_meter"]
        assert "perf_counter" in case["extra"]["timing"]
        assert case["notes"], name  # precision / trace semantics stated
    mixed = [c for c in data["cases"] if c["workload"]["precision"] == "bf16-mixed"]
    assert mixed and all(any(n.startswith("bf16-mixed:") for n in c["notes"]) for c in mixed)
    assert data["summary"]["failed"] == [] and data["summary"]["median_abs_peak_error"] is None

    table = proc.stdout
    assert "median |error| of peak memory" in table
    for name in CASES:
        assert name in table


def test_unknown_case_is_refused_before_anything_runs(tmp_path):
    proc = _run("--device", "cpu", "--cases", "gpt2-train,no-such-case", "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 2
    assert "no-such-case" in proc.stderr and "gpt2-train" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_rescore_predicts_a_gpu_runs_cases_again_and_leaves_out_cublas_workspaces(tmp_path):
    # From the H200 run of 2026-12-04 (benchmarks/results/h200-2026-12-04/gpu_validation_eager.json and
    # gpu_validation.json): the reality tests' GPT in inference measured 18,263,040 B above what was allocated
    # before it, exactly its prediction. A case that runs first in its process also counts cuBLAS's workspaces
    # (2 × 32 MiB: the forward's handle and autograd's thread's); rescore takes them from a later case's leftover.
    first = {"case": "reality-gpt-inference", "measured_peak_bytes": 18_263_040 + 67_108_864,
             "measured_step_s": 0.001, "extra": {"allocated_before_build_bytes": 0}}
    later = {"case": "llama-gqa-inference", "measured_peak_bytes": None, "measured_step_s": None,
             "extra": {"allocated_before_build_bytes": 67_108_864}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"scale": "full", "prediction_hardware": "h200", "cases": [first, later]}))
    proc = _run("--rescore", str(path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("reality-gpt-inference "))
    assert "17.42 MiB" in row and "+0.0%" in row, row
    assert "median |error| of peak memory: 0.0% over 1 model case(s)" in proc.stdout
