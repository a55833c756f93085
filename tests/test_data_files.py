"""Modelling constants are data: every value in the package's constants files has a source (and a date)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlfootprint.core.datafiles import SourcedConstants, load_file
from mlfootprint.core.errors import UserError

SRC = Path(__file__).resolve().parents[1] / "src" / "mlfootprint"
CONSTANT_FILES = sorted(p for p in SRC.rglob("data/*.toml")
                        if load_file(p).get("schema") in ("mlfootprint.constants/1", "mlfootprint.memory-methods/1"))


def test_the_constants_files_are_found():
    names = {p.name for p in CONSTANT_FILES}
    assert {"methods.toml", "tensor_parallel.toml", "step_model.toml", "transforms.toml", "architectures.toml",
            "defaults.toml"} <= names


@pytest.mark.parametrize("path", CONSTANT_FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_every_constant_has_a_value_a_source_and_a_date(path):
    for section, entries in load_file(path).items():
        if not isinstance(entries, dict):
            continue
        for key, entry in entries.items():
            assert {"value", "source", "date"} <= set(entry), f"[{section}].{key} in {path.name}"
            assert entry["source"].strip(), f"[{section}].{key} in {path.name} has an empty source"


def test_a_user_file_overrides_one_key(tmp_path, monkeypatch):
    user = tmp_path / "step_model"
    user.mkdir()
    (user / "mine.toml").write_text('[weights]\nreads_per_training_micro_batch = { value = 2.0, source = "my profile" }\n')
    monkeypatch.setenv("MLFOOTPRINT_STEP_MODEL_PATH", str(user))
    constants = SourcedConstants("analysis.predict", "step_model.toml", "step_model")
    assert constants.value("weights", "reads_per_training_micro_batch") == 2.0
    assert constants.value("weights", "reads_per_inference_pass") == 1.0  # the package's, untouched
    assert constants.source("weights", "reads_per_training_micro_batch") == "my profile"
    (user / "bad.toml").write_text('[weights]\nreads_per_inference_pass = 3\n')
    with pytest.raises(UserError, match="inline table with a 'value'"):
        SourcedConstants("analysis.predict", "step_model.toml", "step_model").value("weights", "reads_per_inference_pass")
