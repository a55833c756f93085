"""Resolve the MODEL argument: catalog name, config.json path, hub id or module:callable."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..core.datafiles import load_file
from ..core.errors import UserError
from . import catalog
from .facts import check_config, facts_from_config
from .factory import load_callable, looks_like_callable_ref
from .inputs import InputSpec, parse_input
from .spec import ModelSpec
from .hf import hub_config, json_floats, task_for

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_MODEL = "gpt2"


def resolve(model: str | None, inputs: Sequence[str] = (), inputs_ref: str | None = None) -> ModelSpec:
    if model is not None and not isinstance(model, str):
        raise UserError(f"a model is a name, a config path or module:callable (or an nn.Module), not "
                        f"{type(model).__name__}")
    name = DEFAULT_MODEL if model is None else model.strip()  # "" is a mistake, never the default
    if not name:
        raise UserError("empty model name; give a catalog name (see 'mlfootprint models list'), a config.json path or module:callable")
    input_specs: tuple[InputSpec, ...] = tuple(parse_input(s) for s in inputs)
    path = Path(name)
    is_factory = looks_like_callable_ref(name) and not path.exists()
    code_file, colon, _ = name.rpartition(":")
    if colon and not path.exists() and Path(code_file).is_file() and not code_file.endswith(".py"):
        # 'notes.txt:make': it is read as a file with a callable; the advice about --input was beside the point
        raise UserError(f"{code_file} is not a Python file: a model from code is path/to/file.py:callable or "
                        "package.module:callable")
    if (input_specs or inputs_ref) and not is_factory:
        raise UserError(f"--input and --inputs apply to a module:callable model; {name!r} makes its own inputs from "
                        "--batch and --seq: drop them")
    inputs_factory = load_callable(inputs_ref, "inputs callable") if inputs_ref else None

    if is_factory:
        factory = load_callable(name)
        module, _, attr = name.rpartition(":")
        # 'small_cnn:make' for 'examples/small_cnn.py:make', 'nets:resnet' for 'mypkg.nets:resnet'
        stem = Path(module).stem if module.endswith(".py") else module.rpartition(".")[2]
        return ModelSpec(name=f"{stem}:{attr}", source="factory", origin=name, factory=factory,
                         input_specs=input_specs, inputs_factory=inputs_factory)
    if path.exists():
        cfg_path = path / "config.json" if path.is_dir() else path
        if not cfg_path.is_file():
            raise UserError(f"folder {name!r} has no config.json; pass the config file itself or a folder holding one")
        cfg = json_floats(load_file(cfg_path))
        if not isinstance(cfg, dict) or "model_type" not in cfg:
            raise UserError(f"{cfg_path} is not a Hugging Face config (no 'model_type' key)")
        check_config(cfg, str(cfg_path))
        label = path.name if path.is_dir() else (path.parent.name or path.stem)
        return ModelSpec(name=label, source="hf-config", origin=str(cfg_path), task=task_for(cfg), hf_config=cfg,
                         facts=facts_from_config(cfg))
    entry = catalog.find(name)
    if entry is not None:
        cfg = entry["config"]
        check_config(cfg, f"catalog entry {entry['name']!r} ({entry['_origin']})")
        return ModelSpec(name=entry["name"], source="catalog", origin=entry["_origin"], task=entry.get("task") or "causal-lm",
                         hf_config=cfg, entry=entry, facts=facts_from_config(cfg))
    if _HUB_ID.match(name):
        cfg = hub_config(name)
        check_config(cfg, name)
        return ModelSpec(name=name, source="hf-hub", origin=name, task=task_for(cfg), hf_config=cfg,
                         facts=facts_from_config(cfg))
    catalog.get(name)  # raises the unknown-model error with suggestions
    raise AssertionError("unreachable")
