"""Predicted peak memory against a real step on this CPU.

How the measurement works (mlfootprint.measure.memory.measure_peak): CPU tensors
have no allocator-statistics API, so each real step runs under torch.profiler
with profile_memory=True, which reports every allocation and free made through
PyTorch's CPU allocator (parameters, optimizer states, activations, kernel
temporaries) with its address and size. The model, the optimizer and a warm-up
step are created inside the profiled region, so every live byte of the measured
(second, steady-state) step is seen; the events are replayed in time order and
the largest live total during that step is the measured peak.

The prediction is mlfootprint's: one fake-tensor trace of the same step (no
real memory), classified and replayed by the memory model with other_bytes=0
(there is no CUDA context on a CPU). The same code path scales the trace to
other layouts, so agreement here checks the base the scaling rules stand on.

Figures on the reference machine (predicted / measured bytes, error):
  GPT-style SDPA transformer, batch 8, seq 256:    92,818,444 / 92,802,268   +0.02%
  same with eager attention (T×T probabilities):  126,536,704 / 126,536,944  −0.00%
  CNN (6 conv-BN-ReLU, 16×3×64×64):                67,174,828 / 69,865,516   −3.85% (oneDNN convolution buffers)
  tiny-llama (HF, SDPA, GQA), batch 8, seq 128:    17,055,496 / 17,047,452   +0.05%
  tiny-llama with full recomputation:               9,929,736 / 9,931,804    −0.02%
  GPT-style, inference only (no_grad forward):     18,263,040 / 18,263,040   +0.00%
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlfootprint.verbs.common import traced
from mlfootprint.analysis.memory import memory_model
from mlfootprint.measure.memory import measure_peak
from mlfootprint.models.spec import ModelSpec
from mlfootprint.workload import Workload

warnings.filterwarnings("ignore", category=FutureWarning)

TOLERANCE = 0.10
VOCAB, SEQ, BATCH = 512, 256, 8


class Block(nn.Module):
    def __init__(self, d: int, heads: int, attention: str) -> None:
        super().__init__()
        self.heads, self.attention = heads, attention
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    """A GPT-style decoder in plain PyTorch (tied embeddings, learned positions, causal SDPA)."""

    def __init__(self, attention: str = "sdpa", d: int = 128, heads: int = 4, layers: int = 4) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, d), nn.Embedding(SEQ, d)
        self.blocks = nn.ModuleList(Block(d, heads, attention) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


class CNN(nn.Module):
    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()

        def cbr(i: int, o: int, s: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(cbr(3, width), cbr(width, width), cbr(width, 2 * width, 2),
                                      cbr(2 * width, 2 * width), cbr(2 * width, 4 * width, 2), cbr(4 * width, 4 * width))
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(self.features(x).mean((2, 3))), labels)


def gpt_inputs():
    return torch.randint(0, VOCAB, (BATCH, SEQ)), torch.randint(0, VOCAB, (BATCH, SEQ))


def cnn_inputs():
    return torch.randn(16, 3, 64, 64), torch.randint(0, 10, (16,))


def factory_spec(name: str, factory, inputs) -> ModelSpec:
    return ModelSpec(name=name, source="factory", origin=f"tests.test_memory_reality:{name}", factory=factory,
                     inputs_factory=inputs)


def predicted_peak(spec_or_name, wl: Workload) -> int:
    spec, w, tr = traced(spec_or_name, wl)
    mm = memory_model(spec, w, tr)
    return mm.per_device(mm.layout(), other_bytes=0).peak_bytes


def measured_train_peak(make_model, make_inputs, forward=None) -> int:
    def setup():
        torch.manual_seed(0)
        model = make_model()
        model.train()
        return model, torch.optim.AdamW(model.parameters(), foreach=False), make_inputs()

    def step(state) -> None:
        model, opt, inputs = state
        if forward is None:
            out = model(*inputs)
            loss = out.float().mean()  # the trace's loss for a custom model: the mean of its output
        else:
            out = forward(model, inputs)
            loss = out.loss
        # the outputs stay referenced through backward, as in `out = model(x); out.loss.backward()`
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del out, loss

    return measure_peak(setup, step).peak_bytes


def check(predicted: int, measured: int) -> None:
    error = (predicted - measured) / measured
    assert abs(error) < TOLERANCE, f"predicted {predicted:,} vs measured {measured:,} bytes ({100 * error:+.2f}%)"


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_gpt_transformer_training_step(attention: str) -> None:
    spec = factory_spec(f"gpt_{attention}", lambda: GPT(attention), gpt_inputs)
    predicted = predicted_peak(spec, Workload(mode="train"))
    measured = measured_train_peak(lambda: GPT(attention), gpt_inputs)
    check(predicted, measured)


def test_cnn_training_step() -> None:
    predicted = predicted_peak(factory_spec("cnn", CNN, cnn_inputs), Workload(mode="train"))
    measured = measured_train_peak(CNN, cnn_inputs)
    check(predicted, measured)


def _tiny_llama(attn: str = "sdpa", checkpointing: bool = False):
    import transformers

    cfg = json.loads(Path("tests/data/configs/tiny-llama/config.json").read_text())
    config = transformers.AutoConfig.for_model(**cfg)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _hf_forward(model, inputs):
    (ids,) = inputs
    return model(input_ids=ids, labels=ids, use_cache=False)


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_tiny_llama_training_step(recompute: str) -> None:
    pytest.importorskip("transformers")
    wl = Workload(batch=8, seq=128, mode="train", recompute=recompute)
    predicted = predicted_peak("tests/data/configs/tiny-llama", wl)
    measured = measured_train_peak(lambda: _tiny_llama(checkpointing=recompute == "full"),
                                   lambda: (torch.zeros(8, 128, dtype=torch.long),), forward=_hf_forward)
    check(predicted, measured)


def test_inference_only_forward() -> None:
    spec = factory_spec("gpt_infer", GPT, lambda: (torch.randint(0, VOCAB, (BATCH, SEQ)),))
    predicted = predicted_peak(spec, Workload(mode="inference"))

    def setup():
        torch.manual_seed(0)
        model = GPT()
        model.eval()
        return model, (torch.randint(0, VOCAB, (BATCH, SEQ)),)

    def step(state) -> None:
        model, inputs = state
        with torch.no_grad():
            out = model(*inputs)
        del out

    measured = measure_peak(setup, step).peak_bytes
    # weights 3,566,592 bytes (891,648 fp32 parameters) + the forward's transient peak (the logits [8, 256, 512])
    check(predicted, measured)
