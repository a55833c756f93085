"""`mlfootprint table`: the paper's efficiency table over several reports (one unit per column, modelled cells
marked, measured figures preferred)."""
from __future__ import annotations

import csv
import io
import json

import pytest

from mlfootprint import table
from mlfootprint.cli import main
from mlfootprint.report import Report
from mlfootprint.report.paper_table import column_unit, grid
from mlfootprint.report.render import render

GIB = 2**30


def _report(name: str, params: int, peak: float, measured_peak: float | None = None, step: float = 0.5) -> Report:
    rep = Report(verb="analyze")
    rep.sections["model"] = {"name": name}
    rep.sections["params"] = {"total": params}
    rep.sections["flops"] = {"model": 6 * params * 2048}
    rep.sections["memory"] = {"peak_bytes": peak}
    rep.sections["time"] = {"step_s": step, "mfu": 0.41}
    rep.provenance.update({"params.total": "counted", "flops.model": "counted", "memory.peak_bytes": "modeled",
                           "time.step_s": "modeled", "time.mfu": "modeled"})
    if measured_peak is not None:
        rep.sections["measured"] = {"peak_bytes": measured_peak}
        rep.provenance["measured.peak_bytes"] = "measured"
    return rep


def test_columns_share_one_unit_and_measured_figures_win():
    rep = table([_report("small", 120_000_000, 5 * GIB, measured_peak=3 * GIB),
                 _report("big", 350_000_000, 9 * GIB, step=1.5)], labels=["Small", "Big"])
    heads, cells, marked = grid(rep)
    assert heads == ["Model", "Params (M)", "FLOPs / step (TFLOP)", "Peak memory (GiB)", "Step time (s)", "MFU (%)"]
    # 6 × 120e6 × 2048 = 1.47456e12 FLOP; 6 × 350e6 × 2048 = 4.3008e12
    assert cells[0] == ["Small", "120", "1.47", "3.00", "0.500†", "41.0†"]   # the measured 3 GiB, not the modelled 5
    assert cells[1] == ["Big", "350", "4.30", "9.00†", "1.50†", "41.0†"]
    assert marked
    rows = rep.sections["table"]["rows"]
    assert rows[0]["paths"]["memory"] == "measured.peak_bytes" and rows[0]["provenance"]["memory"] == "measured"
    assert rows[1]["paths"]["memory"] == "memory.peak_bytes" and rows[1]["provenance"]["memory"] == "modeled"


def test_column_unit_follows_the_median():
    assert column_unit("parameters", [7e9, 70e9, 405e9]) == (1e9, "B")
    assert column_unit("s", [0.003, 0.2]) == (1e-3, "ms")
    assert column_unit("J", [3.6e6 * 5]) == (3.6e6, "kWh")
    assert column_unit("fraction", [0.3]) == (0.01, "%")


def test_latex_is_one_booktabs_float_and_csv_keeps_base_units():
    rep = table([_report("a_1", 1_000_000, GIB), _report("b", 2_000_000, 2 * GIB)])
    tex = render(rep, "latex")
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$^\dagger$" in tex
    assert r"a\_1 & 1.00 & " in tex  # escaped label, params in M
    assert "†" not in tex  # the mark is typeset, not a raw Unicode dagger
    rows = list(csv.reader(io.StringIO(render(rep, "csv"))))
    assert rows[0][:4] == ["model", "source", "params (parameters)", "flops (FLOP)"]
    assert rows[1][2] == "1000000" and float(rows[2][4]) == 2 * GIB


def test_cli_table_from_saved_reports(tmp_path, capsys):
    files = []
    for i, rep in enumerate([_report("gpt", 124_000_000, GIB), _report("llama", 6_700_000_000, 60 * GIB)]):
        f = tmp_path / f"r{i}.json"
        f.write_text(rep.to_json())
        files.append(str(f))
    out = tmp_path / "table.tex"
    assert main(["table", *files, "--columns", "params,memory", "-o", str(out)]) == 0
    tex = out.read_text()
    # the median of 0.124e9 and 6.7e9 parameters is 3.4e9: billions
    assert r"Params (B) & Peak memory (GiB) \\" in tex and r"gpt & 0.124 & 1.00$^\dagger$ \\" in tex
    assert main(["table", *files, "--columns", "params,memory", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["key"] for c in data["table"]["columns"]] == ["params", "memory"]
    assert [r["label"] for r in data["table"]["rows"]] == ["gpt", "llama"]


@pytest.mark.parametrize("args, expected", [
    (["--columns", "params,watts"], "unknown column 'watts'"),
    (["--label", "only-one"], "1 labels for 2 reports"),
    (["--columns", "energy"], "none of the reports has any of the columns energy"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, expected):
    files = []
    for i in range(2):
        f = tmp_path / f"r{i}.json"
        f.write_text(_report(f"m{i}", 1000, GIB).to_json())
        files.append(str(f))
    assert main(["table", *files, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_missing_report_file_is_one_line(tmp_path, capsys):
    assert main(["table", str(tmp_path / "nope.json")]) == 2
    assert "cannot read report" in capsys.readouterr().err
