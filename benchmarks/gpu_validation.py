"""Predicted vs measured peak memory and step time on an NVIDIA H200 (and a smoke run of the same code on a CPU).

    python benchmarks/gpu_validation.py                                  # on the H200: full-size cases
    python benchmarks/gpu_validation.py --scale small --device cuda      # a 30-s smoke run on the GPU first
    python benchmarks/gpu_validation.py --scale small                    # on a CPU: tiny configs, GPU parts skipped
    python benchmarks/gpu_validation.py --scale full --predict-only      # on a CPU: trace + predict every full case
    python benchmarks/gpu_validation.py --cases gpt2-train,llama-gqa-train --timeout-s 300 --out results.json
    python benchmarks/gpu_validation.py --list
    python benchmarks/gpu_validation.py --rescore results.json [more.json] [--out F]   # anywhere: re-predict them

For each *model case* it asks mlfootprint for the workload's peak memory (``mf.memory`` with
``other_bytes=0``: tensors only, which is what the CUDA allocator counts) and, where there is a device
to predict for, its step time (``mf.predict`` on the catalog device matching this GPU, ``h200``; on a CPU
only when a calibrated profile ``this`` exists), then builds the same model for real (mlfootprint's own
builder, LoRA and recomputation transforms and optimizer, as ``bench_predict_accuracy.py`` and ``bench``
do), runs warm-up steps and timed steps and measures: on CUDA ``torch.cuda.max_memory_allocated`` /
``max_memory_reserved`` after ``reset_peak_memory_stats`` (steady-state steps only) and the median step
time from CUDA events, with the energy of the timed steps from mlfootprint's NVML meter; on a CPU the
median wall time (``time.perf_counter``), allocator figures null with the reason.

Three *verb cases* exercise the measuring verbs end to end: ``mf.bench`` (allocator statistics, energy
meter, MFU, its own vs-predicted table), ``mf.track`` around a hand-written loop of the same workload, and
``mf.hardware_calibrate(device=..., save=False)`` (what the GPU achieves, next to its catalog figures).

Precision semantics: ``bf16-mixed`` runs as mlfootprint traces it: fp32 weights under
``torch.autocast(bfloat16)``, backward outside autocast, ``torch.optim.AdamW`` (foreach on CUDA, its
default, which a GPU target's trace emulates; the single-tensor loop on a CPU), ``zero_grad(set_to_none=True)``
after each step. ``bf16`` (inference) is bf16 weights without autocast. On CUDA the predicted peak is traced for
the GPU target (``--hardware``, default the catalog GPU matching this one), whose trace emulates CUDA's kernels.

Every case is isolated: a failure (an OOM included) is recorded in that case's ``error`` and the run goes
on; the JSON is rewritten after every case, so a killed run keeps what was done. ``--timeout-s`` is a total
budget: cases that would start after it are recorded as skipped.

Error convention (as ``mf.bench``): error = (predicted - measured) / measured.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
CONFIGS = REPO / "tests" / "data" / "configs"
DEFAULT_GPU_OUT = REPO / "benchmarks" / "results" / "gpu_validation.json"
# On a CPU the result goes to the temp folder, never over a GPU result (nor into the repository).
DEFAULT_CPU_OUT = Path(tempfile.gettempdir()) / "gpu_validation.cpu.json"
DEFAULT_GPU_ID = "h200"  # mlfootprint's catalog id of the NVIDIA H200 SXM 141GB ('mlfootprint hardware list')
SCHEMA = "mlfootprint.gpu-validation/1"

# --------------------------------------------------------------------------- CNN factories (used as file.py:callable)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3×3 conv-BN, identity or 1×1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNetLike(nn.Module):
    """A ResNet-18-shaped CNN from torch.nn only (torchvision is not needed): stem, 4 stages, pooled linear head."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...], classes: int, stem_stride: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, stride=stem_stride, padding=3, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet_full() -> nn.Module:
    return ResNetLike((64, 128, 256, 512), (2, 2, 2, 2), 1000)


def resnet_small() -> nn.Module:
    return ResNetLike((8, 16), (1, 1), 10, stem_stride=1)


class RecurrentStack(nn.Module):
    """A stacked nn.LSTM or nn.GRU (batch first) with a linear head on its outputs: cuDNN's RNN on a GPU."""

    def __init__(self, kind: str, width: int, layers: int) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(width, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


def _reality_models() -> Any:
    """tests/test_memory_reality.py, whose models the CPU reality tests measure (loaded by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mlfp_test_memory_reality", REPO / "tests" / "test_memory_reality.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reality_gpt_sdpa() -> nn.Module:
    return _reality_models().GPT("sdpa")


def reality_gpt_eager() -> nn.Module:
    return _reality_models().GPT("eager")


def reality_cnn() -> nn.Module:
    return _reality_models().CNN()


def lstm_full() -> nn.Module:
    return RecurrentStack("lstm", 1024, 2)


def gru_full() -> nn.Module:
    return RecurrentStack("gru", 1024, 2)


def lstm_small() -> nn.Module:
    return RecurrentStack("lstm", 32, 2)


def gru_small() -> nn.Module:
    return RecurrentStack("gru", 32, 2)


# --------------------------------------------------------------------------- model configs

# A Llama-style decoder with grouped-query attention (16 query heads, 4 KV heads), ~200M parameters.
LLAMA_GQA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 1024,
    "intermediate_size": 2816, "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 4,
    "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "initializer_range": 0.02,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}


NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def _write_config(tmp: Path, name: str, cfg: dict[str, Any]) -> str:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg, indent=1))
    return str(d / "config.json")


def _tiny(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / name / "config.json").read_text())


# --------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
    name: str
    kind: str  # "model" (predicted vs measured) or "verb" (bench / track / calibrate end to end)
    description: str
    model: str | None = None  # what mf.* is given: catalog name, config path or file.py:callable
    inputs: tuple[str, ...] = ()
    workload: dict[str, Any] = dataclasses.field(default_factory=dict)
    runner: str = "mlfootprint"  # how the real model is made: "mlfootprint" (its builder + transforms) or "peft"
    warmup: int = 3
    min_steps: int = 10
    max_steps: int = 50


def make_cases(scale: str, tmp: Path) -> list[Case]:
    """Every case, in the order they run (the most informative first: a GPU session is short)."""
    full = scale == "full"
    if full:
        gpt2, gpt2m = "gpt2", "gpt2-medium"
        gpt2_cfg = json.loads((REPO / "src" / "mlfootprint" / "models" / "data" / "gpt2.json").read_text())["config"]
        gpt2_nodrop = _write_config(tmp, "gpt2-nodropout", {**gpt2_cfg, **NO_DROPOUT})
        llama = _write_config(tmp, "llama-gqa-200m", LLAMA_GQA)
        cnn, cnn_in = f"{HERE}:resnet_full", ("256x3x224x224",)
        lstm, gru, rnn_in = f"{HERE}:lstm_full", f"{HERE}:gru_full", ("64x256x1024",)
        b, s = 16, 1024  # GPT-2 small
        bm = 8  # GPT-2 medium
        lb, ls = 8, 2048  # Llama training
        lib = 16  # Llama inference
        gb, gs, gt = 16, 512, 256  # generate: batch, prompt, new tokens
        cb = 256
        vb = 8  # bench / track
        warm, lo, hi, gen_lo, gen_hi = 3, 10, 50, 3, 10
    else:
        # Tiny configs from tests/data/configs; GPT-2's dropout set as the catalog gpt2 has it (0.1), so the
        # small run exercises the same dropout path as the full one.
        tiny_gpt2 = {**_tiny("tiny-gpt2"), "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1}
        gpt2 = _write_config(tmp, "tiny-gpt2", tiny_gpt2)
        gpt2_nodrop = _write_config(tmp, "tiny-gpt2-nodropout", {**tiny_gpt2, **NO_DROPOUT})
        gpt2m = _write_config(tmp, "tiny-gpt2-medium", {**tiny_gpt2, "n_embd": 96, "n_layer": 3, "n_head": 4})
        llama = _write_config(tmp, "tiny-llama", _tiny("tiny-llama"))
        cnn, cnn_in = f"{HERE}:resnet_small", ("2x3x32x32",)
        lstm, gru, rnn_in = f"{HERE}:lstm_small", f"{HERE}:gru_small", ("2x16x32",)
        b = bm = lb = lib = gb = cb = vb = 2
        s = ls = 32
        gs, gt = 16, 8
        warm, lo, hi, gen_lo, gen_hi = 1, 2, 2, 2, 2
    mixed = {"mode": "train", "precision": "bf16-mixed", "attention": "sdpa"}
    gpt2_train = {**mixed, "batch": b, "seq": s}
    cases = [
        Case("lstm-train", "model", "2-layer nn.LSTM (cuDNN on a GPU) with a linear head, training, fp32", lstm,
             rnn_in, workload={"mode": "train", "precision": "fp32"}),
        Case("lstm-train-bf16", "model", "2-layer nn.LSTM with a linear head, training, bf16-mixed", lstm, rnn_in,
             workload={"mode": "train", "precision": "bf16-mixed"}),
        Case("gru-train", "model", "2-layer nn.GRU (cuDNN on a GPU) with a linear head, training, fp32", gru, rnn_in,
             workload={"mode": "train", "precision": "fp32"}),
        # The CPU reality tests' own models and workloads (tests/test_memory_reality.py), fp32, on this device.
        Case("reality-gpt-sdpa", "model", "reality test: GPT-style SDPA decoder (4 layers, d 128), batch 8, seq 256, "
             "training, fp32", f"{HERE}:reality_gpt_sdpa", ("8x256:int64",), workload={"mode": "train", "precision": "fp32", "batch": 8}),
        Case("reality-gpt-eager", "model", "reality test: the same GPT with eager attention (T×T probabilities)",
             f"{HERE}:reality_gpt_eager", ("8x256:int64",), workload={"mode": "train", "precision": "fp32", "batch": 8}),
        Case("reality-cnn", "model", "reality test: 6 conv-BN-ReLU CNN, 16×3×64×64, training, fp32",
             f"{HERE}:reality_cnn", ("16x3x64x64", "16:int64"), workload={"mode": "train", "precision": "fp32", "batch": 16}),
        Case("reality-tiny-llama", "model", "reality test: tiny-llama (HF, SDPA, GQA), batch 8, seq 128, training, fp32",
             str(CONFIGS / "tiny-llama"), workload={"mode": "train", "precision": "fp32", "batch": 8, "seq": 128}),
        Case("reality-tiny-llama-recompute", "model", "reality test: tiny-llama with full recomputation",
             str(CONFIGS / "tiny-llama"), workload={"mode": "train", "precision": "fp32", "batch": 8, "seq": 128, "recompute": "full"}),
        Case("reality-gpt-inference", "model", "reality test: the GPT, inference forward (no_grad), fp32",
             f"{HERE}:reality_gpt_sdpa", ("8x256:int64",), workload={"mode": "inference", "precision": "fp32", "batch": 8}),
        Case("gpt2-train", "model", "GPT-2 small, training, bf16-mixed, SDPA, dropout as configured",
             gpt2, workload=gpt2_train),
        Case("gpt2-train-nodropout", "model", "GPT-2 small, training, bf16-mixed, SDPA, dropout 0 (isolates how "
             "the trace treats SDPA with dropout)", gpt2_nodrop, workload=gpt2_train),
        Case("gpt2-train-eager", "model", "GPT-2 small, training, bf16-mixed, eager attention", gpt2,
             workload={**gpt2_train, "attention": "eager"}),
        Case("llama-gqa-train", "model", "Llama-style decoder with GQA (fewer KV than query heads), training, bf16-mixed",
             llama, workload={**mixed, "batch": lb, "seq": ls}),
        Case("llama-gqa-inference", "model", "Llama-style GQA decoder, inference forward, bf16 weights",
             llama, workload={"mode": "inference", "precision": "bf16", "attention": "sdpa", "batch": lib,
                              "seq": ls}),
        Case("llama-gqa-generate", "model", "Llama-style GQA decoder, HF generate with KV cache, greedy, fixed "
             "new tokens, bf16", llama,
             workload={"mode": "generate", "precision": "bf16", "attention": "sdpa", "batch": gb, "seq": gs,
                       "gen_tokens": gt}, warmup=1, min_steps=gen_lo, max_steps=gen_hi),
        Case("bench", "verb", "mf.bench end to end (allocator stats, energy meter, MFU, vs predicted)", gpt2,
             workload={**mixed, "batch": vb, "seq": s}),
        Case("track", "verb", "mf.track around a hand-written loop of the bench workload", gpt2,
             workload={**mixed, "batch": vb, "seq": s}),
        Case("calibrate", "verb", "mf.hardware_calibrate(save=False): achieved FLOP/s and bandwidth vs catalog"),
        Case("cnn-train", "model", "ResNet-like CNN (torch.nn only), training, bf16-mixed", cnn, cnn_in,
             workload={"mode": "train", "precision": "bf16-mixed", "batch": cb}),
        Case("gpt2-medium-train", "model", "GPT-2 medium, training, bf16-mixed, SDPA", gpt2m,
             workload={**mixed, "batch": bm, "seq": s}),
        Case("gpt2-recompute", "model", "GPT-2 small, training, bf16-mixed, full activation checkpointing", gpt2,
             workload={**gpt2_train, "recompute": "full"}),
        Case("gpt2-lora", "model", "GPT-2 small, LoRA rank 8 (mlfootprint's adapters, as traced), bf16-mixed",
             gpt2, workload={**gpt2_train, "lora_rank": 8}),
        Case("gpt2-lora-peft", "model", "GPT-2 small, LoRA rank 8 with peft on the same layers, bf16-mixed",
             gpt2, workload={**gpt2_train, "lora_rank": 8}, runner="peft"),
    ]
    for c in cases:
        if c.kind == "model" and c.workload.get("mode") != "generate":
            c.warmup, c.min_steps, c.max_steps = warm, lo, hi
        elif c.kind == "verb":
            c.warmup, c.min_steps, c.max_steps = warm, lo, lo
    return cases


# --------------------------------------------------------------------------- environment


def _driver_version() -> tuple[str | None, str]:
    """The NVIDIA driver version from NVML (pynvml / nvidia-ml-py) or nvidia-smi, or None with the reason."""
    why = []
    try:
        import pynvml  # type: ignore

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return (v.decode() if isinstance(v, bytes) else str(v)), "pynvml"
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001
        why.append(f"pynvml: {type(exc).__name__}: {exc}")
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0].strip(), "nvidia-smi"
        why.append(f"nvidia-smi exited {out.returncode}")
    except Exception as exc:  # noqa: BLE001
        why.append(f"nvidia-smi: {type(exc).__name__}")
    return None, "; ".join(why)


def environment(dev: torch.device) -> dict[str, Any]:
    import mlfootprint

    try:
        import transformers
        tf_version = transformers.__version__
    except ImportError:
        tf_version = None
    try:
        import peft  # type: ignore
        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    driver, driver_how = _driver_version()
    env: dict[str, Any] = {
        "schema": SCHEMA,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device_type": dev.type,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "driver_version": driver,
        "driver_version_from": driver_how,
        "transformers_version": tf_version,
        "peft_version": peft_version,
        "mlfootprint_version": getattr(mlfootprint, "__version__", None),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(device=torch.cuda.get_device_name(dev), device_memory_bytes=int(props.total_memory),
                   compute_capability=f"{props.major}.{props.minor}", device_count=torch.cuda.device_count(),
                   tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
                   cudnn_benchmark=bool(torch.backends.cudnn.benchmark))
    else:
        env.update(device=f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
                          "threads)", device_memory_bytes=None, torch_threads=torch.get_num_threads())
    return env


def prediction_device(dev: torch.device, wanted: str | None) -> tuple[str | None, str, list[str]]:
    """The catalog id to predict step time for: (id or None, why, notes)."""
    from mlfootprint.core.errors import UserError
    from mlfootprint.hardware.catalog import get_device
    from mlfootprint.measure.reference import match_catalog_gpu

    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        hit = match_catalog_gpu(name)
        if wanted:
            notes = [] if hit is None or hit.id == wanted else [
                f"--hardware {wanted} given, but this GPU ({name}) matches the catalog device {hit.id}"]
            return wanted, f"given (--hardware {wanted}); this GPU is {name}", notes
        if hit is not None:
            return hit.id, f"catalog device {hit.id}, matched to this GPU ({name}) by mlfootprint", []
        return DEFAULT_GPU_ID, f"{name} matches no single catalog device; predicting for {DEFAULT_GPU_ID}", [
            (f"mlfootprint.measure.reference.match_catalog_gpu({name!r}) found no single catalog device; the "
             f"predictions are for {DEFAULT_GPU_ID}")]
    if wanted:
        return wanted, f"given (--hardware {wanted}); the run is on a CPU", []
    try:
        this = get_device("this")
    except UserError:
        this = None
    if this is not None and this.kind == "cpu":
        return "this", "calibrated CPU profile 'this' (mlfootprint hardware calibrate)", []
    return None, ("CPU run and no calibrated CPU profile 'this' (run 'mlfootprint hardware calibrate'): no step-time "
                  "prediction for this machine; the H200 prediction is kept in extra.h200_prediction for reference "
                  "and is not compared"), []


# --------------------------------------------------------------------------- predictions


_PRED_CACHE: dict[str, dict[str, Any]] = {}


def _wl(case: Case, **changes: Any):
    """The case's workload. Its kernel-fusion model is ``none``: the real run is eager PyTorch, whose elementwise
    ops each keep their own outputs (a GPU target's default is the fused stack of Megatron-LM / NeMo)."""
    import mlfootprint as mf

    return mf.Workload(**{"fusion": "none", **case.workload, **changes})


def predicted_peak(case: Case, hardware: str | None) -> dict[str, Any]:
    """mf.memory for the case's workload, tensors only (other_bytes=0, like the allocator's count). ``hardware``
    is the target whose kernels the trace emulates (a GPU's for a CUDA run; None: this CPU's)."""
    import mlfootprint as mf

    key = json.dumps(["memory", case.model, case.inputs, case.workload, hardware], sort_keys=True)
    if key not in _PRED_CACHE:
        rep = mf.memory(case.model, _wl(case, hardware=hardware), inputs=list(case.inputs), other_bytes=0)
        m = rep.sections["memory"]
        _PRED_CACHE[key] = {"peak_bytes": m["peak_bytes"], "peak_phase": m.get("peak_phase"),
                            "at_peak": m.get("at_peak"), "components": {k: m.get(k) for k in (
                                "weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                                "kv_cache_bytes")},
                            "assumptions": [a for a in rep.assumptions if a.startswith("memory: mixed precision")]}
    return _PRED_CACHE[key]


def predicted_time(case: Case, hardware: str) -> dict[str, Any]:
    """mf.predict for the case's workload on ``hardware``: the step (or generate call) time and its memory."""
    import mlfootprint as mf

    key = json.dumps(["predict", case.model, case.inputs, case.workload, hardware], sort_keys=True)
    if key in _PRED_CACHE:
        return _PRED_CACHE[key]
    rep = mf.predict(case.model, _wl(case, hardware=hardware), inputs=list(case.inputs))
    t = rep.sections.get("time") or {}
    m = rep.sections.get("memory") or {}
    w = rep.sections.get("workload") or {}
    out: dict[str, Any] = {"hardware": hardware, "peak_bytes_with_overhead": m.get("peak_bytes"),
                           "other_bytes": m.get("other_bytes"), "fits": m.get("fits"),
                           "micro_batch": (m.get("layout") or {}).get("micro_batch"),
                           "grad_accum": (m.get("layout") or {}).get("grad_accum"),
                           "basis": t.get("basis"), "bottleneck": t.get("bottleneck"), "mfu": t.get("mfu"),
                           "breakdown": t.get("breakdown"), "notes": []}
    if case.workload.get("mode") == "generate":
        out["step_s"] = t.get("generate_s")
        out["step_is"] = "generate_s: prefill + decode of gen_tokens (inference_latency)"
        out["prefill_s"] = t.get("step_s")
    else:
        out["step_s"] = t.get("step_s")
        out["step_is"] = "step_s"
    if out["step_s"] is None:
        out["why_no_step"] = (rep.assumptions[0] if rep.assumptions else "predict gave no step time")
    if w.get("micro_batch") not in (None, case.workload.get("batch")) or (out["grad_accum"] or 1) != 1:
        out["notes"].append(f"predict chose micro-batch {out['micro_batch']} × {out['grad_accum']} accumulation "
                            f"steps, not the measured batch {case.workload.get('batch')}")
    _PRED_CACHE[key] = out
    return out


# --------------------------------------------------------------------------- the real run


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _free(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()


def _init_weights(module: nn.Module, seed: int = 0) -> None:
    """Deterministic, ordinary values for a model built without initialisation (as mf.bench does)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.dtype.is_floating_point:
                continue
            if p.dim() >= 2:
                p.copy_((torch.randn(p.shape, generator=gen) * 0.02).to(p.dtype))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def _to(x: Any, dev: torch.device) -> Any:
    return x.to(dev) if isinstance(x, torch.Tensor) else x


def _apply_peft(model: nn.Module, wl: Any) -> tuple[nn.Module, list[str]]:
    """LoRA with peft on exactly the layers mlfootprint adapts, with its rank and scaling (alpha = 2r)."""
    import peft  # type: ignore

    from mlfootprint.trace.transforms import _features, _matches, default_targets

    targets = tuple(wl.lora_targets) if wl.lora_targets else default_targets()
    names = [n for n, m in model.named_modules() if _features(m) is not None and _matches(n, targets)]
    fan_in_fan_out = any(type(model.get_submodule(n)).__name__ == "Conv1D" for n in names)
    cfg = peft.LoraConfig(r=wl.lora_rank, lora_alpha=2 * wl.lora_rank, lora_dropout=0.0, bias="none",
                          target_modules=names, fan_in_fan_out=fan_in_fan_out)
    wrapped = peft.get_peft_model(model, cfg)
    kinds = sorted({n.rsplit(".", 1)[-1] for n in names})
    return wrapped, [(f"peft {peft.__version__} LoRA r={wl.lora_rank}, alpha={2 * wl.lora_rank}, dropout 0, on "
                      f"{len(names)} layers (the ones mlfootprint adapts: {', '.join(kinds)})")]


@dataclasses.dataclass
class Real:
    step: Callable[[], None]
    model: nn.Module
    optimizer: Any
    tokens: int
    notes: list[str]
    trainable_params: int = 0


def build_real(case: Case, dev: torch.device, seed: int = 0) -> Real:
    """The case's model on ``dev`` with real weights, and one step of its workload as mlfootprint traces it."""
    from mlfootprint.models.build import build
    from mlfootprint.trace.optim import make_optimizer
    from mlfootprint.trace.transforms import prepare_model
    from mlfootprint.verbs.common import resolve_model

    wl = _wl(case)
    spec = resolve_model(case.model, list(case.inputs))
    torch.manual_seed(seed)
    # Built on the CPU (weights initialised there), then moved: the same path for every model and device.
    built = build(spec, wl)
    model = built.module
    if spec.source != "factory":
        _init_weights(model, seed)
    notes: list[str] = []
    if case.runner == "peft":
        if wl.recompute != "none":
            raise RuntimeError("the peft runner does not apply recomputation")
        model, peft_notes = _apply_peft(model, wl)
        notes += peft_notes
    else:
        notes += prepare_model(model, wl)  # LoRA adapters and recomputation, exactly as the trace applies them
    model.to(dev)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if wl.training else 0
    args, kwargs = built.make_inputs()
    args = tuple(_to(a, dev) for a in args)
    kwargs = {k: _to(v, dev) for k, v in kwargs.items()}
    model.train(wl.training)
    cast = (lambda: torch.autocast(device_type=dev.type, dtype=getattr(torch, wl.precision_info.compute_dtype))) \
        if wl.mixed else contextlib.nullcontext

    if wl.mode == "generate":
        gen_kwargs = {k: v for k, v in kwargs.items() if k not in ("use_cache", "labels")}
        ids = gen_kwargs["input_ids"]
        gen_kwargs.setdefault("attention_mask", torch.ones_like(ids))
        cfg = getattr(model, "generation_config", None)
        pad = getattr(cfg, "pad_token_id", None) if cfg is not None else None
        if pad is None:
            pad = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        if isinstance(pad, (list, tuple)):
            pad = pad[0] if pad else None
        n = wl.gen_tokens

        def step() -> None:
            with torch.inference_mode(), cast():
                out = model.generate(**gen_kwargs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                     use_cache=True, pad_token_id=pad if pad is not None else 0)
            assert out.shape[-1] == ids.shape[-1] + n, f"generated {out.shape[-1] - ids.shape[-1]} tokens, not {n}"

        notes.append(f"generate: model.generate(max_new_tokens=min_new_tokens={n}, greedy, use_cache=True, "
                     "DynamicCache); one step = one call, prefill included")
        return Real(step, model, None, int(ids.shape[0]) * n, notes, trainable)

    if not wl.training:
        def step() -> None:
            with torch.inference_mode(), cast():
                model(*args, **kwargs)

        return Real(step, model, None, built.tokens, notes, trainable)

    params = [p for p in model.parameters() if p.requires_grad]
    # The optimizer the trace runs: on CUDA torch.optim's default foreach implementation (a GPU target's trace
    # emulates it), on a CPU the single-tensor loop.
    optimizer, opt_notes = make_optimizer(wl, params, foreach=dev.type == "cuda")
    notes += opt_notes

    def step() -> None:
        # The output stays referenced through backward, as in `out = model(x); out.loss.backward()` and as the
        # trace keeps it; it and the loss die when the step returns, as between the steps of a real loop.
        with cast():
            out = model(*args, **kwargs)
            loss = built.loss(out)
        loss.backward()
        del out, loss
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Real(step, model, optimizer, built.tokens, notes, trainable)


def _meter(dev: torch.device) -> tuple[Any, str]:
    from mlfootprint.measure.energy import MeterUnavailable, SafeMeter, auto_meter

    try:
        return SafeMeter(auto_meter(str(dev) if dev.type == "cuda" else "cpu")), ""
    except MeterUnavailable as exc:
        return None, exc.reason
    except Exception as exc:  # noqa: BLE001
        return None, f"energy meter failed to start: {type(exc).__name__}: {exc}"


def warm_library_workspaces(dev: torch.device) -> int:
    """Allocate cuBLAS's workspaces before any case: one per handle, and the backward runs on autograd's own thread
    with its own handle (32 MiB each on an H200 with torch 2.11). They stay allocated for the process, so every
    case then counts them in ``allocated_before_build`` and leaves them out of its peak, as the prediction
    (``other_bytes=0``) does. Returns the bytes they hold."""
    before = int(torch.cuda.memory_allocated(dev))
    x = torch.randn(64, 64, device=dev, requires_grad=True)
    for dtype in (torch.float32, torch.bfloat16):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            (x @ x).float().sum().backward()
    x.grad = None
    del x
    torch.cuda.synchronize(dev)
    return int(torch.cuda.memory_allocated(dev)) - before


def measure_real(case: Case, dev: torch.device, min_time_s: float, deadline: float) -> dict[str, Any]:
    """Warm-up, then timed steps; peak memory of the timed (steady-state) steps; energy of the timed steps."""
    out: dict[str, Any] = {"notes": [], "null_reasons": {}, "extra": {}}
    _free(dev)
    base = int(torch.cuda.memory_allocated(dev)) if dev.type == "cuda" else None
    t_build = time.perf_counter()
    real = build_real(case, dev)
    out["notes"] += real.notes
    _sync(dev)
    out["extra"]["build_s"] = round(time.perf_counter() - t_build, 3)
    for _ in range(case.warmup):
        real.step()
        _sync(dev)
    meter, meter_why = _meter(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times: list[float] = []
    walls: list[float] = []
    reading = None
    try:
        if meter is not None:
            meter.start()
        start = time.perf_counter()
        while True:
            _sync(dev)
            w0 = time.perf_counter()
            if dev.type == "cuda":
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                real.step()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1) / 1e3)
            else:
                real.step()
                times.append(time.perf_counter() - w0)
            walls.append(time.perf_counter() - w0)
            if meter is not None:
                meter.poll()
            n, now = len(times), time.perf_counter()
            if n >= case.max_steps or now > deadline:
                break
            if n >= case.min_steps and now - start >= min_time_s:
                break
    finally:  # a failed step must not leave an NVML sampling thread behind
        if meter is not None:
            reading = meter.stop()
            with contextlib.suppress(Exception):
                meter.close()
    out["measured_step_s"] = statistics.median(times)
    out["extra"].update(timed_steps=len(times), warmup_steps=case.warmup,
                        step_min_s=min(times), step_max_s=max(times), wall_median_s=statistics.median(walls),
                        tokens_per_step=real.tokens, trainable_params=real.trainable_params,
                        timing=("CUDA events around each step (synchronized after each)" if dev.type == "cuda"
                                else "time.perf_counter wall time of each step"))
    if dev.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated(dev))
        reserved = int(torch.cuda.max_memory_reserved(dev))
        out["measured_peak_bytes"] = peak - (base or 0)
        out["measured_reserved_bytes"] = reserved
        out["extra"].update(allocated_before_build_bytes=base, raw_max_memory_allocated_bytes=peak)
        if base:
            out["notes"].append(f"{base} bytes were allocated before the model was built (an earlier case's "
                                "leftovers); measured_peak_bytes has them subtracted")
    else:
        out["measured_peak_bytes"] = out["measured_reserved_bytes"] = None
        out["null_reasons"]["measured_peak_bytes"] = (
            "CPU run: torch.cuda.max_memory_allocated exists only on a CUDA device (the bench case measures a "
            "CPU peak with torch.profiler instead)")
        out["null_reasons"]["measured_reserved_bytes"] = (
            "CPU run: the caching allocator's reserved bytes (torch.cuda.max_memory_reserved) exist only on CUDA")
    if reading is not None and reading.energy_j is not None:
        out["energy_j"] = reading.energy_j
        out["energy_meter"] = f"{reading.provenance}: {reading.method}"
        out["extra"].update(energy_per_step_j=reading.energy_j / len(times), energy_elapsed_s=reading.elapsed_s,
                            mean_power_w=reading.mean_power_w, energy_notes=list(reading.notes))
    else:
        out["energy_j"] = None
        out["energy_meter"] = reading.method if reading is not None else None
        out["null_reasons"]["energy_j"] = meter_why or "the energy meter failed during the run: " + "; ".join(
            reading.notes if reading is not None else [])
    del real
    _free(dev)
    return out


# --------------------------------------------------------------------------- records


def new_record(case: Case) -> dict[str, Any]:
    wl = None
    if case.workload:
        try:
            wl = _wl(case).to_dict()
        except Exception as exc:  # noqa: BLE001
            wl = {"error": str(exc), **case.workload}
    return {"case": case.name, "kind": case.kind, "description": case.description, "model": case.model,
            "inputs": list(case.inputs) or None, "workload": wl, "prediction_hardware": None,
            "predicted_peak_bytes": None, "measured_peak_bytes": None, "measured_reserved_bytes": None,
            "predicted_step_s": None, "measured_step_s": None, "energy_j": None, "energy_meter": None,
            "peak_error": None, "step_error": None, "skipped": None, "error": None, "notes": [],
            "null_reasons": {}, "extra": {}, "wall_s": None}


def _err(pred: Any, meas: Any) -> float | None:
    if pred is None or meas is None or not meas:
        return None
    return (pred - meas) / meas


def finish_errors(rec: dict[str, Any]) -> None:
    rec["peak_error"] = _err(rec["predicted_peak_bytes"], rec["measured_peak_bytes"])
    rec["step_error"] = _err(rec["predicted_step_s"], rec["measured_step_s"])
    for fig, (p, m) in {"peak_error": ("predicted_peak_bytes", "measured_peak_bytes"),
                        "step_error": ("predicted_step_s", "measured_step_s")}.items():
        if rec[fig] is None:
            missing = [k for k in (p, m) if rec[k] is None]
            rec["null_reasons"].setdefault(fig, "no " + " and no ".join(missing) + (
                " (see its reason)" if missing else ""))
    for key in ("measured_peak_bytes", "measured_reserved_bytes", "predicted_step_s", "measured_step_s",
                "predicted_peak_bytes", "energy_j"):
        if rec[key] is None and key not in rec["null_reasons"]:
            rec["null_reasons"][key] = rec["skipped"] or rec["error"] or "not measured"


PRECISION_NOTE = (
    "bf16-mixed: the real run keeps fp32 weights under torch.autocast(bfloat16) with fp32 gradients and AdamW "
    "(fp32 m, v; torch.optim's foreach implementation on CUDA, its default, and the single-tensor loop on a CPU, "
    "each as the trace for that target runs it): 4 + 4 + 8 = 16 bytes/param plus autocast's bf16 weight copies "
    "saved for backward")
LORA_NOTE = ("LoRA under bf16-mixed: the frozen base weights have no master copy and no optimizer state, so the "
             "real run keeps them in fp32 (4 bytes/param, plus autocast's bf16 copies saved for backward) where the "
             "memory model books 2 bytes/param: here the model-state totals differ, not only the live set")
SDPA_DROPOUT_NOTE = ("SDPA with attention dropout > 0: the CPU trace cannot use the fused CPU kernel with dropout and "
                     "records the math fallback (bmm, softmax, dropout mask: T×T tensors saved for backward), while "
                     "CUDA's flash / memory-efficient SDPA kernels support dropout and save no T×T tensors; compare "
                     "with gpt2-train-nodropout")
AUTOCAST_NOTE = ("the trace runs autocast with device_type='cpu' on fake tensors; CUDA autocast's per-op dtype "
                 "lists and kernels (flash/cuDNN attention, cuBLAS workspaces from the caching allocator) are not "
                 "identical")


def _has_dropout(model: str | None) -> bool:
    """Whether a Hugging Face config (catalog name or config path) has attention dropout."""
    if not model or model.endswith(("resnet_full", "resnet_small")):
        return False
    try:
        from mlfootprint.verbs.common import resolve_model

        cfg = resolve_model(model).hf_config or {}
    except Exception:  # noqa: BLE001
        return False
    return any(float(cfg.get(k) or 0) > 0 for k in ("attn_pdrop", "attention_dropout", "attention_probs_dropout_prob"))


def run_model_case(case: Case, rec: dict[str, Any], dev: torch.device, pred_hw: str | None, pred_why: str,
                   args: argparse.Namespace, deadline: float) -> None:
    wl = _wl(case)
    rec["prediction_hardware"] = pred_hw
    # 1. predicted peak (always; the CPU run exercises this path)
    # whose kernels the trace emulates: the GPU measured here, or the one --hardware names (on a CPU: --predict-only)
    target = pred_hw if (dev.type == "cuda" or args.hardware) else None
    mem = predicted_peak(case, target)
    rec["predicted_peak_bytes"] = mem["peak_bytes"]
    rec["extra"].update(predicted_peak_target=target or "this CPU", predicted_peak_phase=mem["peak_phase"],
                        predicted_at_peak=mem["at_peak"], predicted_components=mem["components"])
    if wl.mixed:
        rec["notes"].append(PRECISION_NOTE)
        if wl.lora_rank:
            rec["notes"].append(LORA_NOTE)
    if target is None:  # a GPU target's trace emulates CUDA's kernels (fused SDPA with dropout, CUDA autocast)
        if wl.training and wl.attention == "sdpa" and _has_dropout(case.model):
            rec["notes"].append(SDPA_DROPOUT_NOTE)
        rec["notes"].append(AUTOCAST_NOTE)
    # 2. predicted step time on the device that matches this one
    if pred_hw is not None:
        p = predicted_time(case, pred_hw)
        rec["predicted_step_s"] = p["step_s"]
        rec["extra"]["prediction"] = {k: v for k, v in p.items() if k != "notes"}
        rec["notes"] += p["notes"]
        if p["step_s"] is None:
            rec["null_reasons"]["predicted_step_s"] = p.get("why_no_step") or "predict gave no step time"
        if p.get("peak_bytes_with_overhead") is not None and p.get("other_bytes") is not None:
            same = p["peak_bytes_with_overhead"] - p["other_bytes"]
            if abs(same - mem["peak_bytes"]) > 0.01 * mem["peak_bytes"]:
                rec["notes"].append(f"mf.predict's memory peak less its other_bytes ({same}) differs from "
                                    f"mf.memory's ({mem['peak_bytes']}) by more than 1%")
    else:
        rec["null_reasons"]["predicted_step_s"] = pred_why
        if dev.type == "cpu" and not args.no_reference_prediction:
            # Not compared (an H200 figure against a CPU run) but it exercises the GPU run's predict path now.
            p = predicted_time(case, args.hardware or DEFAULT_GPU_ID)
            rec["extra"]["h200_prediction"] = {k: p.get(k) for k in ("hardware", "step_s", "step_is",
                                                                      "peak_bytes_with_overhead", "fits", "mfu")}
    # 3. the real run
    if args.predict_only:
        rec["skipped"] = "--predict-only: predictions only, no real run"
        return
    if dev.type != "cuda" and args.scale == "full":
        rec["skipped"] = "full-scale real runs need the GPU; on a CPU use --scale small (predictions were made)"
        return
    if case.runner == "peft":
        try:
            import peft  # type: ignore  # noqa: F401
        except ImportError:
            rec["skipped"] = ("peft is not installed: the gpt2-lora case runs mlfootprint's own LoRA adapters (the "
                              "ones its trace applies); install peft to cross-check them against peft's")
            return
    min_time = args.min_time_s if args.min_time_s is not None else (3.0 if dev.type == "cuda" and args.scale == "full"
                                                                    else 0.0)
    got = measure_real(case, dev, min_time, deadline)
    rec["notes"] += got.pop("notes")
    rec["null_reasons"].update(got.pop("null_reasons"))
    rec["extra"].update(got.pop("extra"))
    rec.update(got)


def run_bench_case(case: Case, rec: dict[str, Any], dev: torch.device, pred_hw: str | None, pred_why: str,
                   args: argparse.Namespace, deadline: float) -> None:
    import mlfootprint as mf

    if args.predict_only or (dev.type != "cuda" and args.scale == "full"):
        rec["skipped"] = "--predict-only (or a full-scale run on a CPU): mf.bench runs for real"
        return
    wl = _wl(case, **({"hardware": pred_hw} if pred_hw else {}))
    rec["prediction_hardware"] = pred_hw
    rep = mf.bench(case.model, wl, inputs=list(case.inputs), repeats=case.min_steps, warmup=case.warmup,
                   device=str(dev), energy=True, progress=False)
    m = rep.sections["measured"]
    vs = m.get("vs_predicted") or {}
    rec.update(measured_step_s=m.get("step_s"), measured_peak_bytes=m.get("peak_bytes"),
               measured_reserved_bytes=m.get("reserved_bytes"), energy_j=m.get("energy_j"),
               energy_meter=(f"{m.get('energy_provenance')}: {m.get('energy_method')}"
                             if m.get("energy_method") else None),
               predicted_step_s=(vs.get("step_s") or {}).get("predicted"),
               predicted_peak_bytes=(vs.get("peak_bytes") or {}).get("predicted"))
    rec["extra"].update({k: m.get(k) for k in (
        "device", "runs", "stopped_because", "latency_p90_s", "tokens_per_s", "mfu", "hfu", "achieved_flops_per_s",
        "peak_flop_per_s", "peak_dtype", "peak_from", "memory_method", "energy_per_step_j", "mean_power_w",
        "energy_notes", "oom")})
    rec["extra"]["vs_predicted"] = vs
    for key, why in (m.get("unavailable") or {}).items():
        rec["null_reasons"][{"energy_j": "energy_j", "peak_bytes": "measured_peak_bytes"}.get(key, key)] = why
    for fig, field in (("step_s", "predicted_step_s"), ("peak_bytes", "predicted_peak_bytes")):
        if rec[field] is None:
            rec["null_reasons"][field] = (vs.get(fig) or {}).get("predicted_by") or "not predicted"
    if dev.type != "cuda":
        rec["null_reasons"]["measured_reserved_bytes"] = "CPU run: reserved bytes are a CUDA caching-allocator figure"
        rec["notes"].append("CPU: mf.bench's peak is from CPU allocator events (torch.profiler), not allocator stats")
    rec["notes"].append("mf.bench's step time is the median of --repeats steps, each bracketed by synchronize "
                        "and timed with time.perf_counter (wall), compare with the track case and gpt2-train")


def run_track_case(case: Case, rec: dict[str, Any], dev: torch.device, pred_hw: str | None, pred_why: str,
                   args: argparse.Namespace, deadline: float) -> None:
    import mlfootprint as mf

    if args.predict_only or (dev.type != "cuda" and args.scale == "full"):
        rec["skipped"] = "--predict-only (or a full-scale run on a CPU): mf.track measures a real loop"
        return
    rec["prediction_hardware"] = pred_hw
    wl = _wl(case)
    rec["predicted_peak_bytes"] = predicted_peak(case, pred_hw if dev.type == "cuda" else None)["peak_bytes"]
    if pred_hw is not None:
        p = predicted_time(case, pred_hw)
        rec["predicted_step_s"] = p["step_s"]
    else:
        rec["null_reasons"]["predicted_step_s"] = pred_why
    _free(dev)
    real = build_real(case, dev)
    for _ in range(case.warmup):  # mf.track's own warm-up step is counted on top of these
        real.step()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    steps = case.min_steps + 1
    with mf.track(model=real.model, hardware=pred_hw, precision=wl.precision, tokens_per_step=real.tokens,
                  energy=True, warmup_steps=1, sync=dev.type == "cuda", optimizer=real.optimizer, mode="train",
                  sample_interval_s=0.0, rank_files=False) as t:
        for _ in range(steps):
            real.step()
            t.step(tokens=real.tokens)
    rep = t.report
    if rep is None:
        raise RuntimeError(f"mf.track produced no report ({t.report_error})")
    m = rep.sections["measured"]
    rec.update(measured_step_s=m.get("step_s"), energy_j=m.get("energy_j"),
               energy_meter=(f"{m.get('energy_provenance')}: {m.get('energy_method')}"
                             if m.get("energy_method") else None))
    if dev.type == "cuda":
        rec["measured_peak_bytes"] = m.get("peak_bytes")
        rec["measured_reserved_bytes"] = int(torch.cuda.max_memory_reserved(dev))
    else:
        rec["null_reasons"]["measured_peak_bytes"] = (
            f"CPU run: mf.track reports the process's peak RSS ({m.get('peak_bytes')} bytes, in extra), not tensor "
            "bytes; not comparable with the prediction")
        rec["null_reasons"]["measured_reserved_bytes"] = "CPU run: reserved bytes are a CUDA caching-allocator figure"
    rec["extra"].update({k: m.get(k) for k in (
        "status", "steps", "step_p90_s", "tokens_per_s", "mfu", "hfu", "flops_source", "peak_flop_per_s",
        "peak_bytes", "memory_method", "energy_per_step_j", "mean_power_w", "energy_notes", "unavailable")})
    for key, why in (m.get("unavailable") or {}).items():
        if key == "energy_j":
            rec["null_reasons"]["energy_j"] = why
    rec["notes"].append(f"mf.track over {steps} steps of a hand-written loop (the first is track's warm-up), "
                        f"after {case.warmup} untimed steps; sync=True on CUDA; step_s is the median")
    rec["notes"].append("peak_bytes on CUDA: torch.cuda.max_memory_allocated since reset before tracking, "
                        "includes the model, so it is comparable with the prediction")
    del real
    _free(dev)


def run_calibrate_case(case: Case, rec: dict[str, Any], dev: torch.device, pred_hw: str | None, pred_why: str,
                       args: argparse.Namespace, deadline: float) -> None:
    import mlfootprint as mf
    from mlfootprint.hardware.catalog import get_device

    if args.predict_only:
        rec["skipped"] = "--predict-only: calibration measures the device"
        return
    budget = args.calibrate_budget_s if args.calibrate_budget_s is not None else (
        30.0 if dev.type == "cuda" else 1.5)
    budget = max(0.5, min(budget, max(0.5, deadline - time.perf_counter() - 5)))
    t0 = time.perf_counter()
    rep = mf.hardware_calibrate(budget_s=budget, device=str(dev), save=False)
    got = rep.sections["catalog"]["devices"]["this"]
    rec["extra"].update(budget_s=budget, calibrate_s=round(time.perf_counter() - t0, 2), profile=got)
    rec["null_reasons"].update({
        "predicted_peak_bytes": "calibration measures throughput, not memory",
        "measured_peak_bytes": "calibration measures throughput, not memory",
        "measured_reserved_bytes": "calibration measures throughput, not memory",
        "predicted_step_s": "calibration has no step", "measured_step_s": "calibration has no step",
        "energy_j": "calibration does not meter energy"})
    rec["notes"].append("save=False: the profile 'this' is not written (it would change later predictions)")
    if dev.type == "cuda" and pred_hw:
        cat = get_device(pred_hw)
        achieved = {}
        for dtype, value in (got.get("peak_flop_per_s") or {}).items():
            if cat.peak_flops.get(dtype):
                achieved[f"{dtype}_fraction_of_catalog_peak"] = value / cat.peak_flops[dtype]
        bw = got.get("memory_bandwidth_bytes_per_s")
        if bw and cat.memory_bandwidth_bytes_per_s:
            achieved["bandwidth_fraction_of_catalog"] = bw / cat.memory_bandwidth_bytes_per_s
        rec["extra"]["vs_catalog"] = {"catalog_id": pred_hw, **achieved}
    elif dev.type != "cuda":
        rec["notes"].append(f"CPU: a {budget:g}-s calibration only exercises the path (figures are noisy)")


RUNNERS = {"model": run_model_case, "bench": run_bench_case, "track": run_track_case,
           "calibrate": run_calibrate_case}


# --------------------------------------------------------------------------- output


def _bytes(v: Any) -> str:
    if v is None:
        return "—"
    v = float(v)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:.0f} B"


def _secs(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v * 1e3:.2f} ms" if v < 10 else f"{v:.2f} s"


def _pct(v: Any) -> str:
    return "—" if v is None else f"{v:+.1%}"


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    model = [r for r in records if r["kind"] == "model"]
    peak = [abs(r["peak_error"]) for r in model if r["peak_error"] is not None]
    step = [abs(r["step_error"]) for r in model if r["step_error"] is not None]
    return {"median_abs_peak_error": statistics.median(peak) if peak else None, "peak_cases": len(peak),
            "median_abs_step_error": statistics.median(step) if step else None, "step_cases": len(step),
            "failed": [r["case"] for r in records if r["error"]],
            "skipped": [r["case"] for r in records if r["skipped"]],
            "error_convention": "(predicted - measured) / measured; medians over model cases only"}


def print_table(records: list[dict[str, Any]], summ: dict[str, Any]) -> None:
    head = (f"{'case':<20} {'pred peak':>11} {'meas peak':>11} {'reserved':>11} {'err':>8} "
            f"{'pred step':>11} {'meas step':>11} {'err':>8} {'energy':>9}  status")
    print(head)
    print("-" * len(head))
    for r in records:
        status = "ok"
        if r["error"]:
            status = "ERROR: " + r["error"].splitlines()[0][:70]
        elif r["skipped"]:
            status = "skipped: " + r["skipped"][:70]
        energy = "—" if r["energy_j"] is None else f"{r['energy_j']:.1f} J"
        print(f"{r['case']:<20} {_bytes(r['predicted_peak_bytes']):>11} {_bytes(r['measured_peak_bytes']):>11} "
              f"{_bytes(r['measured_reserved_bytes']):>11} {_pct(r['peak_error']):>8} "
              f"{_secs(r['predicted_step_s']):>11} {_secs(r['measured_step_s']):>11} {_pct(r['step_error']):>8} "
              f"{energy:>9}  {status}")
    mp, ms = summ["median_abs_peak_error"], summ["median_abs_step_error"]
    print(f"median |error| of peak memory: {'—' if mp is None else f'{mp:.1%}'} over {summ['peak_cases']} model "
          f"case(s); of step time: {'—' if ms is None else f'{ms:.1%}'} over {summ['step_cases']} model case(s)")
    for r in records:
        nulls = {k: v for k, v in r["null_reasons"].items() if k in ("measured_peak_bytes", "predicted_step_s",
                                                                      "energy_j")}
        if r["kind"] == "model" and nulls and not r["skipped"] and not r["error"]:
            print(f"null figures (as in {r['case']}; each case's null_reasons has them):")
            for k, v in nulls.items():
                print(f"  {k}: {v if len(v) <= 150 else v[:147] + '...'}")
            break  # the same reasons apply to every model case of the run


def write(path: Path, env: dict[str, Any], args: argparse.Namespace, records: list[dict[str, Any]],
          started: float, done: bool) -> None:
    data = {**env, "scale": args.scale, "args": {k: v for k, v in vars(args).items()},
            "complete": done, "wall_s": round(time.perf_counter() - started, 2), "summary": summary(records),
            "cases": records}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


# --------------------------------------------------------------------------- main


TRAIN_STEP = "the model's output referenced through backward (out = model(x); loss_of(out).backward())"
FREED_OUTPUT_NOTE = ("measured by a run whose training step freed the model's output before backward (before "
                     "2026-12-04's fix); the trace keeps it referenced: for a language model, its 16-bit logits")


def rescore(paths: list[str], scale_default: str, out: str | None = None) -> int:
    """Predict again, with the current model and on any machine, every model case measured in earlier GPU runs'
    JSON files, and print predicted vs measured (and write them to ``out``, in this script's JSON format). A case
    measured in several files is taken from the last. Runs from before ``warm_library_workspaces`` counted cuBLAS's
    workspaces in the peak of a case that ran first in its process (nothing allocated before it): those cases
    have the workspaces subtracted, taken as the smallest leftover a later case saw (the files passed together
    must come from one machine and software stack)."""
    files = [json.loads(Path(path).read_text()) for path in paths]
    leftovers = [c["extra"].get("allocated_before_build_bytes") for data in files for c in data["cases"]]
    seen_workspace = min((b for b in leftovers if b), default=0)
    by_case: dict[str, dict[str, Any]] = {}
    for path, data in zip(paths, files):
        hardware = data.get("prediction_hardware") or DEFAULT_GPU_ID
        workspace = data.get("library_workspace_bytes") or seen_workspace
        with tempfile.TemporaryDirectory(prefix="mlfp-gpuval-") as tmp:
            cases = {c.name: c for c in make_cases(data.get("scale") or scale_default, Path(tmp))}
            for old in data["cases"]:
                case = cases.get(old["case"])
                if case is None or case.kind != "model" or old.get("measured_peak_bytes") is None:
                    continue
                rec = new_record(case)
                rec["prediction_hardware"] = hardware
                rec["extra"]["measured_in"] = Path(path).name
                measured = old["measured_peak_bytes"]
                if data.get("library_workspace_bytes") is None and old["extra"].get("allocated_before_build_bytes") == 0:
                    measured -= workspace
                    rec["notes"].append(f"cuBLAS workspaces ({workspace} B) subtracted from the measured peak")
                if "train_step" not in data and case.workload.get("mode") == "train":
                    rec["notes"].append(FREED_OUTPUT_NOTE)
                rec.update(measured_peak_bytes=measured, measured_reserved_bytes=old.get("measured_reserved_bytes"),
                           measured_step_s=old.get("measured_step_s"), energy_j=old.get("energy_j"),
                           energy_meter=old.get("energy_meter"))
                rec["predicted_peak_bytes"] = predicted_peak(case, hardware)["peak_bytes"]
                rec["predicted_step_s"] = predicted_time(case, hardware)["step_s"]
                finish_errors(rec)
                by_case[case.name] = rec
                print(f"  {case.name} ({Path(path).name}): peak {_pct(rec['peak_error'])}, step "
                      f"{_pct(rec['step_error'])}", flush=True)
    records = list(by_case.values())
    print()
    summ = summary(records)
    print_table(records, summ)
    if out:
        first = files[0] if files else {}
        env = {k: first.get(k) for k in ("device", "device_memory_bytes", "compute_capability", "torch_version",
                                          "cuda_version", "cudnn_version", "driver_version", "transformers_version",
                                          "python_version", "date_utc")}
        import mlfootprint

        data = {"schema": SCHEMA, **env, "rescored_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "rescored_with": f"mlfootprint {getattr(mlfootprint, '__version__', None)}, torch {torch.__version__}",
                "measured_in": [Path(p).name for p in paths], "prediction_hardware": files[0].get("prediction_hardware")
                if files else None, "summary": summ, "cases": records}
        Path(out).write_text(json.dumps(data, indent=1, default=str))
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("full", "small"), default=None,
                    help="full: H200-sized cases; small: tiny configs, batch 2, seq 32, 2 steps (default: full on "
                         "CUDA, small on a CPU)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    ap.add_argument("--cases", default=None, help="comma-separated case names to run (default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--out", default=None, help=f"JSON file (default on CUDA: {DEFAULT_GPU_OUT.relative_to(REPO)}; "
                                                f"on a CPU: {DEFAULT_CPU_OUT})")
    ap.add_argument("--timeout-s", type=float, default=None,
                    help="total budget: cases that would start later are skipped (default 540 on CUDA, which fits "
                         "a 10-minute session; 300 on a CPU)")
    ap.add_argument("--min-time-s", type=float, default=None,
                    help="least seconds of timed steps per model case (default 3 on CUDA at full scale, else 0)")
    ap.add_argument("--hardware", default=None,
                    help=f"catalog id to predict for (default: the catalog GPU matching this one, else "
                         f"{DEFAULT_GPU_ID}; on a CPU the calibrated profile 'this' if any)")
    ap.add_argument("--calibrate-budget-s", type=float, default=None,
                    help="budget of mf.hardware_calibrate (default 30 s on CUDA, 1.5 s on a CPU)")
    ap.add_argument("--predict-only", action="store_true",
                    help="trace and predict every case, run nothing (checks the full-scale cases on a CPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads on a CPU (default 1: on a shared machine a co-running process stalls "
                         "multi-threaded kernels at every barrier; CUDA runs leave torch's default)")
    ap.add_argument("--no-reference-prediction", action="store_true",
                    help="on a CPU, skip the (uncompared) H200 prediction each model case makes for reference")
    ap.add_argument("--rescore", nargs="+", metavar="JSON", default=None,
                    help="predict again every model case measured in earlier runs' JSON files (any machine), and "
                         "print predicted vs measured")
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore, args.scale or "full", args.out)

    from mlfootprint.core.errors import UserError
    from mlfootprint.hardware.catalog import get_device
    from mlfootprint.measure.bench import torch_device

    try:
        dev = torch_device(args.device)
        if args.hardware:
            get_device(args.hardware)
    except UserError as exc:
        ap.error(str(exc))
    args.device = str(dev)
    if dev.type == "cpu" or args.threads is not None:
        args.threads = args.threads or 1
        torch.set_num_threads(args.threads)
    if args.scale is None:
        args.scale = "full" if dev.type == "cuda" else "small"
    if args.timeout_s is None:
        args.timeout_s = 540.0 if dev.type == "cuda" else 300.0
    out = Path(args.out) if args.out else (DEFAULT_GPU_OUT if dev.type == "cuda" else DEFAULT_CPU_OUT)
    if dev.type != "cuda" and args.out is None:
        args.out = str(out)
    started = time.perf_counter()
    deadline = started + args.timeout_s

    with tempfile.TemporaryDirectory(prefix="mlfp-gpuval-") as tmp:
        cases = make_cases(args.scale, Path(tmp))
        if args.list:
            for c in cases:
                print(f"{c.name:<20} {c.kind:<6} {c.description}")
            return 0
        if args.cases:
            wanted = [n.strip() for n in args.cases.split(",") if n.strip()]
            known = {c.name for c in cases}
            unknown = [n for n in wanted if n not in known]
            if unknown:
                ap.error(f"unknown case(s) {', '.join(unknown)}; choose from: {', '.join(sorted(known))}")
            cases = [c for c in cases if c.name in wanted]
        env = environment(dev)
        pred_hw, pred_why, pred_notes = prediction_device(dev, args.hardware)
        env.update(prediction_hardware=pred_hw, prediction_hardware_why=pred_why)
        if dev.type == "cuda":
            from mlfootprint.measure.reference import match_catalog_gpu
            hit = match_catalog_gpu(torch.cuda.get_device_name(dev))
            env["catalog_match"] = hit.id if hit is not None else None
        print(f"gpu_validation: {env['device']}, torch {env['torch_version']}, CUDA {env['cuda_version']}, driver "
              f"{env['driver_version']}; scale {args.scale}; predicting step time for {pred_hw or 'nothing'} "
              f"({pred_why}); {len(cases)} case(s); budget {args.timeout_s:g} s; results -> {out}", flush=True)
        if dev.type != "cuda":
            print("  no CUDA device: allocator statistics, CUDA-event timing and NVML energy are skipped (null "
                  "with the reason in each case's null_reasons)", flush=True)
        env["train_step"] = TRAIN_STEP
        if dev.type == "cuda":
            env["library_workspace_bytes"] = warm_library_workspaces(dev)
        records: list[dict[str, Any]] = []
        for case in cases:
            rec = new_record(case)
            rec["notes"] += pred_notes
            records.append(rec)
            t0 = time.perf_counter()
            if t0 > deadline:
                rec["skipped"] = (f"--timeout-s budget of {args.timeout_s:g} s exhausted after "
                                  f"{t0 - started:.0f} s; the case did not start")
            else:
                print(f"[{t0 - started:6.1f} s] {case.name}: {case.description}", flush=True)
                runner = RUNNERS["model" if case.kind == "model" else case.name]
                try:
                    runner(case, rec, dev, pred_hw, pred_why, args, deadline)
                except Exception as exc:  # noqa: BLE001 - one case's failure must not end a GPU session
                    tb = traceback.format_exc().strip().splitlines()
                    rec["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"
                    rec["extra"]["traceback_tail"] = tb[-8:]
                    print(f"    FAILED: {rec['error'][:300]}", flush=True)
                finally:
                    with contextlib.suppress(Exception):
                        _free(dev)
                rec["wall_s"] = round(time.perf_counter() - t0, 2)
            finish_errors(rec)
            if not rec["error"] and not rec["skipped"]:
                print(f"    peak {_bytes(rec['predicted_peak_bytes'])} predicted / {_bytes(rec['measured_peak_bytes'])}"
                      f" measured; step {_secs(rec['predicted_step_s'])} predicted / "
                      f"{_secs(rec['measured_step_s'])} measured ({rec['wall_s']:.1f} s)", flush=True)
            elif rec["skipped"]:
                print(f"    skipped: {rec['skipped']}", flush=True)
            write(out, env, args, records, started, done=False)
        summ = summary(records)
        write(out, env, args, records, started, done=True)
    print()
    print_table(records, summ)
    print(f"wrote {out} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
