"""Safe production defaults: no server on the public built-in secret key."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _without_key(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DJANGO_DEBUG")}
    return {**env, "DJANGO_SETTINGS_MODULE": "cad.settings", **extra}


def test_the_server_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = subprocess.run(
        [sys.executable, "-c", "import cad.asgi"],
        cwd=ROOT,
        env=_without_key(),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    debug = subprocess.run(
        [sys.executable, "-c", "import cad.asgi"], cwd=ROOT, env=_without_key(DJANGO_DEBUG="true")
    )
    assert debug.returncode == 0  # development keeps working


def test_check_deploy_fails_on_the_built_in_key():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=_without_key(),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "cad.E001" in result.stderr + result.stdout
