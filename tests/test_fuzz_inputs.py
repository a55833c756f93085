"""Bad input, every verb: one line on stderr, exit status 2, no traceback, nothing in the user's folder changed.

A table of over 500 bad command lines (malformed numbers, non-finite and absurd values, files in the wrong
encoding, too deeply nested or with wrong field types, broken claims and hardware files, models that cannot be
traced) is run through ``mlfootprint.cli.main`` in this process, with stdout and stderr captured at the file
descriptor level (so a log line torch or transformers writes through their own handlers is caught too). A few
subprocess runs check the same from outside. Tiny configs (tests/data/configs) keep the cases that trace quick.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import signal
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import CONFIGS

GPT2 = str(CONFIGS / "tiny-gpt2")
LLAMA = str(CONFIGS / "tiny-llama")
MIXTRAL = CONFIGS / "tiny-mixtral" / "config.json"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))  # binary data, no byte-order mark
BAD_INTS = ["0", "-1", "1.5", "abc", "", "1e400", "99999999999999999999", "nan", "inf"]
BAD_FLOATS = ["nan", "inf", "-inf", "-1", "1e400", "abc", ""]
BAD_FRACTIONS = ["nan", "inf", "-1", "0", "1.5", "abc"]  # options that are fractions in (0, 1]
BAD_SIZES = ["1e400", "-5GB", "abc", "", "nan", "inf", "5XB"]

FACTORIES = '''
import sys
import torch
from torch import nn


def linear():
    return nn.Linear(8, 4)


def exits():
    sys.exit(0)


def raises():
    raise RuntimeError("the user's factory failed")


def not_a_module():
    return 42


def frozen():
    m = nn.Linear(8, 4)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def no_params():
    return nn.ReLU()


def int_inputs():
    return torch.zeros(2, 8, dtype=torch.int64)


def inputs_raise():
    raise ValueError("no inputs today")
'''

_FULL_CLAIM = ('[[claim]]\nid = "mine"\ntitle = "t"\nsource = "s"\nurl = "https://example.org"\nkind = "model_states"\n'
               'expected = 31.4\nunit = "GB"\ntolerance_abs = 0.05\n'
               'inputs = { params = 7.5e9, dp = 64, zero = 1, precision = "fp16-mixed", optimizer = "adam" }\n')

CLAIMS_WRONG_TYPES = [
    '[[claim]]\nid = 5\n',
    '[[claim]]\nid = "x"\nkind = 5\n',
    '[[claim]]\nid = "x"\nkind = "mfu"\ninputs = "not a table"\n',
    '[[claim]]\nid = "x"\nkind = "mfu"\npublished = "fast"\n',
    '[[claim]]\nid = "x"\nkind = "mfu"\ntolerance = "small"\n',
    'claim = 5\n',
    'claim = ["a", "b"]\n',
    '[[claim]]\nid = "x"\nkind = "mfu"\ninputs = { params = "many", tokens_per_s = [1] }\npublished = 0.5\n',
    '[[claim]]\nid = "x"\nkind = "nonexistent-kind"\npublished = 0.5\n',
    '[[claim]]\nid = "x"\nkind = "mfu"\nurl = 3\ncitation = ["a"]\npublished = 0.5\n',
] + [
    # a complete claim (as papers/data/claims.toml writes them) with one field of the wrong type
    _FULL_CLAIM.replace(old, new) for old, new in (
        ('expected = 31.4', 'expected = "31.4"'), ('expected = 31.4', 'expected = [31.4]'),
        ('tolerance_abs = 0.05', 'tolerance_abs = "tight"'), ('tolerance_abs = 0.05', 'tolerance_abs = -1.0'),
        ('unit = "GB"', 'unit = 5'), ('title = "t"', 'title = { a = 1 }'), ('url = "https://example.org"', 'url = 3'),
        ('params = 7.5e9', 'params = "seven"'), ('params = 7.5e9', 'params = nan'), ('params = 7.5e9', 'params = inf'),
        ('dp = 64', 'dp = 0.5'), ('zero = 1', 'zero = "one"'), ('precision = "fp16-mixed"', 'precision = 16'),
        ('kind = "model_states"', 'kind = ["model_states"]'), ('inputs = {', 'inputs = 5\nx = {'),
        ('expected = 31.4', 'expected = nan'),
    )
]

HARDWARE_WRONG_TYPES = [
    '[[device]]\nid = 5\n',
    '[[device]]\nid = "mine"\nname = "Mine"\nmemory_bytes = "lots"\n',
    'device = "x"\n',
    '[[device]]\nid = "mine"\npeak_flops = { bf16 = "fast" }\n',
    '[device]\nid = []\n',
]


def _write_file(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _leaf_paths(data, prefix=()):
    """Every (path, value) of a report's sections, depth first."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield prefix + (k,), v
            yield from _leaf_paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data[:2]):
            yield prefix + (i,), v
            yield from _leaf_paths(v, prefix + (i,))


def _wrong_value(value):
    """A value of another JSON type than ``value``'s."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "12" if hash(str(value)) % 2 else [value]
    if isinstance(value, str):
        return 7
    if isinstance(value, list):
        return {"x": 1}
    if isinstance(value, dict):
        return ["not", "a", "table"]
    return {"x": None}  # null


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _wrong_type_reports(valid: dict, limit: int) -> list[tuple[str, dict]]:
    """Copies of a valid report with one field of the wrong JSON type, spread over its sections."""
    out = []
    # footprint.inputs.*.value holds text or a number by design (the schema's FootprintInput.value is free)
    paths = [p for p, _ in _leaf_paths({k: v for k, v in valid.items() if k not in ("schema",)})
             if p[:2] != ("footprint", "inputs")]
    step = max(1, len(paths) // limit)
    for path in paths[::step][:limit]:
        bad = copy.deepcopy(valid)
        node = bad
        for key in path[:-1]:
            node = node[key]
        original = node[path[-1]]
        _set(bad, path, _wrong_value(original))
        out.append((".".join(map(str, path)), bad))
    return out


def _nested(depth: int) -> str:
    return '{"schema": "mlfootprint.report/1", "verb": "count", "model": ' + "[" * depth + "]" * depth + "}"


N_WRONG = 40  # reports with one field of the wrong type


def build_scratch(scratch: Path, valid_report: dict | None) -> dict[str, Path]:
    """The files the cases name, all in ``scratch``; written only when ``valid_report`` is given (without it, the
    paths alone: the table of cases is made at collection, before the files exist)."""
    f: dict[str, Path] = {}
    if valid_report is None:
        def _write(path: Path, data: bytes | str) -> Path:  # noqa: F811 - paths only
            return path
        valid_report = {"schema": "mlfootprint.report/1", "model": {"name": "tiny-gpt2"}}
    else:
        _write = _write_file
    f["factories"] = _write(scratch / "factories.py", FACTORIES)
    f["good_report"] = _write(scratch / "good.json", json.dumps(valid_report))
    report_text = json.dumps(valid_report)
    f["report_latin1"] = _write(scratch / "latin1.json", report_text.replace('"tiny-gpt2"', '"tiny-gpt2-\u00e9"')
                                .encode("latin-1"))
    f["report_utf16"] = _write(scratch / "utf16.json", report_text.encode("utf-16"))
    f["report_binary"] = _write(scratch / "binary.json", bytes(range(256)) * 4)
    f["report_png"] = _write(scratch / "picture.json", PNG)
    f["report_nested"] = _write(scratch / "nested.json", _nested(100_000))
    f["report_nested_obj"] = _write(scratch / "nested_obj.json", '{"a":' * 50_000 + "1" + "}" * 50_000)
    f["report_array"] = _write(scratch / "array.json", "[1, 2, 3]")
    f["report_empty"] = _write(scratch / "empty.json", "")
    f["report_nan"] = _write(scratch / "nan.json", report_text.replace('"total": ', '"total": NaN, "x": ', 1))
    f["config_binary"] = _write(scratch / "binary_cfg" / "config.json", b"\x00\xff\xfe" + bytes(range(256)))
    f["config_utf16"] = _write(scratch / "utf16_cfg" / "config.json",
                               (CONFIGS / "tiny-gpt2" / "config.json").read_text().encode("utf-16"))
    f["config_latin1"] = _write(scratch / "latin1_cfg" / "config.json",
                                (CONFIGS / "tiny-gpt2" / "config.json").read_text()
                                .replace('"gpt2"', '"gpt2\u00e9"').encode("latin-1"))
    f["config_nested"] = _write(scratch / "nested_cfg" / "config.json", "[" * 100_000 + "]" * 100_000)
    f["config_array"] = _write(scratch / "array_cfg" / "config.json", "[1, 2]")
    gpt2_cfg = json.loads((CONFIGS / "tiny-gpt2" / "config.json").read_text())
    for name, change in {
        "layers_huge": {"n_layer": 100_000},
        "layers_10k": {"n_layer": 10_000},
        "layers_negative": {"n_layer": -1},
        "layers_text": {"n_layer": "many"},
        "width_zero": {"n_embd": 0},
        "vocab_zero": {"vocab_size": 0},
        "heads_float": {"n_head": 2.5},
        "unknown_type": {"model_type": "no-such-architecture", "architectures": ["NoSuchModel"]},
    }.items():
        f[f"cfg_{name}"] = _write(scratch / f"cfg_{name}" / "config.json", json.dumps({**gpt2_cfg, **change}))
    mixtral = json.loads(MIXTRAL.read_text())
    f["cfg_moe_zero"] = _write(scratch / "cfg_moe_zero" / "config.json",
                               json.dumps({**mixtral, "num_local_experts": 0}))
    f["cfg_empty_folder"] = scratch / "empty_folder"
    f["wrong_types"] = scratch / "wrong"
    if _write is _write_file:
        f["cfg_empty_folder"].mkdir(exist_ok=True)
        wrong = _wrong_type_reports(valid_report, N_WRONG)
        assert len(wrong) == N_WRONG
        for i, (_, bad) in enumerate(wrong):
            _write(f["wrong_types"] / f"{i:02d}.json", json.dumps(bad))
    for i, text in enumerate(CLAIMS_WRONG_TYPES):
        f[f"claims_{i}"] = _write(scratch / f"claims_{i}.toml", text)
    f["claims_binary"] = _write(scratch / "claims_binary.toml", PNG)
    f["claims_utf16_bomless"] = _write(scratch / "claims_utf16le.toml", CLAIMS_WRONG_TYPES[0].encode("utf-16-le"))
    f["claims_utf16"] = _write(scratch / "claims_utf16.toml", CLAIMS_WRONG_TYPES[0].encode("utf-16"))
    for i, text in enumerate(HARDWARE_WRONG_TYPES):
        f[f"hw_{i}"] = _write(scratch / f"hw_{i}" / "mine.toml", text)
    f["hw_binary"] = _write(scratch / "hw_binary" / "mine.toml", PNG)
    f["hw_latin1"] = _write(scratch / "hw_latin1" / "mine.toml", '[[devices]]\nid = "caf\u00e9"\n'.encode("latin-1"))
    f["hw_utf16"] = _write(scratch / "hw_utf16" / "mine.toml", '[[device]]\nid = "x"\n'.encode("utf-16"))
    f["text_file"] = _write(scratch / "notes.txt", "just some notes\n")
    f["db"] = scratch / "history.sqlite"
    return f


def _seed_history(db: Path, good: Path, wrong: list[Path]) -> None:
    """A history database with one good entry (id 1), then the wrong-typed reports written straight into its rows
    (ids 2.., as an older or foreign writer could leave them)."""
    from mlfootprint.report.history import History
    from mlfootprint.report.schema import Report

    hist = History(db)
    hist.add(Report.load(good), label="good")
    con = sqlite3.connect(db)
    (template,) = con.execute("SELECT report_json FROM entries ORDER BY id LIMIT 1").fetchone()
    columns = [r[1] for r in con.execute("PRAGMA table_info(entries)")]
    row = con.execute(f"SELECT {', '.join(columns)} FROM entries ORDER BY id LIMIT 1").fetchone()
    first = None
    for path in wrong:
        values = dict(zip(columns, row))
        values.pop("id", None)
        values["report_json"] = path.read_text()
        cur = con.execute(f"INSERT INTO entries ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                          list(values.values()))
        first = first or cur.lastrowid
    con.commit()
    con.close()
    assert template and first == 2


def build_cases(f: dict[str, Path]) -> list[tuple[str, list[str], dict]]:
    """(id, argv, extra environment) for every bad input."""
    cases: list[tuple[str, list[str], dict]] = []

    def add(case_id: str, argv: list[str], env: dict | None = None) -> None:
        cases.append((case_id, argv, env or {}))

    fac = str(f["factories"])
    # -- workload numbers, every verb that takes a workload ------------------------------------------------------
    int_options = ["--batch", "--seq", "--gen-tokens", "--micro-batch", "--grad-accum", "--lora-rank"]
    parallel_int = ["--zero", "--dp", "--tp", "--pp", "--ep", "--devices"]
    for verb in ("analyze", "count", "memory", "predict", "plan", "bench"):
        options = int_options + ([] if verb == "count" else parallel_int)
        for opt in options:
            for bad in BAD_INTS if opt != "--zero" else [b for b in BAD_INTS if b != "0"] + ["4"]:
                add(f"{verb}{opt}={bad}", [verb, GPT2, opt, bad])
        if verb != "count":
            for bad in BAD_FLOATS:
                add(f"{verb}--tokens={bad}", [verb, GPT2, "--tokens", bad])
    for verb in ("analyze", "memory", "predict", "plan"):
        for bad in BAD_SIZES:
            add(f"{verb}--device-memory={bad}", [verb, GPT2, "--device-memory", bad])
            add(f"{verb}--other-bytes={bad}", [verb, GPT2, "--other-bytes", bad])
        add(f"{verb}--device-memory=0", [verb, GPT2, "--device-memory", "0"])
    for verb in ("analyze", "predict"):
        for opt in ("--intensity", "--pue", "--wue", "--water-intensity", "--price-per-hour", "--price-per-kwh"):
            for bad in BAD_FLOATS:
                add(f"{verb}{opt}={bad}", [verb, GPT2, opt, bad])
        for bad in BAD_FRACTIONS:
            add(f"{verb}--utilization={bad}", [verb, GPT2, "--utilization", bad])
    for opt in ("--mfu", "--hfu", "--deadline-mfu"):
        for bad in BAD_FRACTIONS:
            add(f"predict{opt}={bad}", ["predict", GPT2, opt, bad])
    for bad in BAD_FLOATS:
        add(f"predict--flops-per-device={bad}", ["predict", GPT2, "--flops-per-device", bad])
    for bad in ("nan", "inf", "-1d", "0s", "abc", "1e400s"):
        add(f"predict--deadline={bad}", ["predict", GPT2, "--mode", "train", "--deadline", bad])
    for bad in ("0", "-1", "abc", "99999999999999999999"):
        add(f"plan--top={bad}", ["plan", GPT2, "--devices", "8", "--top", bad])
    for bad in ("abc", "mfu", "mfu=2", "mfu=nan", "mfu=-1", "=0.5", "nope=0.5"):
        add(f"predict--efficiency={bad}", ["predict", GPT2, "--efficiency", bad])
    # -- choices -----------------------------------------------------------------------------------------------------
    for opt in ("--mode", "--precision", "--optimizer", "--attention", "--recompute", "--quant", "--offload",
                "--hardware", "--fusion"):
        for bad in ("", "banana", "TRAIN"):
            add(f"analyze{opt}={bad!r}", ["analyze", GPT2, opt, bad])
    add("format-bad", ["count", GPT2, "--format", "xml"])
    # -- workloads that make no sense -------------------------------------------------------------------------------
    add("micro-batch>batch", ["memory", GPT2, "--batch", "2", "--micro-batch", "8"])
    add("micro-batch>batch-train", ["analyze", GPT2, "--mode", "train", "--batch", "4", "--micro-batch", "16"])
    # an accumulation the other options contradict was once echoed and ignored
    add("grad-accum-contradicts-devices", ["predict", GPT2, "--mode", "train", "--batch", "64", "--devices", "8",
                                           "--zero", "3", "--micro-batch", "1", "--grad-accum", "4", "--hardware",
                                           "h100-sxm"])
    add("grad-accum-contradicts-dp", ["memory", GPT2, "--mode", "train", "--batch", "64", "--dp", "8", "--micro-batch",
                                      "1", "--grad-accum", "4"])
    # -o's extension names a format the verb does not write: refused before any work (claims once wrote a
    # box-drawn table into cl.tex)
    add("o-extension-claims-latex", ["claims", "--only", "palm-540b-mfu", "-o", "cl.tex"])
    add("o-extension-table-html", ["table", "report.json", "-o", "t.html"])
    # --tokens is a training run's length: serving once got a "time to train" from its prefill rate
    add("tokens-generate", ["predict", GPT2, "--mode", "generate", "--tokens", "1e9", "--hardware", "a100-80gb"])
    add("tokens-inference-analyze", ["analyze", GPT2, "--tokens", "1e9"])
    # finite inputs whose product is not: the report once held Infinity, which report then refused to read
    add("footprint-overflow", ["footprint", "--device-hours", "10", "--hardware", "a100-80gb", "--pue", "1e308"])
    # generation of a model that does not generate: one forward pass was labelled "generate"
    add("generate-masked-lm", ["predict", "bert-base", "--mode", "generate", "--hardware", "a100-80gb"])
    add("generate-vision", ["memory", "vit-base-16", "--mode", "generate"])
    add("grad-accum-in-plan", ["plan", GPT2, "--batch", "64", "--devices", "8", "--grad-accum", "2", "--hardware",
                               "h100-sxm"])
    # amounts past any real run were accepted and printed 300-digit figures or 'YWh' (sweep, stop 40)
    add("tokens-huge", ["predict", GPT2, "--mode", "train", "--hardware", "h100-sxm", "--tokens", "1e30"])
    add("tokens-fraction", ["predict", GPT2, "--mode", "train", "--hardware", "h100-sxm", "--tokens", "1.5"])
    add("device-memory-huge", ["memory", GPT2, "--mode", "train", "--device-memory", "1e40"])
    add("device-memory-bytes", ["memory", GPT2, "--mode", "train", "--device-memory", "1.5"])
    add("device-hours-huge", ["footprint", "--device-hours", "1e300", "--hardware", "a100-80gb"])
    add("power-huge", ["footprint", "--device-hours", "100", "--hardware", "a100-80gb", "--power-w", "1e30"])
    add("wue-huge", ["footprint", "--device-hours", "100", "--hardware", "a100-80gb", "--wue", "1e300"])
    add("intensity-huge", ["footprint", "--device-hours", "100", "--hardware", "a100-80gb", "--intensity", "1e9"])
    add("bench-repeats-huge", ["bench", GPT2, "--repeats", "99999999999"])
    add("inferences-zero", ["footprint", "--energy-per-inference-j", "5", "--inferences", "0"])
    # a text file as the code of a model: the advice was to drop --input, then the model was 'unknown'
    add("callable-in-a-text-file", ["count", str(CONFIGS / "tiny-gpt2" / "config.json") + ":make", "--input", "2x3"])
    # options of another mode were shown in the workload and ignored (sweep, stop 40)
    add("recompute-inference", ["predict", GPT2, "--mode", "inference", "--hardware", "h100-sxm", "--recompute", "full"])
    add("grad-accum-inference", ["predict", GPT2, "--mode", "inference", "--hardware", "h100-sxm", "--batch", "2",
                                 "--grad-accum", "2"])
    add("gen-tokens-train", ["memory", GPT2, "--mode", "train", "--gen-tokens", "100"])
    add("lora-targets-without-rank", ["memory", GPT2, "--mode", "train", "--lora-targets", "c_attn"])
    add("lora-rank-huge", ["memory", GPT2, "--mode", "train", "--lora-rank", "100000"])
    add("lora-rank-huge-count", ["count", GPT2, "--mode", "train", "--lora-rank", "100000"])
    add("lora-targets-none-match", ["count", GPT2, "--mode", "train", "--lora-rank", "4", "--lora-targets", "zzz"])
    add("int4-train-no-lora", ["memory", GPT2, "--mode", "train", "--quant", "int4"])
    add("int4-train-no-lora-analyze", ["analyze", GPT2, "--mode", "train", "--quant", "int4"])
    add("seq>context", ["count", GPT2, "--seq", "100000"])
    add("zeropp-no-zero3", ["predict", GPT2, "--zeropp"])
    add("devices-not-divisible", ["plan", GPT2, "--devices", "7", "--tp", "2"])
    add("tp-not-dividing-heads", ["memory", GPT2, "--tp", "3", "--devices", "3"])
    add("pp>layers", ["memory", GPT2, "--pp", "8", "--devices", "8"])
    add("ep-no-experts", ["memory", GPT2, "--ep", "2", "--devices", "2"])
    # pipeline schedules and context parallelism (issue 12)
    for opt in ("--cp", "--vp"):
        for bad in ("0", "-1", "1.5", "abc"):
            add(f"predict{opt}={bad}", ["predict", GPT2, opt, bad])
    add("schedule-unknown", ["predict", GPT2, "--schedule", "gpipe"])
    add("cp-comm-unknown", ["predict", GPT2, "--cp-comm", "mesh"])
    add("vp-without-pp", ["predict", GPT2, "--mode", "train", "--vp", "2"])
    add("zero-bubble-with-vp", ["predict", GPT2, "--mode", "train", "--pp", "2", "--vp", "2", "--schedule", "zero-bubble"])
    add("pp-times-vp>layers", ["memory", GPT2, "--mode", "train", "--pp", "4", "--vp", "4", "--devices", "4"])
    add("cp-ring-seq-odd", ["memory", GPT2, "--mode", "train", "--seq", "100", "--cp", "4", "--devices", "4"])
    add("cp-all-to-all-heads", ["memory", GPT2, "--mode", "train", "--seq", "128", "--cp", "8", "--cp-comm",
                                "all-to-all", "--devices", "8"])
    add("cp-devices-not-divisible", ["plan", GPT2, "--devices", "6", "--cp", "4", "--hardware", "h100-sxm"])
    add("devices-1e23", ["predict", GPT2, "--devices", "1e23"])
    add("devices-huge", ["predict", GPT2, "--devices", "100000000000000000000000"])
    # -- MODEL --------------------------------------------------------------------------------------------------------
    bad_models = {
        "empty": "", "blank": "   ", "unknown": "no-such-model-xyz", "devnull": "/dev/null",
        "missing-file": str(f["text_file"].parent / "missing" / "config.json"),
        "text-file": str(f["text_file"]), "empty-folder": str(f["cfg_empty_folder"]),
        "binary-config": str(f["config_binary"]), "utf16-config": str(f["config_utf16"]),
        "latin1-config": str(f["config_latin1"]), "nested-config": str(f["config_nested"]),
        "array-config": str(f["config_array"]),
        "layers-100k": str(f["cfg_layers_huge"]), "layers-negative": str(f["cfg_layers_negative"]),
        "layers-text": str(f["cfg_layers_text"]), "width-zero": str(f["cfg_width_zero"]),
        "vocab-zero": str(f["cfg_vocab_zero"]), "heads-float": str(f["cfg_heads_float"]),
        "unknown-type": str(f["cfg_unknown_type"]), "moe-zero-experts": str(f["cfg_moe_zero"]),
        "factory-exits": f"{fac}:exits", "factory-raises": f"{fac}:raises",
        "factory-not-module": f"{fac}:not_a_module", "factory-missing": f"{fac}:nope",
        "factory-file-missing": "no_such_file.py:f", "factory-colon-only": ":", "module-missing": "no_such_mod:f",
    }
    for name, model in bad_models.items():
        for verb in ("count", "memory", "analyze", "bench"):
            argv = [verb, model] + (["--input", "2x8"] if ":" in model else [])
            add(f"{verb}-model-{name}", argv)
    add("train-layers-10k", ["count", str(f["cfg_layers_10k"]), "--mode", "train"])
    add("factory-frozen-train", ["count", f"{fac}:frozen", "--input", "2x8", "--mode", "train"])
    add("factory-noparams-train", ["memory", f"{fac}:no_params", "--input", "2x8", "--mode", "train"])
    add("int64-into-linear", ["count", f"{fac}:linear", "--input", "2x8:int64"])
    add("int64-inputs-into-linear", ["count", f"{fac}:linear", "--inputs", f"{fac}:int_inputs"])
    add("inputs-raise", ["count", f"{fac}:linear", "--inputs", f"{fac}:inputs_raise"])
    add("shape-mismatch", ["count", f"{fac}:linear", "--input", "2x7"])
    add("shape-mismatch-train", ["count", f"{fac}:linear", "--input", "2x7", "--mode", "train"])
    for bad in ("99999999999999999999x8", "0x8", "-1x8", "axb", "2x8:nodtype", "", "x", "2xx8", "2x8:",
                "1e3x8", "2x8:int64:int64", "100000x100000x100000"):
        add(f"input={bad!r}", ["count", f"{fac}:linear", "--input", bad])
    add("input-without-factory", ["count", GPT2, "--input", "2x8"])
    add("factory-without-input", ["count", f"{fac}:linear"])
    # -- mfu ----------------------------------------------------------------------------------------------------------
    base = ["mfu", "--params", "1e9", "--tokens-per-s", "1000", "--peak-flops", "1e15"]
    for opt in ("--params", "--tokens-per-s", "--peak-flops", "--flops-per-token", "--step-s"):
        for bad in BAD_FLOATS + ["0"]:
            argv = [a for a in base]
            if opt in argv:
                argv[argv.index(opt) + 1] = bad
            else:
                argv += [opt, bad] + (["--batch", "8", "--seq", "128"] if opt == "--step-s" else [])
                if opt == "--step-s":
                    i = argv.index("--tokens-per-s")
                    del argv[i:i + 2]
            add(f"mfu{opt}={bad}", argv)
    for opt in ("--devices", "--layers", "--heads", "--head-dim", "--batch", "--seq"):
        for bad in ("0", "-1", "abc", "1e23", "99999999999999999999"):
            add(f"mfu{opt}={bad}", base + [opt, bad])
    add("mfu-nothing", ["mfu"])
    add("mfu-no-throughput", ["mfu", "--params", "1e9", "--peak-flops", "1e15"])
    add("mfu-precision", base + ["--precision", "fp64"])
    add("mfu-over-1", ["mfu", "--params", "1e12", "--tokens-per-s", "1e9", "--peak-flops", "1e12"])
    # -- footprint ----------------------------------------------------------------------------------------------------
    for opt in ("--device-hours", "--hours", "--power-w", "--energy-kwh", "--inferences", "--energy-per-inference-j",
                "--params", "--lifespan-years", "--embodied-kg"):
        for bad in BAD_FLOATS:
            add(f"footprint{opt}={bad}", ["footprint", "--hardware", "a100-80gb", opt, bad])
    for bad in BAD_FRACTIONS:
        add(f"footprint--lifetime-utilization={bad}", ["footprint", "--device-hours", "10", "--lifetime-utilization", bad])
        add(f"footprint--utilization={bad}", ["footprint", "--device-hours", "10", "--hardware", "a100-80gb",
                                              "--utilization", bad])
    for bad in ("0", "-1", "1e23", "abc"):
        add(f"footprint--devices={bad}", ["footprint", "--hours", "10", "--hardware", "a100-80gb", "--devices", bad])
    for bad in ("", "mars", "aws:nowhere", "egrid:zzz"):
        add(f"footprint--region={bad!r}", ["footprint", "--device-hours", "10", "--hardware", "a100-80gb",
                                           "--region", bad])
    add("footprint--facility", ["footprint", "--device-hours", "10", "--hardware", "a100-80gb", "--facility", "cave"])
    add("footprint-nothing", ["footprint"])
    add("footprint-pue<1", ["footprint", "--device-hours", "10", "--hardware", "a100-80gb", "--pue", "0.5"])
    # -- hardware, models ---------------------------------------------------------------------------------------------
    for bad in ("", "no-such-gpu", "../etc/passwd", "\x00"):
        add(f"hardware-show={bad!r}", ["hardware", "show", bad])
        add(f"models-show={bad!r}", ["models", "show", bad])
    for bad in BAD_FLOATS + ["0"]:
        add(f"hardware-calibrate--budget-s={bad}", ["hardware", "calibrate", "--budget-s", bad, "--no-save"])
    add("hardware-calibrate--device", ["hardware", "calibrate", "--device", "cuda:7", "--no-save"])
    add("hardware-calibrate--device-banana", ["hardware", "calibrate", "--device", "banana", "--no-save"])
    hw_files = [k for k in f if k.startswith("hw_")]
    for key in hw_files:
        env = {"MLFOOTPRINT_HARDWARE_PATH": str(f[key].parent)}
        add(f"hardware-list-{key}", ["hardware", "list"], env)
        add(f"hardware-show-{key}", ["hardware", "show", "a100-80gb"], env)
        add(f"memory-{key}", ["memory", GPT2, "--hardware", "a100-80gb"], env)
    add("models-list-bad", ["models", "list", "--nope"])
    # -- claims -------------------------------------------------------------------------------------------------------
    claim_files = [k for k in f if k.startswith("claims_")]
    for key in claim_files:
        # --only mine: the user's claim alone (the package's 40-odd claims would take minutes); a file refused at
        # parse time never gets that far
        add(f"claims-file-{key}", ["claims", "--file", str(f[key]), "--only", "mine"])
        if key.startswith("claims_") and key[7:].isdigit() and int(key[7:]) < 10:
            add(f"claims-check-{key}", ["claims", "--check", "--file", str(f[key])])
    add("claims-only-unknown", ["claims", "--only", "no-such-claim"])
    add("claims-only-empty", ["claims", "--only", ""])
    add("claims-file-missing", ["claims", "--file", str(f["text_file"].parent / "missing.toml")])
    add("claims-file-folder", ["claims", "--file", str(f["cfg_empty_folder"])])
    # -- reports: report, compare, table, history add ------------------------------------------------------------------
    bad_reports = {
        "latin1": f["report_latin1"], "utf16": f["report_utf16"], "binary": f["report_binary"], "png": f["report_png"],
        "nested": f["report_nested"], "nested-obj": f["report_nested_obj"], "array": f["report_array"],
        "empty": f["report_empty"], "nan": f["report_nan"], "text": f["text_file"],
        "missing": f["text_file"].parent / "missing.json", "folder": f["cfg_empty_folder"],
        "config": CONFIGS / "tiny-gpt2" / "config.json",
    }
    for i in range(N_WRONG):
        bad_reports[f"wrong-type-{i:02d}"] = f["wrong_types"] / f"{i:02d}.json"
    good = str(f["good_report"])
    for name, path in bad_reports.items():
        add(f"report-{name}", ["report", str(path)])
        add(f"compare-{name}", ["compare", good, str(path)])
        add(f"table-{name}", ["table", good, str(path)])
        add(f"history-add-{name}", ["history", "add", str(path), "--db", str(f["db"])])
    add("report--warmup-steps", ["report", good, "--warmup-steps", "-1"])
    add("report--depth", ["report", good, "--depth", "-5"])
    for bad in ("acc", "acc=", "=1", "acc=inf", "acc=abc"):
        add(f"compare--metric={bad!r}", ["compare", good, good, "--metric", bad, "--metric", "acc=2"])
    add("compare--x-unknown", ["compare", good, good, "--x", "no.such.figure"])
    add("table--columns-unknown", ["table", good, "--columns", "nope"])
    # -- history -------------------------------------------------------------------------------------------------------
    db = ["--db", str(f["db"])]
    for bad in ("99999999999999999999999", "-1", "0", "abc", "", "1.5", "99999", "#", "1e3"):
        add(f"history-show={bad!r}", ["history", "show", bad] + db)
        add(f"history-diff={bad!r}", ["history", "diff", "1", bad] + db)
    for i in range(N_WRONG):  # entry 1 is the good report, entries 2.. the wrong-typed ones (_seed_history)
        add(f"history-show-wrong-type-{i:02d}", ["history", "show", str(2 + i)] + db)
        add(f"history-diff-wrong-type-{i:02d}", ["history", "diff", "1", str(2 + i)] + db)
    for bad in ("0", "-1", "abc", "99999999999999999999"):
        add(f"history-list--limit={bad}", ["history", "list", "--limit", bad] + db)
    for bad in ("yesterday-ish", "2024-13-45", ""):
        add(f"history-list--since={bad!r}", ["history", "list", "--since", bad] + db)
    add("history-db-text-file", ["history", "list", "--db", str(f["text_file"])])
    add("history-db-folder", ["history", "list", "--db", str(f["cfg_empty_folder"])])
    add("history-db-binary", ["history", "list", "--db", str(f["report_binary"])])
    # -- output files ---------------------------------------------------------------------------------------------------
    add("output-foreign-file", ["report", good, "-o", str(f["text_file"])])
    add("output-folder", ["report", good, "-o", str(f["cfg_empty_folder"])])
    add("output-missing-folder", ["report", good, "-o", str(f["text_file"].parent / "nope" / "x.json")])
    add("unknown-verb", ["frobnicate"])
    add("unknown-option", ["count", GPT2, "--frobnicate"])
    return cases


# -- running the table ----------------------------------------------------------------------------------------------

SCRATCH = Path("/SCRATCH-PLACEHOLDER")
CASES = build_cases(build_scratch(SCRATCH, None))


def _in_scratch(text: str, scratch: Path) -> str:
    return text.replace(str(SCRATCH), str(scratch))


class _TooLong(Exception):
    pass


@contextmanager
def _time_limit(seconds: int):
    def alarm(signum, frame):
        raise _TooLong(f"still working after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(folder)) + "/"] = ""
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    from mlfootprint.cli import main

    root = tmp_path_factory.mktemp("fuzz")
    made = root / "made.json"
    rc = main(["analyze", GPT2, "--mode", "train", "--hardware", "a100-80gb", "--seq", "32", "--batch", "2",
               "--format", "json", "-o", str(made)])
    assert rc == 0
    valid = json.loads(made.read_text())
    made.unlink()
    files = build_scratch(root, valid)
    _seed_history(files["db"], files["good_report"], [files["wrong_types"] / f"{i:02d}.json" for i in range(N_WRONG)])
    return root


def test_the_table_is_large_and_covers_every_verb():
    verbs = {argv[0] for _, argv, _ in CASES if argv}
    assert {"analyze", "count", "memory", "predict", "plan", "mfu", "bench", "footprint", "hardware", "models",
            "claims", "compare", "table", "report", "history"} <= verbs
    assert len(CASES) >= 500
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id,argv,env", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clean_line(case_id, argv, env, scratch, capfd, monkeypatch):
    from mlfootprint.cli import main

    monkeypatch.chdir(scratch)
    for key, value in env.items():
        monkeypatch.setenv(key, _in_scratch(value, scratch))
    argv = [_in_scratch(a, scratch) for a in argv]
    before = _snapshot(scratch)
    capfd.readouterr()
    with _time_limit(120):  # a bad input must be refused, never worked on for minutes
        rc = main(argv)
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert rc == 2, f"exit {rc}; stderr: {err[-2000:]!r}; stdout: {out[-500:]!r}"
    assert len(lines) == 1 and lines[0].startswith("mlfootprint: error: "), err[-3000:]
    assert "Traceback" not in err and "Traceback" not in out
    assert _snapshot(scratch) == before


# -- from outside: nothing torch or transformers log reaches stderr --------------------------------------------------

@pytest.mark.parametrize("what,argv", [
    ("shape mismatch on fake tensors", ["count", "{fac}:linear", "--input", "2x7", "--mode", "train"]),
    ("int64 into a Linear layer", ["count", "{fac}:linear", "--input", "2x8:int64"]),
    ("an MoE config with 0 experts", ["memory", "{moe}"]),
    ("a UTF-16 config.json", ["analyze", "{utf16}"]),
])
def test_no_log_lines_leak_to_stderr(what, argv, tmp_path):
    from conftest import run_cli

    _write_file(tmp_path / "factories.py", FACTORIES)
    mixtral = json.loads(MIXTRAL.read_text())
    _write_file(tmp_path / "moe" / "config.json", json.dumps({**mixtral, "num_local_experts": 0}))
    _write_file(tmp_path / "utf16" / "config.json", (CONFIGS / "tiny-gpt2" / "config.json").read_text().encode("utf-16"))
    names = {"fac": str(tmp_path / "factories.py"), "moe": str(tmp_path / "moe"), "utf16": str(tmp_path / "utf16")}
    result = run_cli(*[a.format(**names) for a in argv], cwd=str(tmp_path), isolated=True)  # the real stderr
    assert result.returncode == 2, (what, result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mlfootprint: error: "), result.stderr[-3000:]
    assert result.stdout == ""


# -- the shared validators, by value -------------------------------------------------------------------------------

def test_text_files_utf8_with_or_without_bom_and_nothing_else():
    from mlfootprint.core.errors import UserError
    from mlfootprint.core.validate import decode_text

    assert decode_text("caf\u00e9".encode("utf-8"), "f") == "caf\u00e9"
    assert decode_text(b"\xef\xbb\xbf{}", "f") == "{}"  # a UTF-8 byte-order mark is dropped
    with pytest.raises(UserError, match="report r.json is UTF-16 text"):
        decode_text("{}".encode("utf-16"), "report r.json")
    # 'x\n{\xe9': the Latin-1 e-acute is byte 0xe9 on line 2, offset 3
    with pytest.raises(UserError, match=r"byte 0xe9 on line 2 \(offset 3\) is not valid UTF-8 \(Latin-1"):
        decode_text(b"x\n{\xe9", "f")
    with pytest.raises(UserError, match="NUL byte at offset 2"):
        decode_text(b"ab\x00c", "f")


def test_json_depth_and_constants():
    from mlfootprint.core.errors import UserError
    from mlfootprint.core.validate import json_depth, parse_json

    assert json_depth(1) == 0
    assert json_depth({"a": [1, {"b": []}]}) == 4  # object > list > object > list
    assert json_depth(parse_json("[" * 200 + "]" * 200, "f")) == 200  # the limit itself is allowed
    with pytest.raises(UserError, match="more than 200 levels"):
        parse_json("[" * 201 + "]" * 201, "f")
    with pytest.raises(UserError, match="more than 200 levels"):
        parse_json("[" * 100_000 + "]" * 100_000, "f")  # json's own RecursionError, caught
    with pytest.raises(UserError, match="holds NaN, which is not a JSON number"):
        parse_json('{"x": NaN}', "f")


def test_numbers_are_finite_and_in_range():
    from mlfootprint.core.errors import UserError
    from mlfootprint.core.validate import number, whole

    assert number("--pue", 1.2, low=1, low_inclusive=True) == 1.2
    assert number("--x", None) is None
    for bad, message in ((float("nan"), "finite"), (float("inf"), "finite"), (-1.0, "positive"), (0, "positive"),
                         ("3", "must be a number"), (True, "must be a number"), (10**400, "beyond")):
        with pytest.raises(UserError, match=message):
            number("--x", bad)
    with pytest.raises(UserError, match="at most 1, got 1.5"):
        number("--mfu", 1.5, high=1)
    assert whole("--n", 3.0) == 3
    with pytest.raises(UserError, match="beyond any real workload"):
        whole("--n", 1 << 41)


def test_a_report_field_of_the_wrong_type_is_named():
    from mlfootprint.core.errors import UserError
    from mlfootprint.report.schema import Report

    base = {"schema": "mlfootprint.report/1", "tool": "mlfootprint 0.1.0", "verb": "count",
            "params": {"total": 10}, "provenance": {}, "assumptions": []}
    assert Report.from_dict(base).sections["params"]["total"] == 10
    for key, value, where in (("params", {"total": "ten"}, "params.total: expected a number, got 'ten'"),
                              ("workload", {"batch": 2, "dp": [1]}, "workload.dp: expected a number, got a list"),
                              ("flops", {"by_module": {"name": 7}}, "flops.by_module.name: expected text, got 7"),
                              ("assumptions", "none", "assumptions: expected a list, got 'none'")):
        with pytest.raises(UserError, match=re.escape(where)):
            Report.from_dict({**base, key: value})


def test_a_config_beyond_the_layer_limit_is_refused_before_building(tmp_path):
    from mlfootprint.core.errors import UserError
    from mlfootprint.models.source import resolve

    cfg = json.loads((CONFIGS / "tiny-gpt2" / "config.json").read_text())
    _write_file(tmp_path / "deep" / "config.json", json.dumps({**cfg, "n_layer": 100_000}))
    with pytest.raises(UserError, match="has 100,000 layers, more than the 512 mlfootprint traces"):
        resolve(str(tmp_path / "deep"))
    _write_file(tmp_path / "ok" / "config.json", json.dumps({**cfg, "n_layer": 512}))
    assert resolve(str(tmp_path / "ok")).facts["layers"] == 512
    # a size past a C long: PyTorch's error carried its C++ source line and stack frames into the one line
    _write_file(tmp_path / "huge" / "config.json", json.dumps({**cfg, "n_positions": 10**30}))
    with pytest.raises(UserError) as err:
        __import__("mlfootprint").count(str(tmp_path / "huge"))
    assert "Exception raised from" not in str(err.value) and "frame #" not in str(err.value)
    assert str(err.value).startswith("cannot build 'huge': ")
    # A config saved with a UTF-8 byte-order mark (Windows editors) reads as any other.
    _write_file(tmp_path / "bom" / "config.json", b"\xef\xbb\xbf" + json.dumps(cfg).encode())
    assert resolve(str(tmp_path / "bom")).facts["layers"] == 2


# -- the Python API: the same checks, a UserError in Python's terms -------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda mf: mf.count(""), "empty model name"),
    (lambda mf: mf.count(5), "not int"),
    (lambda mf: mf.mfu(params=float("nan"), layers=2, heads=2, head_dim=2, seq=8, tokens_per_s=1.0, peak_flops=1e12),
     "params must be a finite number"),
    (lambda mf: mf.mfu(flops_per_token=1e9, tokens_per_s=float("inf"), peak_flops=1e12), "finite"),
    (lambda mf: mf.mfu(flops_per_token=1e9, tokens_per_s=1.0, peak_flops=1e12, devices=10**23), "beyond any real"),
    (lambda mf: mf.predict(GPT2, flops_per_device=float("nan")), "finite"),
    (lambda mf: mf.memory(GPT2, mf.Workload(batch=2, micro_batch=8)), "micro_batch=8"),
    (lambda mf: mf.memory(GPT2, mf.Workload(mode="train", quant="int4")), "lora_rank"),
    (lambda mf: mf.memory(GPT2, mf.Workload(hardware="")), "hardware must be a device id"),
    (lambda mf: mf.history_show(2), "no history entry 2"),
], ids=["count-empty", "count-int", "mfu-nan-params", "mfu-inf-throughput", "mfu-devices-1e23",
        "predict-nan-flops", "micro-batch", "int4-train", "hardware-empty", "history-empty-db"])
def test_the_api_refuses_the_same_inputs(call, message, tmp_path, monkeypatch):
    import mlfootprint as mf
    from mlfootprint.core.errors import UserError

    monkeypatch.setenv("MLFOOTPRINT_HISTORY", str(tmp_path / "h.sqlite"))
    with pytest.raises(UserError, match=re.escape(message)):
        call(mf)


def test_a_report_without_any_section_is_refused(tmp_path):
    # '{"schema": ..., "verb": "analyze"}' rendered as an empty card and compared as a column of blanks, exit 0
    from conftest import run_cli

    partial = tmp_path / "partial.json"
    partial.write_text('{"schema": "mlfootprint.report/1", "verb": "analyze"}')
    for argv in (["report", str(partial)], ["compare", str(partial), str(partial)]):
        out = run_cli(*argv)
        assert out.returncode == 2 and "holds no section of figures" in out.stderr, (argv, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
