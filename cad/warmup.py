"""Work a server process does once, in the background, as soon as it starts (e.g. building a schema
validator from a 3 MB document), so the first request that needs it does not pay for it.

Apps register a function from AppConfig.ready; the web server (cad.daphne_drain, once the application is
loaded) and Celery's worker_process_init (each worker child) call `start()`. A failing warm-up is logged and
otherwise ignored: the work is done again, lazily, by the first caller.
"""

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)
_tasks: list[Callable[[], None]] = []


def register(task: Callable[[], None]) -> None:
    if task not in _tasks:
        _tasks.append(task)


def _run() -> None:
    for task in _tasks:
        name = getattr(task, "__qualname__", repr(task))
        try:
            task()
        except Exception:  # noqa: BLE001 - lazily retried by the first caller
            logger.exception("warm-up failed", extra={"task": name})
        else:
            logger.info("warm-up done", extra={"task": name})


def start() -> threading.Thread:
    thread = threading.Thread(target=_run, name="cad-warmup", daemon=True)
    thread.start()
    return thread
