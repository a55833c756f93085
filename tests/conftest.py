import os
import subprocess
import sys
from pathlib import Path

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


def run_cli(*args: str, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mlfootprint ARGS` as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mlfootprint", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=300)
