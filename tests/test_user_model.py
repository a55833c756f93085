"""The user's model: its hooks are part of it (kept, named when one fails, off on request), a training trace
runs whatever the caller's grad mode, and a trace leaves the model and the process's global settings as found."""
from __future__ import annotations

import logging
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import mlfootprint as mf
from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from pathlib import Path

CONFIGS = Path(__file__).parent / "data" / "configs"
TINY_GPT2 = str(CONFIGS / "tiny-gpt2" / "config.json")
X = torch.randn(8, 32)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def flops(rep) -> tuple[int, int]:
    f = rep.sections["flops"]
    return f["forward"], f["other"]


def log_mean(module, args, output):  # a logging hook: reads a value, which a fake tensor does not have
    print("mean", output.mean().item())


# --------------------------------------------------------------------------- hooks


def test_a_pruning_mask_is_part_of_the_model() -> None:
    plain = mf.count(net(), inputs=[X])
    model = net()
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # a forward pre-hook: weight = weight_orig × mask
    pruned = mf.count(model, inputs=[X])
    # forward matmuls 2·8·(32·16 + 16·4) = 9,216 either way; the mask adds one multiply per weight, 32·16 = 512
    assert flops(plain) == (9216, flops(plain)[1]) and flops(pruned) == (9216, flops(plain)[1] + 512)
    without = mf.count(model, mf.Workload(user_hooks=False), inputs=[X])
    assert flops(without) == flops(plain)
    assert ("the model's own hooks were not run (--no-user-hooks): 1 hook(s), e.g. forward pre-hook "
            "'L1Unstructured' on module '0'; what they compute or change is not in these figures") in without.assumptions
    assert not any("hooks were not run" in a for a in pruned.assumptions)


def test_a_failing_forward_hook_is_named_with_the_way_out() -> None:
    model = net()
    model[2].register_forward_hook(log_mean)
    with pytest.raises(UserError) as err:
        mf.count(model, inputs=[X])
    assert str(err.value) == (
        "cannot trace the model: its forward hook 'log_mean' on module '2' failed on fake tensors "
        "(DataDependentOutputException: aten._local_scalar_dense.default); the model's own hooks run by default, as "
        "part of its computation (e.g. a pruning mask); if this one only logs or checks values, trace without the "
        "model's hooks: user_hooks=False")
    assert flops(mf.count(model, mf.Workload(user_hooks=False), inputs=[X])) == flops(mf.count(net(), inputs=[X]))


def test_one_hook_function_on_several_modules_names_the_one_that_failed() -> None:
    calls = []

    def check(module, args):
        calls.append(module)
        if len(calls) == 2:  # the second module it runs on reads a value
            args[0].sum().item()

    model = net()
    for m in model:
        m.register_forward_pre_hook(check)
    with pytest.raises(UserError, match=r"its forward pre-hook '.*check' on module '1' failed"):
        mf.count(model, inputs=[X])


@pytest.mark.parametrize("where,label", [
    ("module", "backward hook 'test_backward_and_gradient_hooks_are_named.<locals>.on_grad' on module '2'"),
    ("parameter", "gradient hook 'test_backward_and_gradient_hooks_are_named.<locals>.<lambda>' on parameter "
                  "'0.weight'"),
])
def test_backward_and_gradient_hooks_are_named(where: str, label: str) -> None:
    def on_grad(module, grad_in, grad_out):
        grad_out[0].abs().max().item()

    model = net()
    if where == "module":
        model[2].register_full_backward_hook(on_grad)
    else:
        model[0].weight.register_hook(lambda g: g.norm().item())
    with pytest.raises(UserError, match=f"its {label} failed on fake tensors"):
        mf.count(model, mf.Workload(mode="train"), inputs=[X])
    ok = mf.count(model, mf.Workload(mode="train", user_hooks=False), inputs=[X])
    assert ok.sections["flops"]["backward"] == mf.count(net(), mf.Workload(mode="train"),
                                                        inputs=[X]).sections["flops"]["backward"]


def test_the_cli_option(tmp_path, capsys) -> None:
    src = tmp_path / "hooked.py"
    src.write_text("import torch\n"
                   "def log(m, a, out):\n    print(out.mean().item())\n"
                   "def make():\n    net = torch.nn.Linear(32, 16)\n    net.register_forward_hook(log)\n"
                   "    return net\n", encoding="utf-8")
    assert main(["count", f"{src}:make", "--input", "8x32", "--format", "json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfootprint: error: cannot trace the model: its forward hook 'log' on the root module "
                          "(Linear) failed on fake tensors") and err.endswith("--no-user-hooks") and "\n" not in err
    assert main(["count", f"{src}:make", "--input", "8x32", "--format", "json", "--no-user-hooks"]) == 0
    assert '"forward": 8192' in capsys.readouterr().out  # 2·8·32·16


def test_the_users_model_and_its_hooks_are_untouched() -> None:
    model = net()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    model[2].register_forward_hook(log_mean)
    model[0].weight_orig.register_hook(lambda g: g)
    model.train(False)
    before_params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    before_hooks = [(m, OrderedDict(m._forward_pre_hooks), OrderedDict(m._forward_hooks)) for m in model.modules()]
    before_tensor_hooks = OrderedDict(model[0].weight_orig._backward_hooks)
    for wl in (mf.Workload(mode="train", user_hooks=False), mf.Workload(user_hooks=False)):
        mf.count(model, wl, inputs=[X])
    with pytest.raises(UserError):
        mf.count(model, inputs=[X])
    assert model.training is False and all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert before_params.keys() == after.keys()
    assert all(torch.equal(before_params[k], after[k]) and after[k].device.type == "cpu" for k in after)
    assert not any(isinstance(t, torch._subclasses.fake_tensor.FakeTensor) for t in after.values())
    for m, pre, post in before_hooks:
        assert list(m._forward_pre_hooks.items()) == list(pre.items())
        assert list(m._forward_hooks.items()) == list(post.items())
    assert list(model[0].weight_orig._backward_hooks.items()) == list(before_tensor_hooks.items())


# --------------------------------------------------------------------------- grad mode


@pytest.mark.parametrize("caller_mode", [torch.no_grad, torch.inference_mode])
def test_a_training_trace_under_the_callers_no_grad(caller_mode) -> None:
    wl = mf.Workload(mode="train", batch=2, seq=16)
    expected = mf.count(TINY_GPT2, wl).sections["flops"]
    with caller_mode():
        got = mf.count(TINY_GPT2, wl).sections["flops"]
        assert torch.is_grad_enabled() is False  # the caller's mode, as it was
    assert got["backward"] == expected["backward"] > 0 and got["optimizer"] == expected["optimizer"] > 0
    with torch.no_grad():
        small = mf.count(net(), mf.Workload(mode="train"), inputs=[X]).sections["flops"]
    # backward of the two Linears: weight grads 2·8·(32·16 + 16·4) = 9,216 and the input grad of the second
    # 2·8·16·4 = 1,024 (the first layer's input is data)
    assert small["backward"] == 9216 + 1024


# --------------------------------------------------------------------------- global state


def global_state() -> dict[str, object]:
    import transformers

    return {
        "transformers verbosity": transformers.logging.get_verbosity(),
        "transformers logger level": logging.getLogger("transformers").level,
        "default dtype": torch.get_default_dtype(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic warn only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "grad enabled": torch.is_grad_enabled(),
        "inference mode": torch.is_inference_mode_enabled(),
        "rng": torch.random.get_rng_state().clone(),
        "threads": torch.get_num_threads(),
    }


def same(a: dict[str, object], b: dict[str, object]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                        for k in a)


@pytest.mark.parametrize("verbosity", [logging.INFO, logging.WARNING])
def test_tracing_a_hugging_face_model_keeps_the_global_state(verbosity: int) -> None:
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity(verbosity)
    try:
        before = global_state()
        mf.count(TINY_GPT2, mf.Workload(mode="train", batch=2, seq=16))
        mf.memory(TINY_GPT2, mf.Workload(mode="generate", batch=1, seq=16, gen_tokens=8))
        after = global_state()
        assert [k for k in before if not same({k: before[k]}, {k: after[k]})] == []
        assert transformers.logging.get_verbosity() == verbosity
    finally:
        transformers.logging.set_verbosity(previous)


class Meddler(nn.Module):
    """A model whose forward changes torch's global settings, as some third-party code does."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        torch.set_default_dtype(torch.float64)
        torch.use_deterministic_algorithms(True, warn_only=True)
        logging.getLogger("transformers").setLevel(logging.DEBUG)
        return self.fc(x)


def test_a_model_that_changes_global_settings_leaves_them_as_found() -> None:
    model = Meddler()
    before = global_state()
    mf.count(model, mf.Workload(mode="train"), inputs=[X])
    after = global_state()
    assert [k for k in before if not same({k: before[k]}, {k: after[k]})] == []


def test_transformers_first_imported_by_the_trace_is_quiet_inside_and_at_its_default_after() -> None:
    import subprocess
    import sys

    code = ("import sys, mlfootprint as mf\n"
            "assert 'transformers' not in sys.modules\n"
            f"mf.count({TINY_GPT2!r}, mf.Workload(mode='train', batch=2, seq=16))\n"
            "import transformers\n"
            "print(transformers.logging.get_verbosity())\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(logging.WARNING)  # transformers' own default, as if imported by the user
    assert proc.stderr == ""  # its warnings while building and running the model stay inside the trace


# --------------------------------------------------------------------------- tied weights in a 16-bit build


class TiedLM(nn.Module):
    """An embedding, an LSTM and a head that shares the embedding's weight (a tied language model)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(64, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 64, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0])


def tied_lm() -> nn.Module:
    return TiedLM()


def test_a_factory_model_with_tied_weights_builds_in_16_bits() -> None:
    # Module.to(bf16) on fake tensors swaps each parameter in place and fails on a shared one; the build casts
    # each tensor once instead. Parameters: embedding 64·16 = 1,024 (the head shares it); LSTM 2·(64·16) + 2·64
    # = 2,176; 3,200 in all, 2 bytes each in bf16.
    rep = mf.memory(f"{__file__}:tied_lm", mf.Workload(mode="train", precision="bf16", batch=2),
                    inputs=["2x8:int64"], other_bytes=0)
    assert rep.sections["params"]["total"] == 3200
    assert rep.sections["memory"]["weights_bytes"] == 3200 * 2
