"""Progress of long work: declared where the work is, shown only when a display is installed (the CLI's: only
on a terminal)."""
from __future__ import annotations

import subprocess
import sys

from mlfootprint.commands.progress import RichDisplay, wanted
from mlfootprint.core import progress


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def begin(self, description, total):
        self.events.append(("begin", description))
        return description

    def advance(self, handle, steps):
        self.events.append(("advance", steps))

    def end(self, handle):
        self.events.append(("end", handle))


def test_tracing_and_claims_declare_their_phases():
    from mlfootprint import Workload, count
    from mlfootprint.papers.engine import run_claims
    from mlfootprint.papers.load import load_claims

    rec = Recorder()
    previous = progress.install(rec)
    try:
        count("gpt2", Workload(seq=32))
        claims = load_claims()[:2]
        run_claims(claims)
    finally:
        progress.install(previous)
    begins = [d for kind, d in rec.events if kind == "begin"]
    assert begins[0] == "tracing gpt2 (batch 1, inference)"
    assert "checking 2 published claims" in begins
    assert sum(1 for kind, _ in rec.events if kind == "advance") >= 2  # one per claim
    assert sum(1 for kind, _ in rec.events if kind == "begin") == sum(1 for kind, _ in rec.events if kind == "end")


def test_nothing_is_shown_without_a_display():
    assert progress.install(None) is None
    with progress.phase("work", total=3) as advance:
        advance()  # a no-op, not an error


def test_rich_display_stops_when_the_last_phase_ends():
    display = RichDisplay()
    outer = display.begin("outer", None)
    inner = display.begin("inner", 2)
    display.advance(inner, 1)
    display.end(inner)
    assert display._progress is not None
    display.end(outer)
    assert display._progress is None


def test_the_cli_shows_no_progress_into_a_pipe():
    assert not wanted(open(__file__))  # a file is not a terminal
    r = subprocess.run([sys.executable, "-m", "mlfootprint", "count", "gpt2", "--seq", "32", "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr == ""
