"""Renderers of the one Report: LaTeX, CSV, the summary card, units, and the `report` verb.

The sample report is a real count of tiny-gpt2 (2 layers, hidden 64, 4 heads, vocab 256,
ffn 256) for batch 2 × seq 16 in train mode, plus hand-made memory / time / footprint /
measured sections (their builders are other issues' work).
"""
from __future__ import annotations

import argparse
import copy
import csv
import functools
import io
import json
import re

import pytest

from conftest import CONFIGS, run_cli
from mlfootprint import Workload, count
from mlfootprint.cli import main
from mlfootprint.report import Report, units
from mlfootprint.report.csv_out import cell
from mlfootprint.report.latex import tex_escape
from mlfootprint.report.layout import predicted_vs_measured, summary
from mlfootprint.report.render import render

# Forward model FLOPs of tiny-gpt2, batch 2 × seq 16 (32 tokens), derived by hand:
#   weights per layer: c_attn 64×192 + c_proj 64×64 + c_fc 64×256 + mlp c_proj 256×64 = 49,152
#   2 layers + lm_head 64×256 = 98,304 + 16,384 = 114,688 MACs per token → ×2 FLOPs × 32 tokens = 7,340,032
#   attention per layer: QKᵀ and AV, each b·h·s·s·d = 2·4·16·16·16 = 32,768 MACs → 2 layers × 2 × 2 × 32,768 = 262,144
#   forward = 7,340,032 + 262,144 = 7,602,176; backward = 2 × forward for the matmuls = 15,204,352
FORWARD = 7_602_176
BACKWARD = 15_204_352
PARAMS = 124_672  # wte 256·64 + wpe 128·64 + 2 × 49,984 per block + ln_f 128 (lm_head tied)

NASTY = r"50%_off & co #1 $x$ {a} ~b ^c \d"

MEMORY = {"weights_bytes": 498_688, "gradients_bytes": 498_688, "optimizer_bytes": 997_376,
          "activations_bytes": 2_100_000, "other_bytes": 100_000, "peak_bytes": 4_000_000,
          "device_bytes": 80e9, "fits": True, "max_batch": 4096}
TIME = {"step_s": 0.0020, "tokens_per_s": 16_000.0, "mfu": 0.034, "hfu": 0.035}
FOOTPRINT = {"region": "us", "carbon_accounting": "location-based", "device_hours": 184_320,
             "device_energy_j": 2.65421e14, "facility_energy_j": 2.919629e14, "energy_j": 2.919629e14,
             "co2e_g": 3.122e10, "embodied_co2e_g": 1.2e9, "total_co2e_g": 3.242e10,
             "water_onsite_l": 1.2e7, "water_offsite_l": 3.1e8, "water_l": 3.22e8, "cost_usd": 420_000.0,
             "inputs": {"pue": {"value": 1.1, "unit": "", "source": "Touvron et al. 2023"},
                        "intensity": {"value": 385, "unit": "gCO2e/kWh", "source": "given"}}}
MEASURED = {"step_s": 0.0025, "peak_bytes": 4_400_000, "tokens_per_s": 12_800.0}


@functools.lru_cache(maxsize=None)
def _counted(hardware: str | None) -> str:
    wl = Workload(batch=2, seq=16, mode="train", precision="bf16-mixed", hardware=hardware)
    return count(str(CONFIGS / "tiny-gpt2"), wl).to_json()


def put(rep, name, data, provenance=None):
    """A hand-made section for rendering tests (the verbs build real ones)."""
    rep.sections[name] = data
    for key, kind in (provenance or {}).items():
        rep.mark(f"{name}.{key}", kind)


def counted_report(hardware: str | None = "a100-80gb") -> Report:
    """A fresh copy of the real tiny-gpt2 count (traced once per process)."""
    return Report.from_dict(json.loads(_counted(hardware)))


def full_report(name: str | None = None, hardware: str | None = "a100-80gb") -> Report:
    rep = counted_report(hardware)
    if name is not None:
        rep.sections["model"]["name"] = name
    put(rep, "memory", copy.deepcopy(MEMORY), {"peak_bytes": "modeled", "weights_bytes": "modeled"})
    put(rep, "time", dict(TIME), {"step_s": "modeled", "mfu": "modeled"})
    put(rep, "footprint", copy.deepcopy(FOOTPRINT), {"co2e_g": "modeled", "energy_j": "modeled"})
    put(rep, "measured", dict(MEASURED), {"step_s": "measured", "peak_bytes": "measured"})
    rep.assume("an assumption with 100% & $5 <b>not bold</b>")
    return rep


def test_sample_is_the_hand_counted_model():
    rep = counted_report()
    assert rep.sections["flops"]["forward"] == FORWARD
    assert rep.sections["flops"]["backward"] == BACKWARD
    assert rep.sections["params"]["total"] == PARAMS


# -- units ----------------------------------------------------------------------------------

def test_units_rates_are_not_durations_and_small_memory_is_readable():
    assert units.by_key("tokens_per_s", 12_345.6) == "12.35 k tokens/s"      # not '3.43 h'
    assert units.by_key("memory_bandwidth_bytes_per_s", 2.039e12) == "2.039 TB/s"
    assert units.by_key("tokens", 32, "flops") == "32"                       # a count, not '32 FLOP'
    # memory in binary units, the way device memory is sold and reported (80 GiB = 85.9e9 bytes)
    assert units.by_key("peak_bytes", 4.4e6) == "4.2 MiB"                    # not '0.00 GiB'
    assert units.by_key("peak_bytes", 80 * 2**30) == "80.00 GiB"
    assert units.by_key("energy_j", 3.6e6) == "3.6 MJ (1 kWh)"               # 3.6e6 J = 1 kWh
    assert units.by_key("co2e_g", 3.122e10) == "31,220 t"                    # 3.122e10 g = 31,220 t
    assert units.unit_of("co2e_g") == "gCO2e"
    assert units.unit_of("forward", "flops") == "FLOP"
    assert units.unit_of("tokens_per_s") == "tokens/s"
    assert units.unit_of("mfu") == "fraction"


def test_summary_prefers_measured_and_keeps_the_prediction_in_the_note():
    rep = full_report()
    items = {i.label: i for i in summary(rep)}
    assert items["Parameters"].text == "124.7 k" and items["Parameters"].note.startswith("124,672")
    assert items["Step time"].path == "measured.step_s" and items["Step time"].provenance == "measured"
    assert "predicted: 2 ms" in items["Step time"].note
    assert items["Energy"].text == "81.1 GWh"             # 2.919629e14 J / 3.6e12 J per GWh = 81.10 GWh
    assert "Active parameters" not in items                # dense: active = total
    assert items["MFU"].text == "3.4%"


def test_predicted_vs_measured_pairs_by_key():
    pairs = {p.key: p for p in predicted_vs_measured(full_report())}
    assert set(pairs) == {"step_s", "peak_bytes", "tokens_per_s"}
    assert pairs["step_s"].predicted_path == "time.step_s"
    assert pairs["peak_bytes"].predicted_path == "memory.peak_bytes"
    assert pairs["step_s"].ratio == pytest.approx(1.25)    # 2.5 ms / 2.0 ms
    assert pairs["peak_bytes"].ratio == pytest.approx(1.1)  # 4.4 MB / 4.0 MB


# -- LaTeX ---------------------------------------------------------------------------------

def _balanced(tex: str) -> list[str]:
    stack: list[str] = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack[-1] == env, f"\\end{{{env}}} closes {stack[-1:] or 'nothing'}"
            stack.pop()
    assert not stack, f"unclosed: {stack}"
    return stack


def _code_lines(tex: str) -> list[str]:
    return [line for line in tex.splitlines() if not line.startswith("%")]


def test_tex_escape_every_special_character():
    assert tex_escape(NASTY) == (r"50\%\_off \& co \#1 \$x\$ \{a\} \textasciitilde{}b \textasciicircum{}c "
                                 r"\textbackslash{}d")
    assert tex_escape("a\nb") == "a b"  # a line break cannot end a table row early


def test_latex_is_one_summary_table_and_the_appendix_on_request():
    rep = full_report(name=NASTY)
    summary = render(rep, "latex")
    _balanced(summary)
    assert summary.count(r"\begin{table}") == summary.count(r"\end{table}") == 1  # fits one page
    full = render(rep, "latex", argparse.Namespace(details=True))
    _balanced(full)
    assert full.count(r"\begin{table}") == full.count(r"\end{table}") >= 5
    assert full.index("% appendix (--details)") > full.index(r"\end{table}")
    # the assumptions are a list in the text flow (a float of them overflowed the page)
    assert r"\begin{enumerate}" in full and full.count(r"\item ") == len(rep.assumptions)


def test_latex_keeps_double_hyphens_and_typesets_exponents():
    assert tex_escape("pass --seq 4096") == "pass -{}-{}seq 4096"          # not an en dash
    assert tex_escape("3.1e+23 FLOP, 2e-05 s") == r"$3.1\times10^{23}$ FLOP, $2\times10^{-5}$ s"
    assert tex_escape("gpt2e5 v1e3x") == "gpt2e5 v1e3x"                     # names are not numbers


def test_latex_report_is_balanced_booktabs_with_escaped_names():
    rep = full_report(name=NASTY)
    tex = render(rep, "latex", argparse.Namespace(details=True))
    _balanced(tex)
    for word in ("toprule", "midrule", "bottomrule"):
        assert tex.count("\\" + word) == tex.count(r"\begin{tabular}")
    escaped = tex_escape(NASTY)
    assert f"Efficiency summary of {escaped}" in tex
    code = "\n".join(_code_lines(tex))
    assert NASTY not in code
    assert re.search(r"(?<!\\)%", code) is None           # every % outside comments is \%
    assert re.search(r"(?<!\\)_", code) is None           # every _ is \_
    assert re.search(r"(?<!\\)#", code) is None           # every # is \#
    # the summary table: Parameters, value, provenance
    assert r"Parameters & 124.7 k & counted \\" in tex
    assert r"MFU & 3.4\% & modeled \\" in tex
    assert r"Cost & \$420,000.00 &  \\" in tex


def test_latex_rows_have_as_many_cells_as_columns():
    tex = render(full_report(name=NASTY), "latex", argparse.Namespace(details=True))
    cols = None
    for line in _code_lines(tex):
        m = re.match(r"\\begin\{tabular\}\{(.*)\}$", line)
        if m:
            cols = len(re.findall(r"[lrc]|p\{[^}]*\}", m.group(1).replace(r"\linewidth", "")))
            continue
        if cols and line.endswith(r"\\"):
            assert len(re.findall(r"(?<!\\)&", line)) == cols - 1, line


def test_latex_single_report_without_optional_sections():
    tex = render(counted_report(), "latex")
    _balanced(tex)
    assert "Peak memory" not in tex  # no memory section: no card, never a zero


# -- CSV -----------------------------------------------------------------------------------

def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_one_row_per_figure_with_unit_and_provenance():
    rows = _csv(render(full_report(), "csv"))
    assert rows[0] == ["section", "key", "value", "unit", "provenance"]
    assert all(len(r) == 5 for r in rows)
    by = {(r[0], r[1]): r for r in rows[1:]}
    assert by[("flops", "forward")] == ["flops", "forward", str(FORWARD), "FLOP", "counted"]
    assert by[("flops", "backward")][2] == str(BACKWARD)
    assert by[("params", "total")][2:] == [str(PARAMS), "parameters", "counted"]
    assert by[("memory", "peak_bytes")][2:] == ["4000000", "B", "modeled"]
    assert by[("time", "step_s")][2:] == ["0.002", "s", "modeled"]
    assert by[("footprint", "co2e_g")][2:] == ["31220000000.0", "gCO2e", "modeled"]
    assert by[("footprint", "inputs.pue.value")][2] == "1.1"
    assert by[("measured", "step_s")][4] == "measured"
    assert by[("memory", "fits")][2] == "true"
    # per-operator and per-module figures are rows too; the module rows add up to the root
    assert by[("flops", "by_op.aten.mm.default.flops")][3] == "FLOP"
    root = by[("flops", "by_module.GPT2LMHeadModel.forward")]
    assert root[2] == str(FORWARD)
    assert any(r[0] == "assumptions" and "100% & $5" in r[2] for r in rows)


def test_csv_guards_spreadsheet_formulas_but_not_numbers():
    assert cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert cell("-2+3") == "'-2+3"
    assert cell(-2.5) == "-2.5"
    assert cell(3) == 3
    rep = counted_report()
    rep.sections["model"]["name"] = "=cmd|' /C calc'!A0"
    rows = _csv(render(rep, "csv"))
    assert ["model", "name", "'=cmd|' /C calc'!A0", "", ""] in rows


# -- text and Markdown keep working with the new blocks ---------------------------------------

def test_markdown_and_table_show_predicted_vs_measured():
    rep = full_report(name="a|b")
    md = render(rep, "md")
    assert "## Predicted vs measured" in md
    assert "| step_s | 2 ms | 2.5 ms | 1.25 |" in md
    assert "a\\|b" in md
    text = render(rep, "table")
    assert "Predicted vs measured" in text


# -- the `report` verb -----------------------------------------------------------------------

def test_report_verb_rerenders_saved_json_and_infers_format_from_extension(tmp_path):
    src = tmp_path / "r.json"
    src.write_text(full_report(name=NASTY).to_json())
    for name, marker in (("r.tex", r"\begin{table}"), ("r.csv", "section,key,value,unit,provenance"),
                         ("r.html", "<!DOCTYPE html>"), ("r.md", "# mlfootprint count")):
        assert main(["report", str(src), "-o", str(tmp_path / name)]) == 0
        assert marker in (tmp_path / name).read_text()
    res = run_cli("report", str(src), "--format", "json")
    assert res.returncode == 0
    assert json.loads(res.stdout)["flops"]["forward"] == FORWARD


@pytest.mark.parametrize("content, expected", [
    ("not json", "is not a JSON report"),
    ('{"hello": 1}', "is not an mlfootprint report"),
    ('{"schema": "mlfootprint.report/99", "verb": "count"}', "newer than this mlfootprint reads"),
])
def test_report_verb_bad_input_is_one_line_exit_2(tmp_path, content, expected):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    res = run_cli("report", str(bad), "--format", "html")
    assert res.returncode == 2
    assert expected in res.stderr
    assert res.stderr.count("\n") == 1 and res.stdout == ""
    assert bad.read_text() == content  # never modified


def test_every_verb_accepts_the_new_formats():
    res = run_cli("count", "--help")
    assert "latex" in res.stdout and "csv" in res.stdout and "html" in res.stdout


def test_a_table_too_wide_says_its_constant_columns_once_then_falls_back_to_row_blocks():
    # plan's ranking at 80 columns folded every figure to 3-4 characters a line ('non / e', '77. / 14 / GiB') even
    # with its last column moved below: columns with one value in every row now go above it, once; narrower still,
    # each row is a block of 'head value' pairs, never a figure broken mid-way
    import io as _io
    from rich.console import Console
    from mlfootprint.report import text as text_mod
    from mlfootprint.report.layout import Block

    heads = ["#", "tp", "pp×vp", "cp", "dp", "zero", "mb", "recompute", "weights", "mem/dev", "step", "MFU", "tok/s",
             "vs #1"]
    rows = [[str(i), "1", "1", "1", "64", z, mb, "none", "16-bit", mem, step, mfu, tok, why]
            for i, (z, mb, mem, step, mfu, tok, why) in enumerate([
                ("3++", "4", "77.14 GiB", "5.35 s", "57.1%", "784 k", "compute"),
                ("3", "4", "75.57 GiB", "5.36 s", "57.0%", "783 k", "+0.1% step (small parts)"),
                ("3++", "2", "41.44 GiB", "5.39 s", "56.6%", "778 k", "+0.8% step: +1% work, +1% exposed DP traffic")],
                start=1)]

    def shown(width):
        console = Console(file=_io.StringIO(), width=width, color_system=None, highlight=False, markup=False)
        text_mod._table(console, Block("Layouts that fit, fastest first", heads, rows))
        return console.file.getvalue().splitlines()

    wide = shown(200)
    assert not any(line.startswith("every row") for line in wide)  # fits: every column shown
    assert any(line.split()[:3] == ["#", "tp", "pp×vp"] for line in wide)
    lines = shown(80)
    assert all(len(line) <= 80 for line in lines)
    assert lines[0] == "Layouts that fit, fastest first"
    assert lines[1] == "every row: tp 1 · pp×vp 1 · cp 1 · dp 64 · recompute none · weights 16-bit"
    assert lines[2].split() == ["#", "zero", "mb", "mem/dev", "step", "MFU", "tok/s", "vs", "#1"]
    assert lines[4].split() == ["1", "3++", "4", "77.14", "GiB", "5.35", "s", "57.1%", "784", "k", "compute"]
    narrow = shown(40)
    assert all(len(line) <= 40 for line in narrow)
    assert narrow[1].startswith("every row: tp 1 · pp×vp 1")
    body = " ".join(narrow[2:])
    assert "1: zero 3++ · mb 4 · mem/dev 77.14 GiB" in body and "2: zero 3 · mb 4" in body
    assert "tp 1" not in body  # said once, above
