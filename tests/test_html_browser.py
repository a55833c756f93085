"""Acceptance: the HTML report opened in headless Chromium (Debian's `chromium` package).

The page must load with no console errors (script errors, CSP violations, failed fetches),
show its plots, show a model named <script>alert(1)</script> as text (no alert opens),
and run its own script under its Content-Security-Policy. A full-page screenshot is
saved to test-artifacts/. Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: fds 3 and 4), so no port, driver or extra package is needed.

Without chromium the tests skip, except under CI (the CI variable set), where they fail:
.ci/run installs it with `apt-get install chromium`.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mlfootprint.verbs.compare import compare
from mlfootprint.report.render import render
from test_render import full_report

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
XSS = "<script>alert(1)</script>"
PLOT_IDS = ("plot-modules", "plot-memory", "plot-roofline", "plot-pred-measured", "plot-footprint")
TIMEOUT_S = 30.0


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class Chromium:
    """Headless Chromium driven over the DevTools protocol (JSON messages, NUL-terminated, on fds 3/4)."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
             "--remote-debugging-pipe")

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="mlfootprint-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        # The browser reads commands on fd 3 and writes answers on fd 4; bash maps our pipe ends there
        # (they are moved above 9 first so the mapping never collides with them).
        cmd_r, res_w = (self._above_9(fd) for fd in (cmd_r, res_w))
        script = f'exec "$0" "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-'
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", script, binary, *self.FLAGS,
             f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, pass_fds=(cmd_r, res_w))
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    @staticmethod
    def _above_9(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-1500:]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer within {TIMEOUT_S:g} s; stderr: {self.stderr_tail()}")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited; stderr: {self.stderr_tail()}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read(deadline)
            if reply.get("id") == msg["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _wait(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        seen = 0
        while True:
            while seen < len(self.events):
                ev = self.events[seen]
                seen += 1
                if ev.get("sessionId") != session:
                    continue
                if ev.get("method") == "Page.javascriptDialogOpening":
                    # an alert() blocks the page: it is recorded in events (a failure) and dismissed
                    self.send("Page.handleJavaScriptDialog", {"accept": True}, session)
                if ev.get("method") == method:
                    return ev
            self.events.append(self._read(deadline))

    def open(self, path: Path) -> str:
        """Load a file in a new tab and wait for its load event; returns the tab's session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(method, session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.navigate", {"url": path.resolve().as_uri()}, session)
        self._wait("Page.loadEventFired", session)
        return session

    def evaluate(self, session: str, expression: str):
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def problems(self, session: str) -> list[str]:
        """Console errors, uncaught exceptions, browser error logs (CSP, network) and dialogs of a tab."""
        out = []
        for ev in self.events:
            if ev.get("sessionId") != session:
                continue
            p, method = ev.get("params", {}), ev.get("method")
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description", "")))
                                                               for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = p.get("exceptionDetails", {})
                out.append("exception: " + str(details.get("exception", {}).get("description", details.get("text"))))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog {p.get('type')}: {p.get('message')}")
        return out

    def screenshot(self, session: str, path: Path, max_height: int = 16000) -> None:
        size = self.send("Page.getLayoutMetrics", session=session)
        height = min(int((size.get("cssContentSize") or size["contentSize"])["height"]) + 1, max_height)
        shot = self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}}, session)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            os.close(fd)
        self._stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    binary = _chromium()
    if binary is None:
        if _in_ci():
            pytest.fail("chromium is not installed but CI is set: .ci/run must install it (apt-get install chromium)")
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium); "
                    "the HTML report's browser acceptance test needs it")
    b = Chromium(binary)
    try:
        yield b
    finally:
        b.close()


def test_html_report_in_chromium(browser, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(full_report(name=XSS), "html"), encoding="utf-8")
    tab = browser.open(page)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(tab, ARTIFACTS / "html-report.png")

    assert browser.problems(tab) == []  # no console errors, no CSP violation, no failed fetch, no alert
    state = browser.evaluate(tab, """({
        title: document.getElementById('title').textContent,
        docTitle: document.title,
        scripts: document.querySelectorAll('script').length,
        ready: document.body.getAttribute('data-ready'),
        svgs: document.querySelectorAll('figure.plot > svg').length,
        ids: Array.from(document.querySelectorAll('figure.plot > svg')).map(s => s.id),
        plotHeights: Array.from(document.querySelectorAll('figure.plot > svg')).map(s => s.getBoundingClientRect().height),
        cards: document.querySelectorAll('#summary .card').length,
        bodyText: document.body.innerText.includes('<script>alert(1)</script>'),
    })""")
    assert state["title"] == XSS                  # shown as text, not run
    assert state["bodyText"] is True
    assert state["docTitle"] == f"mlfootprint count: {XSS}"
    assert state["scripts"] == 2                  # the JSON data block and the page's own script only
    assert state["ready"] == "1"                  # the page's own script ran under its CSP
    assert state["ids"] == list(PLOT_IDS)
    assert all(h > 100 for h in state["plotHeights"]), state["plotHeights"]  # drawn, not collapsed
    assert state["cards"] >= 10
    assert (ARTIFACTS / "html-report.png").stat().st_size > 50_000


def test_compare_page_in_chromium(browser, tmp_path):
    a, b = full_report(name="model A"), full_report(name=XSS)
    b.sections["footprint"]["co2e_g"] *= 0.5
    rep = compare([a, b], labels=["a.json", "b.json"], metrics=["acc=80", "acc=75"], x="footprint.co2e_g", y="acc")
    page = tmp_path / "compare.html"
    page.write_text(render(rep, "html"), encoding="utf-8")
    tab = browser.open(page)
    browser.screenshot(tab, ARTIFACTS / "html-compare.png")
    assert browser.problems(tab) == []
    ids = browser.evaluate(tab, "Array.from(document.querySelectorAll('figure.plot > svg')).map(s => s.id)")
    assert ids == ["plot-pareto"]
    # A: more CO2e, higher accuracy; B: half the CO2e, lower accuracy → both Pareto-optimal
    assert rep.sections["compare"]["pareto"]["optimal"] == ["model A", XSS]


def test_the_harness_sees_errors_and_alerts(browser, tmp_path):
    # The checks above would pass vacuously if the harness could not see problems: it must.
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><title>bad</title><h1 id=title>x</h1>"
                   "<script>console.error('boom'); alert(1); missing();</script>", encoding="utf-8")
    tab = browser.open(bad)
    problems = browser.problems(tab)
    assert "console.error: boom" in problems
    assert "dialog alert: 1" in problems
    assert any(p.startswith("exception: ReferenceError") for p in problems)


def test_html_card_shows_a_workload_that_does_not_fit_as_a_warning(browser, tmp_path):
    from mlfootprint import Workload, analyze

    # Llama 2 7B, full training of 8 × 4096 tokens on one H100: 325 GiB of 80 (the README's example)
    rep = analyze("llama-2-7b", Workload(mode="train", seq=4096, batch=8, hardware="h100-sxm", devices=1))
    assert rep.sections["memory"]["fits"] is False and rep.sections["memory"]["suggestions"]
    page = tmp_path / "does-not-fit.html"
    page.write_text(render(rep, "html"), encoding="utf-8")
    tab = browser.open(page)
    browser.screenshot(tab, ARTIFACTS / "html-does-not-fit.png")  # 1280 px wide
    assert browser.problems(tab) == []
    verdict = browser.evaluate(tab, """(() => {
        const v = document.getElementById('verdict');
        const r = v.getBoundingClientRect();
        const cards = document.getElementById('summary').getBoundingClientRect();
        const peak = Array.from(document.querySelectorAll('#summary .card'))
            .find(c => c.textContent.includes('Peak memory'));
        return {text: v.innerText, role: v.getAttribute('role'), top: r.top, height: r.height, width: r.width,
                above_cards: r.bottom <= cards.top, background: getComputedStyle(v).backgroundColor,
                border: getComputedStyle(v).borderTopColor, peak_warn: peak.classList.contains('warn'),
                suggestions: v.querySelectorAll('li').length, time_cards: Array.from(document.querySelectorAll(
                    '#summary .card .label')).filter(l => /Step time|Energy|Cost/.test(l.textContent)).length};
    })()""")
    assert verdict["role"] == "alert" and verdict["text"].startswith("⚠ Does not fit")
    assert 0 <= verdict["top"] < 900 and verdict["height"] > 40 and verdict["width"] > 1000  # above the fold
    assert verdict["above_cards"] and verdict["peak_warn"]
    assert verdict["background"] == "rgb(253, 236, 236)" and verdict["border"] == "rgb(198, 40, 40)"  # red
    assert verdict["suggestions"] == len(rep.sections["memory"]["suggestions"])
    assert verdict["time_cards"] == 0  # no step time, energy or cost for a run that cannot happen


def test_claims_page_in_chromium(browser, tmp_path):
    # A hostile claim: its title, source and javascript: URL stay text; the page's one style applies under its
    # CSP (a wrong hash would be a CSP violation and an unstyled page), and nothing else runs.
    from mlfootprint.report.claims import to_html

    row = {"claim": XSS, "source": "[x](javascript:alert(2))", "url": "javascript:alert(3)", "unit": "GB",
           "published": 1.0, "ours": 1.0, "difference": 0.0, "verdict": "reproduced", "detail": "<img src=x onerror=alert(4)>"}
    good = dict(row, claim="fine", url="https://arxiv.org/abs/1910.02054")
    page = tmp_path / "claims.html"
    page.write_text(to_html({"hostile": row, "good": good}), encoding="utf-8")
    tab = browser.open(page)
    assert browser.problems(tab) == []
    state = browser.evaluate(tab, """({
        links: Array.from(document.querySelectorAll('a')).map(a => a.href),
        scripts: document.querySelectorAll('script').length,
        imgs: document.querySelectorAll('img').length,
        margin: getComputedStyle(document.body).marginTop,
        text: document.body.innerText.includes('<script>alert(1)</script>'),
    })""")
    assert state["links"] == ["https://arxiv.org/abs/1910.02054"]
    assert state["scripts"] == 0 and state["imgs"] == 0 and state["text"] is True
    assert state["margin"] != "8px"  # the page's own style (margin 2em) applied: its hash is in the CSP
