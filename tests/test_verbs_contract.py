"""Every verb, two ways: ``mf.<verb>(...)`` and ``mlfootprint <verb>`` give the same report for the same inputs,
and every report validates against the JSON Schema shipped in the package (generated from the sections).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

import mlfootprint as mf
from mlfootprint.cli import main
from mlfootprint.trace.cache import CACHED_NOTE
from mlfootprint.report.jsonschema import build_schema, render_schema, schema_path, shipped_schema

CONFIGS = Path(__file__).parent / "data" / "configs"
GPT2 = str(CONFIGS / "tiny-gpt2")
LLAMA = str(CONFIGS / "tiny-llama")
HERE = Path(__file__).resolve()
PALM = dict(params=540.35e9, layers=118, heads=48, head_dim=256, seq=2048)

# Figures of this run rather than of the inputs.
_VOLATILE = {"tool", "trace_s", "plan_s", "created_at", "added_at"}


def small_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))


def _scrub(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _scrub(v) for k, v in node.items() if k not in _VOLATILE}
    if isinstance(node, list):
        # the second door may read the trace the first one cached: the report says so, its figures are the same
        return [_scrub(v) for v in node if not (isinstance(v, str) and v.startswith(CACHED_NOTE))]
    return node


def _cli(argv: list[str], tmp_path: Path, capsys) -> dict[str, Any]:
    out = tmp_path / "cli.json"
    code = main(argv + ["--format", "json", "-o", str(out), "--force"])
    assert code == 0, capsys.readouterr().err
    return json.loads(out.read_text())


# (name, command line, the same call in Python)
CASES: list[tuple[str, list[str], Any]] = [
    ("analyze", ["analyze", GPT2, "--seq", "32"], lambda: mf.analyze(GPT2, mf.Workload(seq=32))),
    ("count", ["count", GPT2, "--seq", "32", "--mode", "train", "--macs"],
     lambda: mf.count(GPT2, mf.Workload(seq=32, mode="train"), macs=True)),
    ("memory", ["memory", LLAMA, "--mode", "train", "--seq", "32", "--batch", "4", "--device-memory", "2GB",
                "--max-batch", "--other-bytes", "0"],
     lambda: mf.memory(LLAMA, mf.Workload(mode="train", seq=32, batch=4), device_memory="2GB", max_batch=True,
                       other_bytes=0)),
    ("predict", ["predict", GPT2, "--seq", "32", "--batch", "8", "--hardware", "a100-80gb", "--tokens", "1e9"],
     lambda: mf.predict(GPT2, mf.Workload(seq=32, batch=8, hardware="a100-80gb", tokens=1e9))),
    # tiny-gpt2 has 128 learned positions: a 32-token prompt leaves room for 96 generated tokens
    ("predict-serving", ["predict", GPT2, "--mode", "generate", "--seq", "32", "--gen-tokens", "64", "--hardware",
                         "h100-sxm"],
     lambda: mf.predict(GPT2, mf.Workload(mode="generate", seq=32, gen_tokens=64, hardware="h100-sxm"))),
    ("plan", ["plan", LLAMA, "--devices", "8", "--hardware", "a100-80gb", "--seq", "64", "--batch", "64"],
     lambda: mf.plan(LLAMA, mf.Workload(devices=8, hardware="a100-80gb", seq=64, batch=64))),
    ("mfu", ["mfu", "--params", "540.35e9", "--layers", "118", "--heads", "48", "--head-dim", "256", "--seq", "2048",
             "--tokens-per-s", "238.3e3", "--devices", "6144", "--hardware", "tpu-v4"],
     lambda: mf.mfu(**PALM, tokens_per_s=238.3e3, devices=6144, hardware="tpu-v4")),
    ("footprint", ["footprint", "--device-hours", "10", "--hardware", "a100-80gb", "--region", "de"],
     lambda: mf.footprint(device_hours=10, hardware="a100-80gb", region="de")),
    ("models-list", ["models", "list"], lambda: mf.models_list()),
    ("models-show", ["models", "show", "gpt2"], lambda: mf.models_show("gpt2")),
    ("hardware-list", ["hardware", "list"], lambda: mf.hardware_list()),
    ("hardware-show", ["hardware", "show", "h100-sxm"], lambda: mf.hardware_show("h100-sxm")),
    ("claims", ["claims", "--only", "palm-540b-mfu", "--only", "zero-stage1"],
     lambda: mf.claims(only=["palm-540b-mfu", "zero-stage1"])),
]

# Every verb that traces takes --no-cache and cache=False (default: the persistent trace cache is used).
TRACING = {"analyze": mf.analyze, "count": mf.count, "memory": mf.memory, "predict": mf.predict, "plan": mf.plan,
           "mfu": mf.mfu, "bench": mf.bench, "models show": mf.models_show, "claims": mf.claims}


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(shipped_schema())


def _valid(validator, report: dict[str, Any]) -> None:
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:10])


@pytest.mark.parametrize("name,argv,call", CASES, ids=[c[0] for c in CASES])
def test_api_and_cli_give_the_same_valid_report(name, argv, call, tmp_path, capsys, validator):
    from_cli = _cli(argv, tmp_path, capsys)
    from_api = json.loads(call().to_json())
    _valid(validator, from_cli)
    assert _scrub(from_api) == _scrub(from_cli)


def test_no_cache_both_ways(tmp_path, capsys):
    import inspect

    from mlfootprint.cli import build_parser

    parser = build_parser()
    for verb, api in TRACING.items():
        assert inspect.signature(api).parameters["cache"].default is True, verb
        args = parser.parse_args(verb.split() + (["x"] if verb == "models show" else []))
        assert args.cache is True, verb
        assert parser.parse_args(verb.split() + (["x"] if verb == "models show" else []) + ["--no-cache"]).cache is False
    argv = ["count", LLAMA, "--seq", "16", "--mode", "train", "--no-cache"]
    from_cli = _cli(argv, tmp_path, capsys)
    assert not list(Path(os.environ["MLFOOTPRINT_CACHE_DIR"]).rglob("*.trace"))  # --no-cache stored nothing
    from_api = json.loads(mf.count(LLAMA, mf.Workload(seq=16, mode="train"), cache=False).to_json())
    assert from_api["assumptions"] == from_cli["assumptions"]  # neither read a cached trace
    assert _scrub(from_api) == _scrub(from_cli)


def test_files_and_history_verbs(tmp_path, capsys, validator):
    # compare, report and history take saved reports: the same files through both doors
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(mf.count(GPT2, mf.Workload(seq=16)).to_json())
    b.write_text(mf.count(GPT2, mf.Workload(seq=32)).to_json())
    for argv, call in (
        (["compare", str(a), str(b)], lambda: mf.compare([str(a), str(b)])),
        (["report", str(a)], lambda: mf.load_report(str(a))),
        (["table", str(a), str(b)], lambda: mf.table([str(a), str(b)])),
    ):
        got = _cli(argv, tmp_path, capsys)
        _valid(validator, got)
        assert _scrub(json.loads(call().to_json())) == _scrub(got)
    cli_db, api_db = str(tmp_path / "cli.sqlite"), str(tmp_path / "api.sqlite")
    for db, add in ((cli_db, lambda: _cli(["history", "add", str(a), str(b), "--label", "x", "--db", cli_db],
                                          tmp_path, capsys)),
                    (api_db, lambda: json.loads(mf.history_add([str(a), str(b)], label="x", db=api_db).to_json()))):
        added = add()
        _valid(validator, added)
        assert [e["id"] for e in added["history"]["added"]] == [1, 2]
    pairs = (
        (["history", "list", "--db", cli_db], lambda: mf.history_list(db=api_db)),
        (["history", "show", "2", "--db", cli_db], lambda: mf.history_show(2, db=api_db)),
        (["history", "diff", "1", "2", "--db", cli_db], lambda: mf.history_diff(1, 2, db=api_db)),
    )
    for argv, call in pairs:
        got = _cli(argv, tmp_path, capsys)
        _valid(validator, got)
        want = json.loads(call().to_json())
        for doc in (got, want):
            doc.get("history", {}).pop("db", None)
        assert _scrub(want) == _scrub(got)


def test_measured_verbs_validate(tmp_path, capsys, validator):
    # bench and track measure this run: their figures differ run to run, their shape must not
    argv = ["bench", f"{HERE}:small_cnn", "--input", "2x3x8x8", "--repeats", "2", "--warmup", "1", "--no-progress"]
    got = _cli(argv, tmp_path, capsys)
    _valid(validator, got)
    rep = mf.bench(f"{HERE}:small_cnn", inputs=["2x3x8x8"], repeats=2, warmup=1, progress=False)
    assert set(json.loads(rep.to_json())["measured"]) == set(got["measured"])
    net = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with mf.track(model=net, hardware="a100-80gb", energy=False) as t:
        for _ in range(3):
            net(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
            t.step(tokens=4)
    _valid(validator, json.loads(t.report.to_json()))


def test_the_shipped_schema_is_the_generated_one():
    assert shipped_schema() == build_schema(), (
        f"regenerate it: python -m mlfootprint.report.jsonschema > {schema_path()}")
    assert render_schema().endswith("\n")


def test_the_schema_rejects_what_no_section_declares(validator):
    # a test that cannot fail is a defect: an unknown key, a wrong type and an unknown section are caught
    rep = json.loads(mf.footprint(device_hours=1, hardware="a100-80gb").to_json())
    _valid(validator, rep)
    for broken in ({**rep, "footprint": {**rep["footprint"], "co2e_kg": 1.0}},
                   {**rep, "footprint": {**rep["footprint"], "co2e_g": "a lot"}},
                   {**rep, "surprise": {}},
                   {**rep, "provenance": {"footprint.co2e_g": "guessed"}}):
        assert list(validator.iter_errors(broken))


def test_analyze_predicts_what_predict_does_under_full_recomputation():
    # analyze traced with PyTorch's early stop (a checkpointed block's recomputation cut at its last saved tensor)
    # while predict re-ran each block's whole forward: the same workload got two step times and two
    # recomputation counts (llama-2-7b: 0.4524 s vs 0.4711 s). Both are now predict's.
    wl = mf.Workload(mode="train", seq=128, batch=4, hardware="h100-sxm", devices=2, tp=1, pp=1, zero=3,
                     micro_batch=1, recompute="full", precision="bf16-mixed")
    a, p = mf.analyze("gpt2", wl).sections, mf.predict("gpt2", wl).sections
    assert a["time"]["step_s"] == p["time"]["step_s"]
    assert a["flops"]["recompute"] == p["flops"]["recompute"] > 0
    assert a["memory"]["peak_bytes"] == p["memory"]["peak_bytes"]
    # the recomputation is each block's whole forward: as much as the blocks' forward (the step covers 4
    # samples in micro-batches of 1; what is outside the blocks is not recomputed)
    assert a["flops"]["recompute"] < a["flops"]["forward"]


def test_a_runs_footprint_says_its_device_time_was_predicted_not_given():
    # analyze and predict hand the footprint chain the predicted device time, the workload's device and the
    # counted parameters: their sources once read "given (--device-hours)", "given (--hardware)", "given (--params)"
    rep = mf.predict("gpt2", mf.Workload(seq=64, hardware="a100-80gb"))
    inputs = rep.sections["footprint"]["inputs"]
    assert inputs["device_hours"]["source"].startswith("predicted (one step: 1 × ")
    assert inputs["params"]["source"].startswith("counted")
    assert not any(i["source"].startswith("given") for i in inputs.values())
    given = mf.predict("gpt2", mf.Workload(seq=64, hardware="a100-80gb"), site={"pue": 1.2})
    assert given.sections["footprint"]["inputs"]["pue"]["source"] == "given (--pue)"  # typed: given


@pytest.mark.parametrize("path", [("time", "step_s"), ("memory", "peak_bytes"), ("flops", "model"),
                                  ("footprint", "co2e_g")])
def test_a_report_read_back_with_a_negative_figure_is_refused(tmp_path, capsys, path):
    # a step of −1 s was read back and printed as "-1,000†" ms by table, report and compare: a time, a size, a count
    # of FLOPs or a mass cannot be below zero (the shipped schema's minimum, checked field by field)
    out = tmp_path / "p.json"
    assert main(["predict", "gpt2", "--seq", "32", "--hardware", "a100-80gb", "--format", "json", "-o", str(out)]) == 0
    rep = json.loads(out.read_text())
    section, key = path
    rep[section][key] = -1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rep))
    capsys.readouterr()
    for verb in (["report", str(bad)], ["table", str(bad)], ["compare", str(out), str(bad)]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert f"{section}.{key}: expected a number of at least 0" in err and err.count("\n") == 1


@pytest.mark.parametrize("path, value, said", [
    (("workload", "batch"), -3, "workload.batch: expected a number of at least 1, got -3"),
    (("workload", "dp"), 0, "workload.dp: expected a number of at least 1, got 0"),
    (("workload", "mode"), "bogus", "workload.mode: expected one of inference, train, generate, got 'bogus'"),
    (("workload", "zero"), 7, "workload.zero: expected one of 0, 1, 2, 3, got 7"),
    (("workload", "zero"), True, "workload.zero: expected a number, got True"),
    (("workload", "precision"), "fp64", "workload.precision: expected one of fp32, bf16, "),
    (("verb",), "nosuchverb", "verb: expected one of analyze, count, "),
])
def test_a_report_read_back_with_a_workload_no_verb_could_run_is_refused(tmp_path, capsys, path, value, said):
    # a schema-valid report with batch -3, mode "bogus" or verb "nosuchverb" was rendered as if it had been run: the
    # workload's choices and counts are checked as Workload checks them, and the verb against those that write one
    out = tmp_path / "p.json"
    assert main(["predict", "gpt2", "--seq", "32", "--hardware", "a100-80gb", "--format", "json", "-o", str(out)]) == 0
    rep = json.loads(out.read_text())
    (rep[path[0]] if len(path) == 2 else rep)[path[-1]] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rep))
    capsys.readouterr()
    for verb in (["report", str(bad)], ["compare", str(out), str(bad)]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1
    assert main(["report", str(out)]) == 0  # the report as written reads back


def test_every_verb_that_builds_a_report_is_one_a_report_may_name():
    # REPORT_VERBS is what a report read back may name: a verb added without it would write reports that its own
    # 'report' refuses
    import re
    from pathlib import Path

    from mlfootprint.report.schema import REPORT_VERBS
    src = Path(mf.__file__).parent
    named = set()
    for path in src.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        named |= set(re.findall(r'Report\(verb="([^"]+)"', text)) | set(re.findall(r'base_report\("([^"]+)"', text))
    assert {"analyze", "predict", "history diff", "models show"} <= named  # the scan finds them
    assert named <= set(REPORT_VERBS), named - set(REPORT_VERBS)
