"""The Hugging Face Trainer callback: driven the way the Trainer drives it (always), and inside a real Trainer
(when `accelerate`, which the Trainer needs, is installed)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

from mlfootprint.hf_callback import MlfootprintCallback  # noqa: E402


def tiny_gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=256, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


# FLOPs per token of this model at seq 16 (PaLM appendix B, attention as the full square):
# 6·N + 12·L·H·Q·T with N = non-embedding weights 2 layers × 12·32² = 24,576 plus the tied LM head 256·32 = 8,192,
# so 6 × 32,768 = 196,608, and 12·2·2·16·16 = 12,288 → 208,896.
FLOPS_PER_TOKEN = 208_896


def test_callback_as_the_trainer_drives_it(tmp_path):
    model = tiny_gpt2()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cb = MlfootprintCallback(report=tmp_path / "hf.json", hardware="a100-80gb", energy=False)
    args = state = control = SimpleNamespace()
    cb.on_train_begin(args, state, control, model=model)
    for _ in range(3):  # 3 optimizer steps of gradient_accumulation_steps = 2, batch 2 × 16 tokens
        for _ in range(2):
            ids = torch.randint(0, 256, (2, 16))
            out = model(input_ids=ids, labels=ids)
            (out.loss / 2).backward()
        opt.step()
        opt.zero_grad()
        cb.on_step_end(args, state, control)
        with torch.no_grad():  # an evaluation between steps is not counted
            model(input_ids=torch.randint(0, 256, (4, 16)))
    cb.on_train_end(args, state, control)
    m = json.loads((tmp_path / "hf.json").read_text())["measured"]
    assert m["steps"] == 3
    assert m["tokens"] == 3 * 2 * 2 * 16  # steps × micro-batches × batch × seq = 192
    assert m["forwards_in_first_step"] == 2
    assert m["model_flops_per_token"] == FLOPS_PER_TOKEN
    assert "mfu" in m
    assert not model._forward_pre_hooks  # the callback's and the tracker's hooks are gone


def test_callback_refuses_what_the_trainer_provides():
    with pytest.raises(TypeError, match="grad_accum"):
        MlfootprintCallback(grad_accum=4)


def test_callback_inside_a_real_trainer(tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")
    model = tiny_gpt2()
    data = [{"input_ids": torch.randint(0, 256, (16,)), "labels": torch.randint(0, 256, (16,))} for _ in range(16)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=3,
        report_to=[], save_strategy="no", use_cpu=True, logging_strategy="no", disable_tqdm=True)
    cb = MlfootprintCallback(report=tmp_path / "hf.json", hardware="a100-80gb", energy=False)
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
    m = json.loads((tmp_path / "hf.json").read_text())["measured"]
    assert m["steps"] == 3 and m["tokens"] == 192
    assert m["model_flops_per_token"] == FLOPS_PER_TOKEN
