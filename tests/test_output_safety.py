"""Hostile strings in every HTML and Markdown output stay text; only http(s) URLs become links; every HTML page
carries a strict Content-Security-Policy; a claims file runs code only when given with --allow-code."""
from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path

import pytest

from mlfootprint.cli import main
from mlfootprint.core.errors import UserError
from mlfootprint.report.claims import CLAIMS_CSP
from mlfootprint.report.markdown import md_escape, md_link, safe_url
from mlfootprint.report.render import render
from test_render import full_report

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
JS_LINK = "[click](javascript:alert(3))"
JS_URL = "javascript:alert(4)"
HOSTILE = f"{SCRIPT} {IMG} {JS_LINK}"


def assert_markdown_is_inert(text: str) -> None:
    """No raw HTML tag and no link whose target is not http(s)."""
    assert not re.search(r"<\s*(script|img|a|iframe|svg)\b", text, flags=re.I), text
    assert not re.search(r"(?<!\\)\]\(\s*(?!https?://)", text), text  # every unescaped '](' opens http(s)
    assert not re.search(r"<javascript:", text, flags=re.I)


def assert_csp_is_strict(page: str) -> str:
    metas = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert len(metas) == 1
    csp = html.unescape(metas[0])
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["base-uri"] == "'none'" and directives["form-action"] == "'none'"
    for name, value in directives.items():  # nothing is loaded from anywhere, no script outside its hash
        assert not re.search(r"https?:|\*|data:|blob:|'self'|'unsafe-eval'", value), (name, value)
    assert "'unsafe-inline'" not in directives.get("script-src", "'none'")
    return csp


# --------------------------------------------------------------------------- the escaping primitives


def test_md_escape_and_links() -> None:
    assert md_escape(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert md_escape(JS_LINK) == "\\[click\\](javascript:alert(3))"
    assert md_escape("a|b\nc & d") == "a\\|b c &amp; d"
    assert md_link("paper", "https://arxiv.org/abs/2204.02311") == "[paper](https://arxiv.org/abs/2204.02311)"
    assert md_link("x", "https://e.org/a_(b)|c") == "[x](https://e.org/a_%28b%29%7Cc)"
    for bad in (JS_URL, " JavaScript:alert(1)", "data:text/html,<script>", "//evil.org/x", "/etc/passwd",
                "https://e.org/a b", 'https://e.org/"onclick=', "https://e.org/<x>", "vbscript:x", "", None):
        assert safe_url(bad) is None, bad
        assert md_link("t", bad) == "t"


# --------------------------------------------------------------------------- reports (every verb's Markdown and HTML)


@pytest.fixture(scope="module")
def hostile_report():
    rep = full_report(name=HOSTILE)
    rep.assume(f"an assumption with {HOSTILE}")
    rep.conventions["note"] = HOSTILE
    return rep


@pytest.mark.parametrize("details", [True, False])
def test_report_markdown_escapes_names_notes_and_assumptions(hostile_report, details: bool) -> None:
    import argparse

    text = render(hostile_report, "md", argparse.Namespace(details=details, depth=2, by_op=False, macs=False))
    assert_markdown_is_inert(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(2)&gt; \\[click\\](javascript:alert(3))" \
        in text


def test_report_html_escapes_and_has_a_strict_csp(hostile_report) -> None:
    page = render(hostile_report, "html")
    assert SCRIPT not in page and IMG not in page
    assert not re.search(r"""href\s*=\s*["']?\s*javascript:""", page, flags=re.I)
    csp = assert_csp_is_strict(page)
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and len(scripts) == 1
    assert "img-src" not in csp  # the page has no image: plots are inline SVG


# --------------------------------------------------------------------------- claims


def claims_file(tmp_path: Path, url: str = JS_URL, model: str | None = None, name: str = "hostile.toml") -> Path:
    inputs = f'model = "{model}", tokens = 1e9, seq = 16' if model else "params = 1e9, tokens = 1e12"
    kind = "train_flops" if model else "train_flops_from_params"
    path = tmp_path / name
    path.write_text(f"""[[claim]]
id = "hostile"
title = "{SCRIPT} {IMG}"
source = "{JS_LINK}"
url = "{url}"
kind = "{kind}"
expected = 6e21
unit = "FLOPs"
note = "{SCRIPT}"
inputs = {{ {inputs} }}
""", encoding="utf-8")
    return path


def run_claims_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["claims", "--only", "hostile", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_claims_markdown_and_html_keep_a_hostile_claim_as_text(tmp_path, capsys) -> None:
    path = claims_file(tmp_path)
    code, md, err = run_claims_cli(capsys, "--file", str(path), "--format", "md")
    assert code == 0, err
    assert_markdown_is_inert(md)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(2)&gt;" in md
    assert "\\[click\\](javascript:alert(3))" in md  # the source is text: its javascript: URL no link
    out = tmp_path / "claims.html"
    assert main(["claims", "--only", "hostile", "--file", str(path), "--format", "html", "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert SCRIPT not in page and IMG not in page and "<a " not in page
    assert "javascript:" not in page.split("<body>")[1].replace("](javascript:alert(3))", "")


def test_claims_html_links_only_http_and_its_csp_allows_only_its_style(tmp_path, capsys) -> None:
    path = claims_file(tmp_path, url="https://arxiv.org/abs/2001.08361")
    code, md, _ = run_claims_cli(capsys, "--file", str(path), "--format", "md")
    assert code == 0 and "](https://arxiv.org/abs/2001.08361)" in md
    out = tmp_path / "claims.html"
    assert main(["claims", "--only", "hostile", "--file", str(path), "--format", "html", "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert '<a href="https://arxiv.org/abs/2001.08361" rel="noopener noreferrer">' in page
    csp = assert_csp_is_strict(page)
    assert csp == CLAIMS_CSP
    style = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
    assert len(style) == 1 and "<script" not in page and ' style="' not in page
    digest = base64.b64encode(hashlib.sha256(style[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp and "script-src" not in csp  # falls back to 'none'


# --------------------------------------------------------------------------- claims files and code

FACTORY = """from pathlib import Path
Path({marker!r}).write_text("imported")
import torch
def make():
    return torch.nn.Linear(4, 4)
"""


def factory(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "imported.txt"
    code = tmp_path / "evil.py"
    code.write_text(FACTORY.format(marker=str(marker)), encoding="utf-8")
    return code, marker


def test_a_claims_file_naming_code_is_refused_without_allow_code(tmp_path, capsys) -> None:
    code, marker = factory(tmp_path)
    path = claims_file(tmp_path, url="https://e.org", model=f"{code}:make")
    status, out, err = run_claims_cli(capsys, "--file", str(path))
    assert status == 2 and out == "" and not marker.exists()
    assert err.strip().splitlines() == [
        f"mlfootprint: error: {path}: claim 'hostile' names Python code to import ('{code}:make'); claims files run "
        "no code unless you ask: check the file, then pass --allow-code"]
    import mlfootprint as mf

    with pytest.raises(UserError, match="names Python code to import") as err:
        mf.claims([str(path)], ["hostile"])
    assert str(err.value).endswith("check the file, then pass allow_code=True")
    assert not marker.exists()


def test_a_claims_file_in_the_user_folder_never_runs_code(tmp_path, capsys, monkeypatch) -> None:
    code, marker = factory(tmp_path)
    folder = tmp_path / "claims"
    folder.mkdir()
    path = claims_file(folder, url="https://e.org", model=f"{code}:make")
    monkeypatch.setenv("MLFOOTPRINT_CLAIMS_PATH", str(folder))
    status, _out, err = run_claims_cli(capsys, "--allow-code")
    assert status == 2 and not marker.exists()
    assert err.strip() == (
        f"mlfootprint: error: {path}: claim 'hostile' names Python code to import ('{code}:make'); claims files "
        f"found in the user claims folder never run code: move the file out of the folder and pass it with "
        f"--file {path} --allow-code")


def test_allow_code_with_the_file_on_the_command_line_imports_it(tmp_path) -> None:
    import mlfootprint as mf

    code, marker = factory(tmp_path)
    path = claims_file(tmp_path, url="https://e.org", model=f"{code}:make")
    with pytest.raises(UserError):
        mf.claims([str(path)], ["hostile"], allow_code=True)  # a Linear with no --input cannot be traced ...
    assert marker.read_text() == "imported"  # ... but the user's file was imported, as asked


def test_the_checker_refuses_code_for_a_claim_not_cleared(tmp_path) -> None:
    from mlfootprint.papers import Claim, evaluate

    code, marker = factory(tmp_path)
    claim = Claim(id="c", title="t", source="s", url="", kind="train_flops", expected=1.0, unit="FLOPs",
                  inputs={"model": f"{code}:make", "tokens": 1e9, "seq": 16}, origin="api")
    with pytest.raises(UserError, match="names Python code to import"):
        evaluate(claim)
    assert not marker.exists()


# --------------------------------------------------------------------------- hardware show (user catalog files)


def test_hardware_show_markdown_keeps_a_hostile_user_device_as_text(tmp_path, capsys, monkeypatch) -> None:
    folder = tmp_path / "hw"
    folder.mkdir()
    (folder / "x.toml").write_text(f"""[devices.evil]
base = "l4"
name = "{SCRIPT} {JS_LINK}"
tdp = {{ value = 1, source = "{IMG}", url = "{JS_URL}", date = "2026-01" }}
""", encoding="utf-8")
    monkeypatch.setenv("MLFOOTPRINT_HARDWARE_PATH", str(folder))
    assert main(["hardware", "show", "evil", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert_markdown_is_inert(md)
    assert "| TDP | 1 W | published | &lt;img src=x onerror=alert(2)&gt; (javascript:alert(4)) | 2026-01 |" in md
    assert "## &lt;script&gt;alert(1)&lt;/script&gt; \\[click\\](javascript:alert(3)) (`evil`)" in md
    # a catalog source with an https URL is a link
    assert "[NVIDIA L4 Tensor Core GPU datasheet (tensor figures listed with sparsity)]" \
           "(https://www.nvidia.com/en-us/data-center/l4/)" in md


# --------------------------------------------------------------------------- the terminal

RICH = "[/b] [link=javascript:alert(5)]x[/link] [bold]y[/bold]"


@pytest.mark.parametrize("details", [True, False])
def test_terminal_output_shows_markup_like_text_as_is(details: bool) -> None:
    # rich would read '[/b]' as a closing tag (a MarkupError traceback) and '[link=…]' as a terminal hyperlink
    import argparse

    rep = full_report(name=RICH)
    rep.assume(f"an assumption with {RICH}")
    text = render(rep, "table", argparse.Namespace(details=details, depth=2, by_op=False, macs=False, width=200,
                                                   color=True))
    assert "\x1b]8;" not in text  # no OSC 8 hyperlink
    assert RICH in text


def test_claims_table_shows_markup_like_text_as_is(tmp_path, capsys) -> None:
    path = claims_file(tmp_path, url="https://e.org")
    path.write_text(path.read_text(encoding="utf-8").replace(f'title = "{SCRIPT} {IMG}"', f'title = "{RICH}"'),
                    encoding="utf-8")
    code, out, err = run_claims_cli(capsys, "--file", str(path), "--format", "table")
    assert code == 0, err
    assert "[/b] [link=javascript:alert(5)]x[/link]" in "".join(out.split("\n"))  # folded over lines, still text
