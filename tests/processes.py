"""Real server and worker processes for the tests that need them (Celery workers, cad.serve)."""

import subprocess
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_logged(stack: ExitStack, command: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`command` run from the repository root with its output in `log`; stopped (terminate, then kill) when
    `stack` closes."""
    handle = log.open("w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)  # noqa: S603

    def stop():
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        handle.close()

    stack.callback(stop)
    return process
