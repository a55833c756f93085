"""Every command in README.md runs, so the README stays true to the code.

The commands are read from the README's ``bash`` blocks (``a && b`` is two commands) and run in-process in a
scratch folder, with the few substitutes below where the README names a file of the user's or asks for long
work; the Python block runs too. The Quickstart is checked for its shape: exactly two commands, the first
running ``mlfootprint analyze``, the second the test command CI runs (``.ci/run``).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mlfootprint.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TINY = ROOT / "tests" / "data" / "configs" / "tiny-gpt2"

# README text → what the test runs instead, and why.
SUBSTITUTES = (
    ("./my-model/config.json", str(TINY / "config.json")),   # the user's own model: a tiny config of ours
    ("--budget-s 20", "--budget-s 2"),                        # calibration: the same steps, shorter
    ("bench " + str(TINY / "config.json"), "bench " + str(TINY / "config.json") + " --seq 16 --repeats 3 --warmup 1"),
    ("claims --format md", "claims --only zero-stage0 --format md"),  # every claim runs in test_claims.py
    ("examples/small_cnn.py", str(ROOT / "examples" / "small_cnn.py")),
)


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    out = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("mlfootprint"):
                    out.append(part)
    return out


def _substituted(command: str) -> str:
    for old, new in SUBSTITUTES:
        command = command.replace(old, new)
    return command


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(autouse=True)
def _isolated(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(workdir / "config"))       # calibration profiles
    monkeypatch.setenv("MLFOOTPRINT_HISTORY", str(workdir / "history.db"))


def test_quickstart_is_two_commands_the_first_runs_analyze_the_second_is_ci():
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks), blocks
    assert blocks[0].strip().endswith("mlfootprint analyze")
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci.splitlines()


def test_the_readme_has_the_commands_this_test_runs():
    commands = _commands()
    assert len(commands) >= 15
    for verb in ("analyze", "count", "memory", "predict", "plan", "mfu", "bench", "footprint", "compare", "table",
                 "claims", "hardware calibrate"):
        assert any(c.startswith(f"mlfootprint {verb}") for c in commands), verb


@pytest.mark.parametrize("command", _commands())
def test_readme_command_runs(command: str, capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    if " compare " in f" {command} " or " table " in f" {command} ":
        # the reports they read are written by the README line before them; make them if this runs alone
        for name, model in (("a.json", "gpt2"), ("b.json", "gpt2-medium")):
            if not (workdir / name).exists():
                assert main(["analyze", model, "--format", "json", "-o", name]) == 0
    args = shlex.split(_substituted(command))[1:]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, f"{command}\n{captured.err}"
    assert "Traceback" not in captured.err
    if "-o" not in args:
        assert captured.out.strip(), command


def test_readme_python_block_runs(workdir: Path) -> None:
    (block,) = _blocks("python")
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert (workdir / "run.json").exists()  # the tracked loop wrote its report
