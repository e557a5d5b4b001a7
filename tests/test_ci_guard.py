"""The README's test command (`python3 run.py test`) and CI must never pass a run that tested nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
needs_venv = pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "python").exists(),
    reason="run.py installs into .venv first (python3 run.py test)",
)


def run_py(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "run.py", "test", *args, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_venv
def test_run_py_test_fails_when_pytest_collects_no_test():
    result = run_py("tests/test_settings_paths.py", "-k", "no_such_test_anywhere")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ninguna prueba" in result.stderr


@needs_venv
def test_run_py_test_passes_extra_args_to_pytest():
    result = run_py("--collect-only", "-q", "tests/test_settings_paths.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_settings_paths.py::test_embedded_default_uses_sqlite_in_var_memory_layer_and_no_broker" in (
        result.stdout
    )


def test_ci_script_is_strict_and_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    assert "python3 run.py test" in script
    assert 'CI:-}" = "true"' in script  # unreachable services fail loudly under CI=true
    assert "cad_ci" in script and "redis://127.0.0.1:6379/0" in script
    syntax = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_readme_documents_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 run.py" in readme and "python3 run.py test" in readme
