"""An option only a training step has, given without --mode, makes the workload a training one and says so."""
import json

import pytest

import mlfootprint as mf
from conftest import ROOT, run_cli

TINY = str(ROOT / "tests" / "data" / "configs" / "tiny-gpt2")


@pytest.mark.parametrize("options, implied", [
    (dict(optimizer="sgd"), ("optimizer",)),  # named at all: only a training step has an optimizer
    (dict(optimizer="adamw"), ("optimizer",)),  # even the default one, when the user names it
    (dict(zero=2), ("zero",)),
    (dict(recompute="full"), ("recompute",)),
    (dict(lora_rank=8), ("lora_rank",)),
    (dict(offload_activations="all"), ("offload_activations",)),
    (dict(grad_reduce="after-backward", zero=1), ("zero", "grad_reduce")),
    (dict(tp_backward="exposed"), ("tp_backward",)),
    # at their defaults these options say nothing about the mode
    (dict(zero=0), ()), (dict(recompute="none"), ()), (dict(grad_accum=1), ()), (dict(fp8_weights=False), ()),
    (dict(tp_backward="auto"), ()),
    (dict(batch=8, seq=128), ()),
])
def test_training_only_options_imply_training_unless_a_mode_is_given(options, implied):
    wl = mf.Workload(**options)
    assert wl.training_implied_by == implied
    assert wl.mode == ("train" if implied else "inference")
    assert "mode" not in wl.given  # still the default's, marked assumed in the report
    if not {"recompute", "offload_activations"} & set(implied):  # those two with a stated inference are an error
        stated = mf.Workload(mode="inference", **options)  # a mode the user gives wins
        assert stated.mode == "inference" and stated.training_implied_by == ()


def test_the_implied_mode_survives_a_verbs_default_and_a_copy():
    wl = mf.Workload(lora_rank=8)
    assert wl.with_defaults(mode="inference").mode == "train"
    assert wl.with_changes(batch=4).mode == "train" and wl.with_changes(batch=4).training_implied_by == ("lora_rank",)


def test_count_with_an_optimizer_and_no_mode_counts_a_training_step(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("count", TINY, "--seq", "32", "--optimizer", "sgd", "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    assert rep["workload"]["mode"] == "train" and "mode" in rep["workload"]["defaults"]
    # the step is a training one: the same FLOPs as a stated --mode train, backward twice the forward
    stated = run_cli("count", TINY, "--seq", "32", "--optimizer", "sgd", "--mode", "train", "--format", "json")
    assert stated.returncode == 0, stated.stderr
    flops = {k: v for k, v in rep["flops"].items() if k != "trace_s"}
    assert flops == {k: v for k, v in json.loads(stated.stdout)["flops"].items() if k != "trace_s"}
    assert rep["flops"]["backward"] == 2 * rep["flops"]["forward"] and rep["flops"]["optimizer"] > 0
    note = "mode train: implied by --optimizer, which only a training step has (no --mode given)"
    assert any(a.startswith(note) for a in rep["assumptions"]) and rep["key_assumptions"][0].startswith(note)
    assert not any(a.startswith("mode train: implied") for a in json.loads(stated.stdout)["assumptions"])


def test_a_lora_fine_tune_steps_over_a_fine_tuning_batch_not_a_pre_training_one():
    # Llama 2's supervised fine-tuning: 64 sequences a step (Touvron et al. 2023, section 3.1), where pre-training
    # steps over about 4M tokens (section 2.2): at seq 32 that was 131,072 sequences for a LoRA run of the tiny model
    from mlfootprint.analysis.predict.efficiency import efficiency_for
    from mlfootprint.hardware.catalog import get_device
    from mlfootprint.verbs.common import resolve_model
    from mlfootprint.verbs.runnable import planner_batch

    rep = mf.memory(TINY, mf.Workload(lora_rank=4, seq=32, hardware="a100-80gb"))  # training implied, no batch
    w = rep.sections["workload"]
    assert w["mode"] == "train" and w["batch"] == 64 and "batch" in w["defaults"]
    assert any(a.startswith("global batch 64 × 32 tokens: a fine-tuning batch of 64 samples (Touvron et al., Llama 2")
               for a in rep.assumptions)
    spec, eff = resolve_model(TINY, []), efficiency_for(get_device("a100-80gb"), None)
    # rounded up to a multiple of the devices, as the pre-training batch is; a batch given is the batch
    assert planner_batch(spec, mf.Workload(lora_rank=4, seq=32, devices=48), 48, eff)[0] == 96
    assert planner_batch(spec, mf.Workload(lora_rank=4, seq=32, devices=8), 8, eff)[0] == 64
    assert planner_batch(spec, mf.Workload(lora_rank=4, seq=32, batch=8), 1, eff)[0] == 8
    full = planner_batch(spec, mf.Workload(mode="train", seq=32, devices=8), 8, eff)[0]
    assert full == 4_194_304 // 32  # without LoRA: the pre-training batch of about 4M tokens
