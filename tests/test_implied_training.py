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
    # at their defaults these options say nothing about the mode
    (dict(zero=0), ()), (dict(recompute="none"), ()), (dict(grad_accum=1), ()), (dict(fp8_weights=False), ()),
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
