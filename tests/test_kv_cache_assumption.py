"""The trace calls Hugging Face models with ``use_cache=False``; a report says so, and the sentence it says is true.

A training loop that leaves the config's ``use_cache=True`` gets a key/value cache from every decoder layer in the
outputs, held until they are dropped. The trace does not build it, and states that as an assumption wherever the
model takes ``use_cache`` (generation models its cache apart, so it has no such line).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mlfootprint as mf

CONFIGS = Path(__file__).parent / "data" / "configs"
LLAMA = CONFIGS / "tiny-llama"
LINE = "use_cache=False: the traced forward builds no key/value cache"


def _stated(model: str, **workload) -> bool:
    return any(str(a).startswith(LINE) for a in mf.memory(model, mf.Workload(**workload)).assumptions)


@pytest.mark.parametrize("workload,stated", [
    (dict(mode="train", batch=2, seq=16), True),
    (dict(mode="inference", batch=2, seq=16), True),
    (dict(mode="generate", batch=2, seq=16, gen_tokens=4), False),  # kvcache.py models the cache
])
def test_the_report_states_the_cache_the_trace_leaves_out(workload, stated):
    assert _stated(str(LLAMA), **workload) is stated


def test_a_model_without_use_cache_has_no_such_line():
    assert not _stated(str(CONFIGS / "tiny-vit"), mode="train", batch=2)


def test_hugging_faces_default_keeps_every_layers_keys_and_values_in_training():
    # The sentence the report says, on a real model: tiny-llama (2 layers, 2 KV heads of 16 dims) in train mode,
    # batch 2 × 16 tokens, fp32. With the config's default the outputs hold K and V of every layer, each
    # batch 2 × 2 heads × 16 tokens × 16 dims × 4 B = 4,096 bytes: 2 layers × 2 × 4,096 = 16,384 bytes;
    # with use_cache=False, nothing.
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(**json.loads((LLAMA / "config.json").read_text()))
    assert config.use_cache is True
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).train()
    ids = torch.randint(0, config.vocab_size, (2, 16))
    out = model(input_ids=ids, labels=ids)
    cache = out.get("cache", out.get("past_key_values"))  # the field's name since transformers 5.x, and before
    cached = [t for layer in cache.layers for t in (layer.keys, layer.values)] if hasattr(cache, "layers") \
        else [t for kv in cache for t in kv]
    assert len(cached) == 2 * config.num_hidden_layers
    assert all(tuple(t.shape) == (2, 2, 16, 16) for t in cached)
    assert sum(t.numel() * t.element_size() for t in cached) == 16_384
    out.loss.backward()  # the cache is still held here, by the outputs
    assert set(model(input_ids=ids, labels=ids, use_cache=False).keys()) == {"loss", "logits"}
