"""What a compiled stack keeps for backward, predicted (--fusion compiled) and measured with torch.compile on the CPU.

    python benchmarks/bench_fused_activations.py            # a small Llama and a GPT-2 with tanh GeLU, bf16
    python benchmarks/bench_fused_activations.py --only llama

For each model, one training step on real CPU tensors, eager and then under torch.compile (Inductor; the first
compiled step compiles, the second is measured). "Kept" is every storage autograd saves for backward (a
saved-tensor hook on the forward pass: what eager autograd and AOTAutograd's compiled graph keep), parameters
excluded, plus the logits the output holds (without a KV cache: ``use_cache=False``, as mlfootprint feeds a
Hugging Face model in training); the prediction is the memory model's activations alive at the end of
the forward pass (``Profile.saved_vector``) from one fake trace, under ``--fusion none`` and ``--fusion compiled``.
The eager row is the baseline of the same run: its rule is the trace itself. Nothing here chose a factor: the
fused-chain rule (analysis/memory/fusion.py) was written from Megatron-LM's and Transformer Engine's kernels before
this was measured. Needs a C compiler (Inductor's CPU backend); figures vary little with the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
import transformers

from mlfootprint.analysis.memory.model import MemoryModel
from mlfootprint.models import resolve
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload

BATCH, SEQ = 4, 256
CONFIGS = {
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=256, hidden_size=256,
                  intermediate_size=704, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, tie_word_embeddings=False),
    # the tanh GeLU as Hugging Face writes it (NewGELUActivation: seven operators), no dropout (random masks)
    "gpt2-gelu-new": dict(architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=256, n_embd=256,
                          n_layer=2, n_head=4, n_positions=512, activation_function="gelu_new", resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0),
}


def measured_kept(model: torch.nn.Module, ids: torch.Tensor) -> int:
    """Bytes kept for backward by one training step of ``model`` (saved storages, parameters excluded, + logits)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=ids, labels=ids, use_cache=False)  # as mlfootprint traces a training step
    out.loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(saved.values()) + out.logits.untyped_storage().nbytes()


def predicted_kept(folder: str, fusion: str) -> tuple[int, int, int]:
    spec = resolve(folder, [], None)
    wl = Workload(seq=SEQ, batch=BATCH, mode="train", precision="bf16", optimizer="sgd", fusion=fusion)
    prof = MemoryModel(spec, wl, trace(spec, wl)).profile
    return int(sum(prof.saved_vector())), prof.fused_dropped, prof.fused_kept


def run(name: str, config: dict) -> None:
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "config.json"), "w") as fh:
        json.dump(config, fh)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config))
    model = model.to(torch.bfloat16)
    ids = torch.randint(0, config["vocab_size"], (BATCH, SEQ))
    eager = measured_kept(model, ids)
    compiled_model = torch.compile(model)
    start = time.perf_counter()
    measured_kept(compiled_model, ids)  # compiles
    compile_s = time.perf_counter() - start
    compiled = measured_kept(compiled_model, ids)
    p_eager, _, _ = predicted_kept(folder, "none")
    p_compiled, dropped, kept = predicted_kept(folder, "compiled")
    print(f"\n{name}: batch {BATCH}, seq {SEQ}, bf16, one training step (compiling took {compile_s:.0f} s)")
    print(f"  {'stack':<10} {'measured':>12} {'predicted':>12} {'error':>8}")
    for stack, m, p in (("eager", eager, p_eager), ("compiled", compiled, p_compiled)):
        print(f"  {stack:<10} {m / 1e6:>9.3f} MB {p / 1e6:>9.3f} MB {p / m - 1:>+8.1%}")
    print(f"  compiled / eager: measured {compiled / eager:.3f}, predicted {p_compiled / p_eager:.3f} "
          f"(the rule: {dropped / 1e6:.3f} MB of intermediates not kept, {kept / 1e6:.3f} MB of chain inputs kept)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(CONFIGS), default=None)
    args = ap.parse_args()
    for name, config in CONFIGS.items():
        if args.only in (None, name):
            run(name, config)


if __name__ == "__main__":
    main()
