"""An nn.Module instance given to the Python API takes its inputs from tensors or from inputs_ref."""
import pytest
import torch
from torch import nn

import mlfootprint as mf
from mlfootprint.core.errors import UserError


def _inputs_file(tmp_path, rows: int):
    path = tmp_path / "make_inputs.py"
    path.write_text(f"import torch\n\ndef inputs():\n    return torch.randn({rows}, 8)\n")
    return f"{path}:inputs"


def test_count_module_with_inputs_ref(tmp_path):
    # Linear(8 → 4) on the callable's (5, 8) input: 2·5·8·4 = 320 model FLOPs (a (3, 8) tensor would give 192)
    rep = mf.count(nn.Sequential(nn.Linear(8, 4)), mf.Workload(), inputs_ref=_inputs_file(tmp_path, 5))
    assert rep.sections["flops"]["forward"] == 320


def test_inputs_ref_applies_to_a_model_spec_too(tmp_path):
    from mlfootprint.verbs.common import resolve_model

    spec = resolve_model(nn.Sequential(nn.Linear(8, 4)), [torch.randn(3, 8)])
    rep = mf.count(spec, mf.Workload(), inputs_ref=_inputs_file(tmp_path, 7))
    assert rep.sections["flops"]["forward"] == 2 * 7 * 8 * 4


def test_tensors_and_inputs_ref_together_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not both"):
        mf.count(nn.Linear(8, 4), mf.Workload(), inputs=[torch.randn(3, 8)], inputs_ref=_inputs_file(tmp_path, 5))


def test_module_without_inputs_says_how_to_give_them():
    with pytest.raises(UserError, match="inputs_ref"):
        mf.count(nn.Linear(8, 4), mf.Workload())
