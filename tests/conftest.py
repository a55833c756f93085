import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "data" / "configs"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    # User catalog/history folders must never leak between tests or from the developer's machine.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("MLFOOTPRINT_HISTORY", raising=False)
    # The persistent trace cache too: each test starts with an empty one of its own (never ~/.cache).
    monkeypatch.setenv("MLFOOTPRINT_CACHE_DIR", str(home / "cache"))
    monkeypatch.delenv("MLFOOTPRINT_CACHE_MAX_BYTES", raising=False)


def run_cli(*args: str, env: dict | None = None, cwd: str | None = None,
            isolated: bool = False) -> subprocess.CompletedProcess:
    """Run the command line ``mlfootprint ARGS`` as a user would, and return its exit status and output.

    By default in this process: ``mlfootprint.cli.main`` with stdout and stderr captured, ``env`` set (``None``
    unsets a variable) and ``cwd`` entered for the call, all restored after. A fresh interpreter costs 2-6 s of
    imports (torch, transformers) on the project's 2-core machine: most of the suite's time when every CLI test
    paid it. ``isolated=True`` runs ``python -m mlfootprint ARGS`` as a child process instead, for what only a
    fresh process shows: what it imports, what reaches the real stderr from logging and warnings, settings read
    at import time (``HF_HUB_OFFLINE``), the exit status of the process itself."""
    if isolated:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env = {k: v for k, v in full_env.items() if v is not None}
        return subprocess.run([sys.executable, "-m", "mlfootprint", *args], capture_output=True, text=True,
                              env=full_env, cwd=cwd, timeout=300)
    return _run_cli_in_process(list(args), env or {}, cwd)


def _run_cli_in_process(argv: list[str], env: dict, cwd: str | None) -> subprocess.CompletedProcess:
    from mlfootprint.cli import main

    # A child process writing into a pipe gets shutil's fallback width (100) unless COLUMNS is set: the same here.
    env = {"COLUMNS": os.environ.get("COLUMNS", "100"), **env}
    saved_cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ):  # the whole environment comes back as it was
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            if cwd is not None:
                os.chdir(cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(argv)
                except SystemExit as exc:  # argparse's --help and --version
                    status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(saved_cwd)
    return subprocess.CompletedProcess(["mlfootprint", *argv], status, out.getvalue(), err.getvalue())
