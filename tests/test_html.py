"""The self-contained HTML report, checked as text (the browser test opens it in Chromium)."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import sys

import pytest

from mlfootprint.report import Report, plots
from mlfootprint.report.html import embedded_report, render_page, roofline_device
from mlfootprint.report.render import render
from test_render import FORWARD, counted_report, full_report

XSS = "<script>alert(1)</script>"
PLOT_IDS = ("plot-modules", "plot-memory", "plot-roofline", "plot-pred-measured", "plot-footprint")


@pytest.fixture(scope="module")
def page() -> str:
    return render(full_report(name=XSS), "html")


def put(rep, name, data, provenance=None):
    """A hand-made section for rendering tests (the verbs build real ones)."""
    rep.sections[name] = data
    for key, kind in (provenance or {}).items():
        rep.mark(f"{name}.{key}", kind)


def test_user_strings_are_escaped(page):
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # only our two script elements: the JSON data block and the page's own script
    assert len(re.findall(r"<script\b", page)) == 2
    assert re.search(r'<h1 id="title">&lt;script&gt;alert\(1\)&lt;/script&gt;</h1>', page)
    assert "<title>mlfootprint count: &lt;script&gt;" in page
    # the assumption with markup stays text
    assert "<b>not bold</b>" not in page and "&lt;b&gt;not bold&lt;/b&gt;" in page


def test_page_is_self_contained(page):
    # nothing is fetched: no external scripts, styles, images, fonts or frames
    assert not re.search(r"<(link|iframe|object|embed)\b", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", page)
    assert "@import" not in page
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page).group(1)
    assert "default-src &#x27;none&#x27;" in csp


def test_csp_allows_exactly_the_inline_script(page):
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src &#x27;sha256-{digest}&#x27;" in page


def test_embedded_json_round_trips(page):
    data = embedded_report(page)
    assert data["model"]["name"] == XSS
    assert data["flops"]["forward"] == FORWARD
    assert Report.from_dict(data).sections["memory"]["peak_bytes"] == 4_000_000


def test_all_plots_present_with_unique_ids(page):
    for pid in PLOT_IDS:
        assert page.count(f'<svg id="{pid}"') == 1, pid
    ids = re.findall(r'\bid="([^"]+)"', page)
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, sorted(dupes)[:10]
    # every url(#...) and href="#..." points at an id of the page
    refs = set(re.findall(r"url\(#([^)]+)\)", page)) | set(re.findall(r'href="#([^"]+)"', page))
    assert refs <= set(ids), sorted(refs - set(ids))[:10]


def test_summary_cards_and_conventions(page):
    cards = re.findall(r'<div class="card"><div class="label">(.*?) (?:<span|</div>)', page)
    assert cards[:3] == ["Parameters", "Model FLOPs / step", "FLOPs / token"]
    for label in ("Peak memory", "Step time", "MFU", "Energy", "CO2e", "Water", "Cost"):
        assert label in cards
    assert '<h2 id="conventions">' in page and "one floating-point multiply or add" in page
    assert '<h2 id="assumptions">' in page


def test_roofline_device_from_catalog_report_or_none():
    peak, bw, label, where = roofline_device(full_report())
    # A100 80GB SXM datasheet: 312 TFLOP/s dense bf16, 2,039 GB/s
    assert (peak, bw) == (312e12, 2039e9) and "bf16" in label and "hardware catalog" in where
    rep = counted_report(hardware=None)
    assert roofline_device(rep)[:2] == (None, None)
    # the peak a prediction used (here a calibrated-like 1 PFLOP/s on an H100), with the catalog's bandwidth
    put(rep, "time", {"step_s": 1.0, "hardware": "h100-sxm", "peak_flop_per_s": 1e15, "peak_dtype": "bf16"})
    peak, bw, label, where = roofline_device(rep)
    assert (peak, bw) == (1e15, 3.35e12) and label.endswith("(bf16)") and "time.peak_flop_per_s" in where


def test_roofline_without_device_plots_intensity_only():
    page = render(counted_report(hardware=None), "html")
    assert 'id="plot-roofline"' in page
    assert "Arithmetic intensity only: no device peak or bandwidth" in page
    assert 'id="plot-memory"' not in page and 'id="plot-footprint"' not in page  # no section, no plot


def test_module_bars_add_up_to_the_model():
    tree = counted_report().sections["flops"]["by_module"]
    rows = plots.module_rows(tree)
    assert 2 <= len(rows) <= 24
    for key in ("forward", "backward", "other"):
        assert sum(r[key] for r in rows) == pytest.approx(tree[key])
    assert sum(r["params"] for r in rows) == tree["params"]


def test_without_matplotlib_the_page_says_how_to_get_plots(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    assert not plots.available()
    page = render_page(full_report(name=XSS))
    assert 'id="plots-unavailable"' in page
    assert "pip install &#x27;mlfootprint[plot]&#x27;" in page
    assert "<svg" not in page
    with pytest.raises(plots.PlotsUnavailable, match=re.escape("pip install 'mlfootprint[plot]'")):
        plots.module_plot({"name": "m", "forward": 1, "children": []})


def test_dollar_signs_in_names_do_not_start_mathtext():
    rep = full_report(name="cost $5 model $x")
    page = render(rep, "html")  # an unbalanced or paired $ must not break or reinterpret the plot labels
    assert 'id="plot-modules"' in page
    json.loads(json.dumps(embedded_report(page)))


def test_module_rows_stop_at_the_level_that_fits():
    # 40 identical blocks under "h": opening "h" would need 41 bars (> 24), so the chart stays at
    # [emb, h]; the root's own 7 forward / 3 other FLOPs (a loss, say) get one pooled bar so the sum holds.
    blocks = [{"name": str(i), "path": f"h.{i}", "params": 10, "forward": 100, "backward": 200, "other": 5,
               "children": [{"name": "a", "path": f"h.{i}.a", "params": 10, "forward": 100, "backward": 200,
                             "other": 5, "children": []}]} for i in range(40)]
    tree = {"name": "M", "path": "", "params": 410, "forward": 4007, "backward": 8000, "other": 203, "children": [
        {"name": "emb", "path": "emb", "params": 10, "forward": 0, "backward": 0, "other": 0, "children": []},
        {"name": "h", "path": "h", "params": 400, "forward": 4000, "backward": 8000, "other": 200,
         "children": blocks}]}
    rows = plots.module_rows(tree)
    assert [r["path"] for r in rows] == ["emb", "h", "(small ops outside the modules shown)"]
    assert (rows[2]["forward"], rows[2]["other"]) == (7, 3)


def test_memory_components_prefer_what_is_alive_at_the_peak():
    memory = {"weights_bytes": 500, "optimizer_bytes": 1000, "peak_bytes": 1800, "device_bytes": 80e9,
              "headroom_bytes": 79e9, "host_bytes": 7, "at_peak": {"weights_bytes": 500, "optimizer_bytes": 1000,
                                                                   "activations_bytes": 300, "kv_cache_bytes": 0}}
    # at the peak: 500 + 1000 + 300 = 1,800 bytes = peak_bytes; zero-sized parts are left out
    assert plots.memory_components(memory) == [("weights", 500.0), ("optimizer", 1000.0), ("activations", 300.0)]
    del memory["at_peak"]
    # without it: the section's own components, never the headroom, capacity or host (off-device) bytes
    assert plots.memory_components(memory) == [("weights", 500.0), ("optimizer", 1000.0)]


def test_plot_ticks_and_labels_carry_no_exponents_and_memory_is_in_gib(page):
    # matplotlib's defaults printed '10^-2' on log axes and '5e-07' on a footprint bar of one step's kWh; the
    # rest of the report writes plain numbers, and gives memory in GiB (the memory plot said GB, the card GiB)
    texts = re.findall(r"<text[^>]*>(.*?)</text>", page, flags=re.S)
    assert texts
    assert not [t for t in texts if re.search(r"\d[eE][+-]?\d|\^|\$", t)]
    memory = page[page.index('id="plot-memory"'):]
    memory = memory[:memory.index("</svg>")]
    labels = re.findall(r"<text[^>]*>(.*?)</text>", memory, flags=re.S)
    assert any(t.endswith("per device") and ("iB" in t or t.startswith("bytes")) for t in labels), labels
    assert not [t for t in labels if re.search(r"\d\s*[kMG]B\b", t)]
    # one step's energy is joules, not 0.000002 kWh
    assert plots._scaled([2e-6], "kWh") == (1 / 3.6e6, "J")
    assert plots._scaled([0.5], "kWh") == (1e-3, "Wh") and plots._scaled([5.0], "kWh") == (1.0, "kWh")
