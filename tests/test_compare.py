"""`mlfootprint compare`: side-by-side figures, Pareto fronts, user metrics, bad input."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from conftest import run_cli
from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.report import Report
from mlfootprint.report.compare import direction, parse_metrics, pareto_front, resolve_figure
from mlfootprint.verbs.compare import compare
from mlfootprint.report.html import embedded_report
from mlfootprint.report.render import render


def make(name: str, params: int, flops: float, step: float, co2: float, tokens_per_s: float | None = None) -> Report:
    data = {
        "schema": "mlfootprint.report/1", "verb": "analyze",
        "model": {"name": name},
        "params": {"total": params, "active": params},
        "flops": {"model": flops, "total": flops * 1.05},
        "time": {"step_s": step, "mfu": 0.4, **({"tokens_per_s": tokens_per_s} if tokens_per_s else {})},
        "footprint": {"co2e_g": co2, "energy_j": co2 / 385 * 3.6e6},
        "provenance": {"params.total": "counted", "time.step_s": "modeled", "footprint.co2e_g": "modeled"},
        "assumptions": ["batch 8", f"{name} runs alone"],
    }
    return Report.from_dict(data)


# Three models: small is cheap and worst, large is dear and best, "mid_old" is dominated by "mid".
SMALL = make("small", 10_000_000, 2e12, 0.10, 1_000.0)
MID = make("mid", 50_000_000, 1e13, 0.30, 4_000.0)
MID_OLD = make("mid_old", 60_000_000, 1.2e13, 0.35, 5_000.0)
LARGE = make("large", 300_000_000, 6e13, 1.20, 20_000.0)
ALL = [SMALL, MID, MID_OLD, LARGE]
ACC = ["--metric", "acc=70.1", "--metric", "acc=78.5", "--metric", "acc=77.0", "--metric", "acc=81.2"]


def save(tmp_path, reports=ALL):
    paths = []
    for r in reports:
        p = tmp_path / f"{r.get('model')['name']}.json"
        p.write_text(r.to_json())
        paths.append(str(p))
    return paths


# -- the Pareto front ------------------------------------------------------------------------

def test_pareto_front_by_hand():
    # x = CO2e (lower better), y = accuracy (higher better)
    xs = [1_000, 4_000, 5_000, 20_000]
    ys = [70.1, 78.5, 77.0, 81.2]
    optimal, dominated_by = pareto_front(xs, ys, "lower", "higher")
    # mid_old (5,000 g, 77.0) loses to mid (4,000 g, 78.5) on both; the other three each win somewhere
    assert optimal == [0, 1, 3]
    assert dominated_by == [None, None, 1, None]


def test_pareto_front_ties_missing_and_directions():
    # identical points do not dominate each other
    assert pareto_front([1, 1], [2, 2], "lower", "lower")[0] == [0, 1]
    # equal on x, better on y dominates
    assert pareto_front([1, 1], [2, 3], "lower", "lower") == ([0], [None, 0])
    # a point missing a figure takes no part
    assert pareto_front([1, None, 3], [5, 1, 1], "lower", "lower") == ([0, 2], [None, None, None])
    # both maximized: (3, 3) dominates everything else
    assert pareto_front([1, 3, 2], [3, 3, 1], "higher", "higher") == ([1], [1, None, 1])


def test_directions():
    assert direction("footprint.co2e_g", set(), set()) == "lower"
    assert direction("time.step_s", set(), set()) == "lower"
    assert direction("time.tokens_per_s", set(), set()) == "higher"
    assert direction("time.mfu", set(), set()) == "higher"
    assert direction("metrics.acc", set(), set()) == "higher"
    assert direction("metrics.perplexity", set(), {"metrics.perplexity"}) == "lower"
    assert direction("params.total", {"params.total"}, set()) == "higher"


def test_metrics_parse_in_report_order():
    assert parse_metrics(["acc=81.2", "acc=79", "bleu=nan", "bleu=30.5"], 2) == {"acc": [81.2, 79.0],
                                                                                   "bleu": [None, 30.5]}
    for bad, msg in ((["acc"], "NAME=VALUE"), (["acc=high", "acc=1"], "not a number"),
                     (["acc=1"], "given 1 time(s) for 2 reports"), (["1acc=1", "1acc=2"], "must start with a letter"),
                     (["acc=inf", "acc=1"], "not a finite number")):
        with pytest.raises(UserError, match=re.escape(msg)):
            parse_metrics(bad, 2)


def test_resolve_figure_suggests_the_closest():
    avail = ["flops.model", "time.step_s", "footprint.co2e_g", "metrics.acc"]
    assert resolve_figure("acc", avail) == "metrics.acc"
    assert resolve_figure("co2e_g", avail) == "footprint.co2e_g"  # a unique leaf name is enough
    with pytest.raises(UserError, match=r"Did you mean: time\.step_s\?"):
        resolve_figure("time.step", avail)


# -- the comparison report -----------------------------------------------------------------------

def test_compare_with_a_user_metric():
    rep = compare(ALL, labels=["s.json", "m.json", "mo.json", "l.json"], metrics=ACC[1::2],
                  x="footprint.co2e_g", y="acc")
    data = rep.sections["compare"]
    assert [r["label"] for r in data["reports"]] == ["small", "mid", "mid_old", "large"]
    pareto = data["pareto"]
    assert (pareto["x"], pareto["y"], pareto["x_better"], pareto["y_better"]) == (
        "footprint.co2e_g", "metrics.acc", "lower", "higher")
    assert pareto["optimal"] == ["small", "mid", "large"]
    assert pareto["status"][2] == "dominated by mid"
    rows = {f["path"]: f for f in data["figures"]}
    assert rows["metrics.acc"]["values"] == [70.1, 78.5, 77.0, 81.2]
    assert rows["time.step_s"]["values"] == [0.10, 0.30, 0.35, 1.20]
    assert rows["time.step_s"]["provenance"] == ["modeled"] * 4
    assert rows["metrics.acc"]["provenance"] == ["given"] * 4
    assert "params.active" not in rows  # equal to params.total everywhere: not repeated
    # assumptions: the shared one once, the others per report
    assert rep.assumptions[0] == "all reports: batch 8"
    assert "mid_old: mid_old runs alone" in rep.assumptions


def test_compare_default_axes_without_metrics():
    rep = compare([SMALL, LARGE], labels=["a.json", "b.json"])
    pareto = rep.sections["compare"]["pareto"]
    # first two shared cost figures of the default list: footprint.co2e_g, then footprint.energy_j
    assert (pareto["x"], pareto["y"]) == ("footprint.co2e_g", "footprint.energy_j")
    assert pareto["optimal"] == ["small"]  # small is lower on both


def test_plan_reports_compare_by_their_best_layouts():
    # two saved plans (the best layout's step, throughput, MFU and memory): rows with values, and a Pareto front
    # on step time × memory; the 8-device plan is faster and lighter per device, so it alone is optimal
    def plan_report(name: str, devices: int, step: float, peak: float) -> Report:
        return Report.from_dict({"schema": "mlfootprint.report/1", "verb": "plan", "model": {"name": name},
                                 "plan": {"devices": devices, "step_s": step, "tokens_per_s": 8192 / step,
                                          "mfu": 0.1, "peak_bytes": peak}})
    rep = compare([plan_report("four", 4, 0.0121, 3.67 * 2**30), plan_report("eight", 8, 0.00833, 2.43 * 2**30)])
    section = rep.sections["compare"]
    rows = {r["path"]: r for r in section["figures"]}
    assert rows["plan.step_s"]["values"] == [0.0121, 0.00833] and rows["plan.peak_bytes"]["better"] == "lower"
    assert (section["pareto"]["x"], section["pareto"]["y"]) == ("plan.step_s", "plan.peak_bytes")
    assert section["pareto"]["optimal"] == ["eight"]


def test_compare_renders_in_every_format(tmp_path):
    rep = compare(ALL, labels=save(tmp_path), metrics=ACC[1::2], x="footprint.co2e_g", y="acc")
    text = render(rep, "table")
    assert "dominated by mid" in text
    md = render(rep, "md")
    assert "| metrics.acc | higher | 70.1 | 78.5 | 77 | 81.2 |" in md
    tex = render(rep, "latex")
    assert r"small$^{\ast}$ & mid$^{\ast}$ & mid\_old & large$^{\ast}$ \\" in tex
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}")
    rows = list(csv.reader(io.StringIO(render(rep, "csv"))))
    assert rows[0] == ["figure", "unit", "better", "small", "mid", "mid_old", "large"]
    by = {r[0]: r for r in rows}
    assert by["footprint.co2e_g"] == ["footprint.co2e_g", "gCO2e", "lower", "1000.0", "4000.0", "5000.0", "20000.0"]
    assert by["pareto_optimal(metrics.acc vs footprint.co2e_g)"][3:] == ["true", "true", "false", "true"]
    page = render(rep, "html")
    assert page.count('<svg id="plot-pareto"') == 1
    assert embedded_report(page)["compare"]["pareto"]["optimal"] == ["small", "mid", "large"]


def test_compare_cli_json_and_rerender(tmp_path):
    files = save(tmp_path)
    out = tmp_path / "cmp.json"
    assert main(["compare", *files, *ACC, "--x", "co2e_g", "--y", "acc", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["verb"] == "compare"
    assert data["compare"]["pareto"]["optimal"] == ["small", "mid", "large"]
    # a saved comparison is a report: `report` renders it again
    html_out = tmp_path / "cmp.html"
    assert main(["report", str(out), "-o", str(html_out)]) == 0
    assert 'id="plot-pareto"' in html_out.read_text()


def test_compare_maximize_flips_a_figure(tmp_path):
    files = save(tmp_path, [SMALL, LARGE])
    out = tmp_path / "c.json"
    # "bigger is better" for params (say, capacity): now large wins on params, small on step time
    assert main(["compare", *files, "--x", "time.step_s", "--y", "params.total", "--maximize", "params.total",
                 "-o", str(out)]) == 0
    pareto = json.loads(out.read_text())["compare"]["pareto"]
    assert pareto["y_better"] == "higher"
    assert pareto["optimal"] == ["small", "large"]


@pytest.mark.parametrize("extra, expected", [
    (["--x", "footprint.co2", "--y", "acc"], "unknown --x figure 'footprint.co2'"),
    (["--x", "acc", "--y", "metrics.acc"], "--x and --y both name metrics.acc"),
    (["--metric", "acc=1"], "--metric acc is given 1 time(s) for 4 reports"),
    (["--maximize", "time.step_s", "--minimize", "step_s"], "both --maximize and --minimize"),
])
def test_compare_bad_options_are_one_line_exit_2(tmp_path, capsys, extra, expected):
    files = save(tmp_path)
    metrics = [] if "--metric" in extra else ACC
    assert main(["compare", *files, *metrics, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlfootprint: error: ") and expected in err and err.count("\n") == 1


def test_compare_cli_errors_exit_2(tmp_path):
    files = save(tmp_path, [SMALL, MID])
    res = run_cli("compare", *files, "--x", "footprint.co2", "--y", "time.step_s")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("mlfootprint: error: unknown --x figure 'footprint.co2'")
    assert "Did you mean: footprint.co2e_g" in res.stderr and res.stderr.count("\n") == 1
    not_report = tmp_path / "notes.json"
    not_report.write_text('{"accuracy": 81.2}')
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**SMALL.to_dict(), "schema": "mlfootprint.report/7"}))
    for bad, msg in ((not_report, "is not an mlfootprint report"), (newer, "newer than this mlfootprint reads")):
        res = run_cli("compare", files[0], str(bad))
        assert res.returncode == 2 and msg in res.stderr and res.stderr.count("\n") == 1
    res = run_cli("compare", files[0])
    assert res.returncode == 2 and "two or more reports" in res.stderr


def test_the_terminal_answers_first(tmp_path):
    # compare printed every report's assumptions after the table (33 of them, 151 lines for two analyze reports);
    # now the comparison, the Pareto front and the reports, and the assumptions with --details
    paths = save(tmp_path, [SMALL, MID])
    short = run_cli("compare", *paths)
    assert short.returncode == 0, short.stderr
    assert "Comparison" in short.stdout and "Pareto" in short.stdout and "Assumptions" not in short.stdout
    assert "small runs alone" not in short.stdout and "--details" in short.stdout
    full = run_cli("compare", *paths, "--details")
    assert "Assumptions" in full.stdout and "small runs alone" in full.stdout


def test_a_text_field_as_an_axis_is_named_as_text(tmp_path, capsys):
    # 'compare a b --x model.name' said the figure was unknown ('no report has it'): it is there, as text
    from mlfootprint.cli import main

    a = tmp_path / "a.json"
    assert main(["count", "tests/data/configs/tiny-gpt2", "--seq", "8", "-o", str(a)]) == 0
    for option, name in (("--x", "model.name"), ("--y", "workload.mode"), ("--maximize", "model.name")):
        capsys.readouterr()
        assert main(["compare", str(a), str(a), option, name]) == 2
        err = capsys.readouterr().err.strip()
        assert f"figure '{name}' is text, not a number" in err and "no report has it" not in err, err
