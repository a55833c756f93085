"""The front door: what a new user sees first fits one screen, runs, and says when it cannot run.

Acceptance of issue 13: `analyze`, `count gpt2`, `memory gpt2` and `predict gpt2` fit 30 lines at 100 columns
and no line is wider than the terminal; the defaults give a runnable answer (bf16-mixed, the planner's layout, a
micro-batch that fits) and, when the workload does not fit, changes that do — each re-checked here by running
the memory verb with that change.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from mlfootprint import Workload, analyze, memory



def _cli(*args: str, columns: int = 100) -> subprocess.CompletedProcess:
    from conftest import run_cli

    return run_cli(*args, env={"COLUMNS": str(columns), "NO_COLOR": "", "MLFOOTPRINT_NO_PROGRESS": "1"})


@pytest.mark.parametrize("args", [[], ["analyze"], ["count", "gpt2"], ["memory", "gpt2"], ["predict", "gpt2"]])
@pytest.mark.parametrize("columns", [100, 80])
def test_the_first_screens_fit_the_terminal(args, columns):
    r = _cli(*(args or ["analyze"]), columns=columns)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").splitlines()
    assert len(lines) <= 30 + (4 if columns < 100 else 0), r.stdout  # a few folded notes more at 80 columns
    assert max(len(line) for line in lines) <= columns, r.stdout
    assert "\x1b[" not in r.stdout  # no colour into a pipe
    assert r.stderr == ""


@pytest.mark.parametrize("args", [["analyze"], ["predict", "gpt2", "--mode", "train", "--batch", "8"]])
def test_a_narrow_terminal_gets_the_notes_below_the_figures(args):
    # at 60 columns the note column got one or two characters: 227 lines of single characters
    r = _cli(*args, columns=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60 and len(lines) <= 45, r.stdout
    assert "Parameters: 124,439,808" in lines


def test_the_plan_table_keeps_its_figures_whole_and_its_reasons_below():
    # at the default 100 columns the 'vs #1' column wrapped every row and plan's figures split ('78.3/6/GiB')
    r = _cli("plan", "llama-2-7b", "--seq", "4096", "--batch", "256", "--hardware", "h100-sxm", "--devices", "16",
             columns=100)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    rows = [line for line in lines if line[:3].strip().isdigit() and "GiB" in line]
    assert len(rows) >= 3 and all(len(line.split()) >= 12 for line in rows)  # every figure on its row's line
    assert "vs #1 (#1: its bottleneck):" in lines and any(line.startswith("  2: +") for line in lines)
    r = _cli("count", "gpt2", columns=80)
    assert all(line.rstrip().endswith(("FLOP", "—")) for line in r.stdout.splitlines()
               if line.startswith(("GPT2LMHeadModel", "  lm_head")))


def test_the_card_answers_first():
    r = _cli("analyze")
    out = r.stdout
    assert out.startswith("mlfootprint analyze · gpt2 — GPT-2 (124M)\ninference · bf16 · batch 1 × 1,024 tokens · "
                          "1 × a100-80gb (assumed)\n")
    for label in ("Parameters", "Model FLOPs / step", "Peak memory", "Step time", "Throughput", "MFU", "Energy",
                  "CO2e", "Cost"):
        assert f"\n{label} " in out, label
    assert "Assumptions that moved these numbers most:\n  1. no --hardware given" in out
    assert "Conventions:" not in out  # once, in --details and the README
    details = _cli("analyze", "--details").stdout
    assert "Conventions:" in details and len(details.splitlines()) > 60


def test_colour_only_when_asked_and_never_with_no_color(monkeypatch):
    import argparse

    from mlfootprint.report.render import render

    rep = analyze("gpt2", Workload(seq=64))
    assert "\x1b[" not in rep.to_text()  # the API never colours; the CLI does when stdout is a terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" in render(rep, "table", argparse.Namespace(color=True, width=100))
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in render(rep, "table", argparse.Namespace(color=True, width=100))


def test_repeated_blocks_collapse_and_names_are_not_broken():
    out = _cli("count", "gpt2", "--depth", "3", columns=80).stdout
    assert "0–11 ×12" in out  # twelve identical transformer blocks, one row
    assert "post_attent" not in out.replace("post_attention", "")  # no name folded mid-word


def test_llama_on_eight_h100s_picks_a_layout_that_fits():
    r = _cli("analyze", "llama-2-7b", "--mode", "train", "--seq", "4096", "--batch", "8", "--hardware", "h100-sxm",
             "--devices", "8", "--format", "json")
    rep = json.loads(r.stdout)
    assert rep["memory"]["fits"] is True
    assert 0.20 <= rep["time"]["mfu"] <= 0.70
    assert rep["workload"]["precision"] == "bf16-mixed" and "precision" in rep["workload"]["defaults"]
    assert rep["workload"]["tp"] * rep["workload"]["pp"] * rep["workload"]["dp"] == 8
    assert any("the planner's best" in a for a in rep["assumptions"])
    # memory, given the same options, answers for the same layout (DESIGN: the planner's layout when only
    # --devices is given), not for eight plain data-parallel replicas
    mem = json.loads(_cli("memory", "llama-2-7b", "--mode", "train", "--seq", "4096", "--batch", "8", "--hardware",
                          "h100-sxm", "--devices", "8", "--format", "json").stdout)
    layout = ("tp", "pp", "dp", "vp", "cp", "zero", "micro_batch", "recompute")
    assert {k: mem["workload"][k] for k in layout} == {k: rep["workload"][k] for k in layout}
    assert mem["memory"]["peak_bytes"] == rep["memory"]["peak_bytes"] and mem["memory"]["fits"] is True
    assert any("the planner's best" in a for a in mem["assumptions"])


def test_only_devices_lays_out_plans_global_batch():
    # With only --devices, analyze takes the planner's layout of the planner's global batch: about 4M tokens
    # (plan_batch_tokens) rounded up to a multiple of the devices, 4,194,304 / 1024 = 4,096 sequences of gpt2 on 8
    # devices, so 'analyze' shows plan's first row (it laid out one sample per device, 8 sequences, and so chose
    # another layout than plan for the same command line)
    args = ["gpt2", "--seq", "1024", "--hardware", "h100-sxm", "--devices", "8", "--format", "json"]
    rep = json.loads(_cli("analyze", "--mode", "train", *args).stdout)
    plan = json.loads(_cli("plan", *args).stdout)
    assert rep["workload"]["batch"] == plan["plan"]["global_batch"] == 4096
    assert "batch" in rep["workload"]["defaults"]
    assert rep["time"]["layout"] == plan["plan"]["best"]
    assert rep["time"]["step_s"] == pytest.approx(plan["plan"]["step_s"], rel=1e-6)
    assert any("about 4,194,304 tokens" in a and "as 'mlfootprint plan' does" in a for a in rep["assumptions"])


def test_a_batch_smaller_than_the_devices_is_laid_out_by_the_planner():
    # --batch 4 on 8 devices: predict refused it ('not divisible by the 8 data-parallel replicas', a dp the user never
    # fixed) where plan lays it out with fewer replicas
    args = ["gpt2", "--seq", "256", "--batch", "4", "--hardware", "h100-sxm", "--devices", "8", "--format", "json"]
    r = _cli("predict", *args)
    assert r.returncode == 0, r.stderr
    rep, plan = json.loads(r.stdout), json.loads(_cli("plan", *args).stdout)
    assert rep["time"]["layout"] == plan["plan"]["best"] and rep["workload"]["dp"] <= 4


def test_llama_on_one_h100_does_not_fit_and_each_suggestion_does():
    wl = Workload(mode="train", seq=4096, batch=8, hardware="h100-sxm", devices=1)
    rep = analyze("llama-2-7b", wl)
    m = rep.sections["memory"]
    assert m["fits"] is False and m["peak_bytes"] > m["device_bytes"]
    assert "time" not in rep.sections and "footprint" not in rep.sections  # no figures for a run that cannot be
    assert rep.assumptions[0].startswith("does not fit")  # said first in every form
    assert m["suggestions"]
    for s in m["suggestions"]:
        # the change applied as a user would: the same options plus the suggested ones, through the memory verb
        options = {"mode": "train", "seq": 4096, "batch": 8, "hardware": "h100-sxm", "devices": 1}
        flags = shlex.split(s["change"])
        for flag, value in zip(flags[::2], flags[1::2]):
            key = flag.lstrip("-").replace("-", "_")
            options[key] = value if key in ("recompute", "quant", "precision") else int(value)
        checked = memory("llama-2-7b", Workload(**options)).sections["memory"]
        assert checked["fits"] is True, (s, checked["peak_bytes"] / 2**30)
        assert checked["peak_bytes"] <= checked["device_bytes"]


def test_a_suggestion_that_changes_the_working_weights_is_an_upper_bound():
    # --zero 3 switches --mixed-weights auto to 16-bit weights, but the suggestion is sized on the autocast trace
    # (an fp32 residual stream): it read '75.33 GiB' where the changed run has 70.30; now 'at most', and no less
    wl = dict(mode="train", seq=4096, batch=8, hardware="h100-sxm", dp=2, devices=2)
    m = memory("llama-2-7b", Workload(**wl)).sections["memory"]
    zero3 = next(s for s in m["suggestions"] if s["change"] == "--zero 3")
    assert zero3["at_most"] is True
    checked = memory("llama-2-7b", Workload(**wl, zero=3)).sections["memory"]
    assert checked["fits"] is True and checked["peak_bytes"] <= zero3["peak_bytes"]
    assert all(not s["at_most"] for s in m["suggestions"] if "--zero 3" not in s["change"] and "--tp" not in s["change"]
               and "--pp" not in s["change"])


def test_a_workload_that_does_not_fit_says_so_on_stderr_when_the_answer_goes_elsewhere(tmp_path):
    r = _cli("analyze", "llama-2-7b", "--mode", "train", "--seq", "4096", "--batch", "8", "--hardware", "h100-sxm",
             "--format", "json")
    assert r.returncode == 0  # an answer, not an error
    assert "does not fit in device memory" in r.stderr
    data = json.loads(r.stdout)
    assert data["memory"]["fits"] is False and data["memory"]["suggestions"]
    forced = _cli("analyze", "llama-2-7b", "--mode", "train", "--seq", "4096", "--batch", "8", "--hardware",
                  "h100-sxm", "--format", "json", "--even-if-oom")
    assert json.loads(forced.stdout)["time"]["step_s"] > 0


def test_help_and_version_do_not_import_torch():
    code = ("import sys; from mlfootprint.cli import build_parser; build_parser().format_help(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


_HELP_SCRIPT = """
import argparse, contextlib, io, sys
from mlfootprint.cli import build_parser, main

def helps(parser, prefix):
    yield prefix + ["--help"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from helps(sub, prefix + [name])

lines = list(helps(build_parser(), []))
for argv in lines:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code in (0, None), (argv, exc.code)
    assert "usage:" in out.getvalue(), argv
    loaded = sorted(m for m in ("torch", "transformers") if m in sys.modules)
    assert not loaded, (argv, loaded)
print(len(lines))
"""


def test_every_help_imports_neither_torch_nor_transformers():
    # `mlfootprint --help` and `mlfootprint VERB [SUB] --help` as the command line runs them, in a fresh process
    r = subprocess.run([sys.executable, "-c", _HELP_SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip()) >= 20  # the top level, every verb and every subcommand (models list, ...)


_NO_TORCH_SCRIPT = """
import contextlib, io, json, sys
from mlfootprint.cli import main

for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(argv) == 0, argv
    assert out.getvalue().strip(), argv
    loaded = sorted(m for m in ("torch", "transformers") if m in sys.modules)
    assert not loaded, (argv, loaded)
"""


def test_verbs_that_read_files_or_catalogs_import_neither_torch_nor_transformers(tmp_path):
    # a saved report is re-rendered, compared and tabled, and the catalogs listed, without the seconds torch costs
    from mlfootprint.cli import main

    count, memory = str(tmp_path / "count.json"), str(tmp_path / "memory.json")
    assert main(["count", "gpt2", "--seq", "16", "-o", count]) == 0
    assert main(["memory", "gpt2", "--seq", "16", "--hardware", "h100-sxm", "-o", memory]) == 0
    runs = [["report", count], ["report", memory, "--format", "md"], ["compare", count, memory],
            ["table", count, memory], ["models", "list"], ["hardware", "list"], ["hardware", "show", "h100-sxm"],
            ["history", "list", "--db", str(tmp_path / "h.sqlite")]]
    r = subprocess.run([sys.executable, "-c", _NO_TORCH_SCRIPT, json.dumps(runs)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_errors_speak_python_from_python_and_flags_from_the_command_line(capsys):
    from mlfootprint import plan
    from mlfootprint.cli import main
    from mlfootprint.core.errors import UserError, python_terms

    with pytest.raises(UserError) as info:
        plan("gpt2", Workload(mode="train", hardware="h100-sxm", devices=12, tp=8))
    assert str(info.value).startswith("devices=12 is not divisible by tp=8")
    assert main(["plan", "gpt2", "--hardware", "h100-sxm", "--devices", "12", "--tp", "8"]) == 2
    assert "--devices 12 is not divisible by --tp 8" in capsys.readouterr().err
    assert python_terms("plan needs --hardware ID (see: mlfootprint hardware list)") == \
        "plan needs hardware=ID (see: mf.hardware_list())"
    assert python_terms("drop --mode or use --mode train; --zeropp applies to ZeRO stage 3; add --zero 3") == \
        'drop mode or use mode="train"; zeropp applies to ZeRO stage 3; add zero=3'


@pytest.mark.parametrize("argv", [["analyze"], ["predict", "gpt2"], ["count", "gpt2"], ["plan", "gpt2", "--devices", "8",
                                  "--hardware", "h100-sxm"], ["memory", "gpt2", "--mode", "train", "--hardware", "h100-sxm"],
                                  ["footprint", "--device-hours", "10", "--hardware", "a100-80gb"]])
def test_every_option_an_assumption_advises_is_one_the_verb_takes(argv, capsys):
    import re

    from mlfootprint.cli import build_parser, main

    assert main([*argv, "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    advised = set(re.findall(r"--[a-z][a-z0-9-]+", " ".join(rep["assumptions"])))
    sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "verb").choices[argv[0]]
    accepted = {s for action in sub._actions for s in action.option_strings}
    assert advised and advised <= accepted, advised - accepted


def test_site_options_reach_the_card_footprint():
    rep = analyze("gpt2", Workload(seq=64), site={"region": "de", "utilization": 0.5, "price_per_hour": 1.0})
    fp = rep.sections["footprint"]
    assert fp["region"] == "de"
    assert fp["inputs"]["utilization"]["value"] == 0.5
    # cost = device-hours × $1.00: one device for one predicted step
    assert fp["cost_usd"] == pytest.approx(rep.sections["time"]["step_s"] / 3600 * 1.0)
    from mlfootprint.core.errors import UserError

    with pytest.raises(UserError, match="unknown site option 'regoin'"):
        analyze("gpt2", Workload(seq=64), site={"regoin": "de"})


def test_more_devices_suggestions_keep_context_parallelism():
    # gpt2 at 1,024 tokens on 2 devices with cp 2 in fp32 on a 2 GB budget: the suggested device count is the
    # whole dp × tp × pp × cp, and each suggestion applied as a user would fits on exactly that many devices
    wl = Workload(mode="train", seq=1024, batch=16, hardware="h100-sxm", devices=2, cp=2, precision="fp32",
                  device_memory=2 * 2**30)
    m = memory("gpt2", wl).sections["memory"]
    assert m["fits"] is False
    grown = [s for s in m["suggestions"] if s["change"].startswith("--devices")]
    assert grown
    for s in grown:
        flags = shlex.split(s["change"])
        options = dict(mode="train", seq=1024, batch=16, hardware="h100-sxm", cp=2, precision="fp32",
                       device_memory=2 * 2**30)
        for flag, value in zip(flags[::2], flags[1::2]):
            key = flag.lstrip("-").replace("-", "_")
            options[key] = value if key in ("recompute", "quant", "precision") else int(value)
        checked = memory("gpt2", Workload(**options)).sections["memory"]
        assert s["devices"] == options["devices"] == checked["layout"]["dp"] * checked["layout"]["tp"] \
            * checked["layout"]["pp"] * checked["layout"]["cp"]
        assert checked["fits"] is True


def test_generate_footprint_covers_the_whole_call_not_its_prefill():
    # under --mode generate the unit of work is one generate call: the prompt's prefill and every new token; the
    # footprint priced only the prefill's step before (about 1/60 of the call for gpt2 with 128 new tokens)
    rep = json.loads(_cli("analyze", "--mode", "generate", "--seq", "64", "--format", "json").stdout)
    t, fp = rep["time"], rep["footprint"]
    assert fp["scope"] == "one generate call"
    assert t["generate_s"] > 10 * t["step_s"]  # 128 decode tokens after a 64-token prefill
    assert f"footprint of one generate call: 1 × {t['hardware']} for {t['generate_s']:.4g} s" in rep["assumptions"][
        [a.startswith("footprint of") for a in rep["assumptions"]].index(True)]
    card = _cli("analyze", "--mode", "generate", "--seq", "64").stdout
    assert "per generate call" in card and "Prefill" in card and "per step" not in card


def test_without_batch_the_step_of_several_replicas_is_stated_and_counted_as_such():
    # no --batch with 4 data-parallel replicas of a layout of the user's own (--dp: the planner is not asked): the
    # planner's global batch, about 4M tokens (4,194,304 / 128 = 32,768 sequences, a multiple of the 4 devices), as
    # '--devices 4' alone lays out; it read one sample per replica before, 8,192× fewer than the same command line
    # without the redundant --dp. The workload, the FLOPs, the time and MFU all cover those samples, the same
    # answer as --batch 32768
    args = ["predict", "gpt2", "--seq", "128", "--hardware", "h100-sxm", "--devices", "4", "--dp", "4", "--zero", "1",
            "--format", "json"]
    rep = json.loads(_cli(*args).stdout)
    given = json.loads(_cli(*args, "--batch", "32768").stdout)
    planned = json.loads(_cli("predict", "gpt2", "--seq", "128", "--hardware", "h100-sxm", "--devices", "4",
                              "--format", "json").stdout)
    w, f, t = rep["workload"], rep["flops"], rep["time"]
    assert w["batch"] == 32768 == planned["workload"]["batch"] and "batch" in w["defaults"]
    assert t["samples_per_step"] == 32768
    assert w["micro_batch"] * w["grad_accum"] * 4 == 32768 and "micro_batch" in w["defaults"]
    assert f["model"] == given["flops"]["model"] and t["step_s"] == given["time"]["step_s"]
    assert t["mfu"] == pytest.approx(f["model"] / t["step_s"] / (4 * t["peak_flop_per_s"]), rel=1e-9)
    assert any(a.startswith("global batch 32,768 × 128 tokens: about 4,194,304 tokens, rounded up to a multiple "
                            "of 4 devices") for a in rep["assumptions"])
    # a whole step given (micro-batch and accumulation) is that step: one micro-batch of 2, 3 times, on 4 replicas
    whole = json.loads(_cli(*args, "--micro-batch", "2", "--grad-accum", "3").stdout)
    assert whole["workload"]["batch"] == 24


def test_memory_of_a_layout_of_your_own_steps_over_the_planner_batch_at_a_traced_micro_batch():
    # memory of gpt2 over 4 replicas without --batch: the global batch analyze and predict step over (about 4M
    # tokens: 4,194,304 / 64 = 65,536 sequences), and the largest micro-batch that fits, its figures from its own
    # trace (counted), the same as that micro-batch given; without a device to size one, one sample accumulated
    base = dict(mode="train", seq=64, dp=4, zero=1, precision="bf16-mixed")
    sized = memory("gpt2", Workload(**base, hardware="h100-sxm"))
    w, m = sized.sections["workload"], sized.sections["memory"]
    assert w["batch"] == 65536 and w["micro_batch"] > 1 and w["micro_batch"] * w["grad_accum"] * 4 == 65536
    assert m["fits"] is True and sized.provenance["memory.activations_bytes"] == "counted"
    assert m["breakdown"]["traced_batch"] == w["micro_batch"]
    given = memory("gpt2", Workload(**base, hardware="h100-sxm", batch=65536, micro_batch=w["micro_batch"]))
    assert given.sections["memory"]["peak_bytes"] == m["peak_bytes"]
    bigger = memory("gpt2", Workload(**base, hardware="h100-sxm", batch=65536, micro_batch=2 * w["micro_batch"]))
    assert bigger.sections["memory"]["fits"] is False  # the largest that fits
    bare = memory("gpt2", Workload(**base))
    assert bare.sections["workload"]["batch"] == 65536 and bare.sections["workload"]["micro_batch"] == 1
    assert bare.sections["workload"]["grad_accum"] == 16384  # accumulated: the gradients live the whole step
    one_each = memory("gpt2", Workload(**base, batch=65536, micro_batch=1))
    assert bare.sections["memory"]["peak_bytes"] == one_each.sections["memory"]["peak_bytes"]
    assert any("micro-batch 1 (no device memory to choose a larger one by" in a for a in bare.assumptions)


def test_one_device_trains_over_the_planner_batch_at_the_largest_micro_batch_that_fits():
    # One device, as several: training gpt2 at seq 64 without --batch steps over about 4M tokens (4,194,304 / 64 =
    # 65,536 sequences), accumulated over the largest micro-batch that fits. It trained one sample a step before, a
    # micro-batch nobody runs on an 80 GB card (3.35 GiB of it at seq 1,024), and its MFU and time said so.
    base = dict(mode="train", seq=64, precision="bf16-mixed", hardware="h100-sxm")
    card = analyze("gpt2", Workload(**base))
    w, m = card.sections["workload"], card.sections["memory"]
    assert w["batch"] == 65536 and w["micro_batch"] > 1 and w["micro_batch"] * w["grad_accum"] == 65536
    assert m["fits"] is True and m["breakdown"]["traced_batch"] == w["micro_batch"]
    assert any(a.startswith("global batch 65,536 × 64 tokens: about 4,194,304 tokens (") for a in card.assumptions)
    bigger = memory("gpt2", Workload(**base, batch=65536, micro_batch=2 * w["micro_batch"]))
    assert bigger.sections["memory"]["fits"] is False  # the largest that fits
    sized = memory("gpt2", Workload(**base))  # memory takes the same micro-batch, from its own trace
    assert sized.sections["workload"]["micro_batch"] == w["micro_batch"]
    assert sized.sections["memory"]["peak_bytes"] == m["peak_bytes"]
    one = analyze("gpt2", Workload(**base, devices=1))  # --devices 1 is the same device
    assert (one.sections["workload"]["batch"], one.sections["workload"]["micro_batch"]) == (65536, w["micro_batch"])
    # inference keeps one sample (a latency), and a batch given is the batch
    assert analyze("gpt2", Workload(mode="inference", seq=64, hardware="h100-sxm")).sections["workload"]["batch"] == 1
    assert analyze("gpt2", Workload(**base, batch=8)).sections["workload"]["batch"] == 8


def test_analyze_sizes_a_device_from_its_own_micro_batch_as_memory_does():
    # gpt2 over 4 replicas, one sample each. What does not grow with the batch (the embedding's full fp32 gradient,
    # 50,257 × 768 × 4 B = 154 MB, the layers' gradient buffers) is there once per micro-batch: a trace of the global
    # batch scaled down to one sample divided it by 4, so analyze once said less than memory
    args = ["gpt2", "--mode", "train", "--seq", "64", "--batch", "4", "--hardware", "h100-sxm", "--devices", "4",
            "--dp", "4", "--zero", "3", "--format", "json"]
    a = json.loads(_cli("analyze", *args).stdout)["memory"]
    m = json.loads(_cli("memory", *args).stdout)["memory"]
    assert a["breakdown"]["traced_batch"] == m["breakdown"]["traced_batch"] == 1
    assert a["peak_bytes"] == m["peak_bytes"] and a["activations_bytes"] == m["activations_bytes"]


def test_data_parallel_replicas_each_take_one_device_micro_batch_time():
    # gpt2 on 8 replicas of one sample each (DDP, no sharding) does on each device exactly what one device does with
    # one sample: the same operators at the same sizes, so the same compute- and memory-bound time. A trace of the
    # 8-sample batch scaled by 1/8 also divided what a micro-batch does whatever its size (autocast's weight casts,
    # the norms' weight reads) by 8, and predicted less memory-bound time than the single device's
    from mlfootprint import predict
    eight = predict("gpt2", Workload(batch=8, seq=256, mode="train", hardware="a100-80gb", devices=8, tp=1, pp=1,
                                     zero=0, micro_batch=1)).sections["time"]["breakdown"]
    one = predict("gpt2", Workload(batch=1, seq=256, mode="train", hardware="a100-80gb")).sections["time"]["breakdown"]
    assert eight["compute_s"] == pytest.approx(one["compute_s"], rel=1e-9)
    assert eight["memory_s"] == pytest.approx(one["memory_s"], rel=1e-9)
    assert eight["communication_s"] > 0 == one["communication_s"]


def test_recomputation_the_planner_chooses_is_timed():
    # 4 devices of 2.3 GB: the planner needs full recomputation for gpt2 at 1,024 tokens. Its recomputed forward
    # takes time (it once took none: the step model read the trace as already recomputed because the workload said
    # so), and the run equals the same layout given by hand. Without tensor parallelism (--tp 1): TP 4 fits without
    # recomputation, and with its backward collectives under the GEMMs it is the faster layout
    from mlfootprint import predict
    base = dict(batch=4, seq=1024, mode="train", hardware="a100-80gb", devices=4, device_memory=2_300_000_000, tp=1)
    planned = predict("gpt2", Workload(**base))
    w, t = planned.sections["workload"], planned.sections["time"]
    assert w["recompute"] == "full" and "recompute" in w["defaults"]
    assert t["phases"]["recompute_s"] > 0.2 * t["phases"]["forward_s"]
    assert w["tp"] == 1
    by_hand = predict("gpt2", Workload(**base, pp=w["pp"], zero=w["zero"], micro_batch=w["micro_batch"],
                                       recompute="full")).sections["time"]
    assert t["step_s"] == pytest.approx(by_hand["step_s"], rel=1e-9)
    assert t["hfu"] > t["mfu"]
    # the flops section counts that recomputation too (its trace, of the step as given, had none): HFU's numerator
    f = planned.sections["flops"]
    assert f["recompute"] > 0.2 * f["forward"] and planned.provenance["flops.recompute"] == "modeled"
    assert t["hfu"] == pytest.approx(f["hardware"] / (t["step_s"] * t["devices"] * t["peak_flop_per_s"]), rel=1e-6)


def test_the_memory_card_names_the_layout_it_sized():
    # memory has no time section, whose label the workload line once took the layout from: "8 × h100-sxm" alone
    # left its per-device figures without the sharding they assume
    out = _cli("memory", "gpt2", "--mode", "train", "--seq", "128", "--batch", "8", "--hardware", "h100-sxm",
               "--devices", "8", "--tp", "2", "--dp", "4", "--zero", "1", columns=200)
    assert out.returncode == 0, out.stderr
    assert "8 × h100-sxm (tp=2 pp=1 dp=4 zero=1)" in out.stdout.splitlines()[1]


def test_memory_with_device_memory_uses_the_planners_layout_for_that_size():
    # --device-memory caps the planner's layouts too, its note says so, and the layout sized is the one it names
    # (the planner once checked the catalog's 80 GB, and the memory model then chose another micro-batch under a
    # second, contradicting assumption)
    out = _cli("memory", "gpt2", "--mode", "train", "--seq", "1024", "--batch", "64", "--hardware", "a100-80gb",
               "--devices", "4", "--device-memory", "6GB", "--format", "json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    lay = rep["memory"]["layout"]
    planned = [a for a in rep["assumptions"] if "the planner's best" in a]
    assert len(planned) == 1 and "(--device-memory)" in planned[0]
    assert f"micro-batch={lay['micro_batch']} " in planned[0]
    assert not any("the largest micro-batch" in a for a in rep["assumptions"])
    assert rep["memory"]["peak_bytes"] <= 6e9 and rep["memory"]["fits"]


def test_the_workload_states_the_accumulation_the_layout_runs():
    # gpt2, batch 512 on 8 × H100: the planner's micro-batch of 32 on 8 replicas is 2 micro-batches per step; the
    # workload section said grad_accum 1 (its default) whatever the layout accumulated
    out = _cli("predict", "gpt2", "--seq", "1024", "--batch", "512", "--hardware", "h100-sxm", "--devices", "8",
               "--format", "json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    lay = rep["memory"]["layout"]
    assert rep["workload"]["grad_accum"] == lay["grad_accum"] == 512 // (lay["dp"] * lay["micro_batch"]) == 2
    assert "grad_accum" in rep["workload"]["defaults"]


def test_two_changes_on_the_same_devices_come_before_more_devices():
    # gpt2 at 1,024 tokens over 4 replicas in 3 GB: neither full recomputation (3.86 GB) nor ZeRO-3 (5.82 GB) fits
    # alone, both together do (2.91 GB) on the same 4 devices; only the two cheap changes were once paired, so the
    # advice was more devices. A change that holds a smaller fitting one (--devices 8 --zero 3 beside --zero 3) is
    # not listed.
    wl = Workload(mode="train", seq=1024, batch=8, dp=4, device_memory=3_000_000_000)
    m = memory("gpt2", wl).sections["memory"]
    assert m["fits"] is False
    first = m["suggestions"][0]
    assert first["change"] == "--recompute full --zero 3" and first["devices"] == 4 and first["peak_bytes"] <= 3e9
    changes = [set(s["change"].split(" --")) for s in m["suggestions"]]
    assert not any(a < b for a in changes for b in changes)


def test_human_output_has_no_exponent_notation(capsys):
    # README, Conventions: figures for people are written without exponents. The footprint's inputs table once
    # read "device_hours 1.843e+05" and "params 1.244e+08", claims' columns "3.14e+23" and "1.4e+09"
    import re
    from mlfootprint.cli import main

    assert main(["footprint", "--device-hours", "184320", "--hardware", "a100-80gb", "--params", "124439808",
                 "--details"]) == 0
    out = capsys.readouterr().out
    assert "184,320" in out and "124,439,808" in out
    assert not re.search(r"\de[+-]\d", out)
    assert main(["claims", "--only", "gpt3-train-flops", "--only", "zero-offload-pytorch-limit"]) == 0
    table = capsys.readouterr().out
    assert "314 ZFLOP" in table and "1.4 G parameters" in table


def test_a_layout_of_your_own_accumulates_the_batch_it_steps_over(tmp_path):
    # sweep findings on the default batch of a layout of your own (training, several devices, no --batch):
    # the accumulation the batch implies is the workload's and the layout's (the memory of a pipeline holds its
    # in-flight micro-batches: with accumulation 1 it read one, and called 98 GiB of llama-2-70b 53 GiB, "fits");
    # a fixed micro-batch rounds the batch to whole micro-batches; --grad-accum names its micro-batch; and a layout
    # taken because of an option the planner does not search says so first
    import mlfootprint as mf

    tiny = "tests/data/configs/tiny-llama"
    base = dict(mode="train", seq=32, hardware="h100-sxm", devices=4, precision="bf16-mixed")
    own = mf.predict(tiny, mf.Workload(**base, pp=2, dp=2, zero=1, micro_batch=2, recompute="none"))
    w = own.sections["workload"]
    assert w["batch"] == 131072 and w["grad_accum"] == 131072 // (2 * 2)  # 4,194,304 / 32 tokens
    given = mf.predict(tiny, mf.Workload(**base, pp=2, dp=2, zero=1, micro_batch=2, recompute="none", batch=131072))
    assert own.sections["memory"]["peak_bytes"] == given.sections["memory"]["peak_bytes"]
    three = mf.predict(tiny, mf.Workload(**base, micro_batch=3))  # the planner's, micro-batch fixed
    w3 = three.sections["workload"]
    assert w3["batch"] % (4 * 3) == 0 and w3["batch"] == w3["dp"] * 3 * w3["grad_accum"]
    assert any("rounded up to a multiple of 4 devices × micro-batch 3" in a for a in three.assumptions)
    accum = mf.predict(tiny, mf.Workload(**base, grad_accum=16))
    wa = accum.sections["workload"]
    assert wa["micro_batch"] * wa["grad_accum"] * wa["dp"] == wa["batch"] and wa["grad_accum"] == 16
    shown = accum.key_assumptions[:3]  # the card's three
    assert any(a.startswith("a layout of your own: the planner does not search --grad-accum 16") for a in shown)


def test_expert_parallelism_alone_is_the_planner_first_row():
    # --ep is a choice the planner takes as fixed (plan searches the rest around it); predict with only --devices
    # and --ep took a layout of your own with ZeRO 0 where plan's first row had ZeRO 3
    import mlfootprint as mf

    moe = "tests/data/configs/tiny-qwen2-moe"
    wl = mf.Workload(mode="train", seq=32, hardware="h100-sxm", devices=8, ep=4, precision="bf16-mixed")
    best = mf.plan(moe, wl).sections["plan"]
    got = mf.predict(moe, wl)
    w = got.sections["workload"]
    assert best["best"] == f"tp={w['tp']} pp={w['pp']} dp={w['dp']} ep=4 zero={w['zero']}" \
        f"{'++' if w['zeropp'] else ''} micro-batch={w['micro_batch']} recompute={w['recompute']}"
    assert got.sections["time"]["step_s"] == pytest.approx(best["step_s"], rel=1e-9)
