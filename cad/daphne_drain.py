"""Daphne with a graceful stop: `python -m cad.daphne_drain <daphne arguments>` (what cad.serve starts).

On SIGTERM/SIGINT plain Daphne stops its reactor at once and cuts the requests in flight (a write may
commit and never be acknowledged). Here the process stops accepting connections, tells websocket clients
it is going away (1001: consoles reconnect to another process and resume by seq), answers requests that
still arrive on kept-alive connections with 503 + `Connection: close` (never reaching Django, so nothing
commits unanswered), lets every HTTP request in flight finish, then exits; after CAD_DRAIN_TIMEOUT_S
(default 20) it exits anyway, and a watchdog thread ends the process 3 s later whatever the reactor does. A
second SIGTERM/SIGINT while draining (or the supervisor's death, PR_SET_PDEATHSIG) ends it at once.

Its access log (Daphne's, on stdout at verbosity 1) leaves query strings out.
"""

import gc
import logging
import os
import signal
import sys
import threading
import time

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

DRAIN_TIMEOUT_S = float(os.environ.get("CAD_DRAIN_TIMEOUT_S", "20"))


def _without_query(access_log):
    """Daphne's access log, minus query strings (they can carry coordinates or phone numbers)."""

    def log(protocol, action, details):
        if "path" in details:
            details = {**details, "path": details["path"].split("?", 1)[0]}
        return access_log(protocol, action, details)

    return log


async def _going_away(scope, receive, send):
    """What a request gets once the process drains (it arrived on a kept-alive connection): 503, close."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"connection", b"close"),
                (b"retry-after", b"1"),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b'{"message": "draining", "code": "unavailable", "fields": {}}',
        }
    )


def load_before_serving() -> None:
    """Import the URLconf, and with it every view module, before the first request: Django imports it lazily,
    so the first request of each process paid for it (100-300 ms, the slowest call of a fresh server). Then
    modules, settings, URL patterns, the application (some 200,000 objects that live as long as the
    process) are frozen out of the collector: a full collection traverses only what requests left behind
    (a few ms instead of ~100 ms that one request in a few hundred waited for)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - the property imports the URLconf
    gc.collect()
    gc.freeze()


class DrainingServer(Server):
    def __init__(self, *args, action_logger=None, **kwargs):
        if action_logger is not None:
            action_logger = _without_query(action_logger)
        super().__init__(*args, action_logger=action_logger, **kwargs)

    def create_application(self, protocol, scope):
        if self.draining and scope.get("type") == "http":
            application, self.application = self.application, _going_away
            try:
                return super().create_application(protocol, scope)
            finally:
                self.application = application
        return super().create_application(protocol, scope)

    def run(self):
        self.ports = []
        self.draining = False
        self.signal_handlers = False  # ours: drain instead of stopping the reactor at once
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        from cad import warmup  # the application (and Django) is loaded by now

        warmup.start()  # in the server process only, not wherever cad.asgi is imported (tests)
        load_before_serving()
        super().run()
        # Drained: nothing is in flight. Send what the broadcaster still holds, then exit even if a worker
        # thread (a sync-view executor thread blocked on a socket) would keep the interpreter waiting to
        # join it: a process that never exits after SIGTERM is orphaned by its supervisor's timeout.
        try:
            from cad.events import broadcaster

            broadcaster.drain(timeout=2.0)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def listen_success(self, port):
        self.ports.append(port)
        super().listen_success(port)

    def _on_signal(self, signum, _frame) -> None:
        if self.draining:  # a second signal, or the supervisor died (PR_SET_PDEATHSIG) while we drain
            _exit_now(f"signal {signal.Signals(signum).name} while draining")
        reactor.callFromThread(self.drain)

    def drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        # Whatever happens in the reactor (an application instance that never ends, a shutdown trigger that
        # never fires), the process is gone shortly after the drain timeout: the supervisor's own timeout
        # (cad.serve's STOP_TIMEOUT_S) is longer, and an orphan would keep serving nobody forever.
        watchdog = threading.Timer(DRAIN_TIMEOUT_S + 3.0, _exit_now, args=("drain timeout",))
        watchdog.daemon = True
        watchdog.start()
        for port in self.ports:
            port.stopListening()
        for protocol in list(self.connections):
            if isinstance(protocol, WebSocketProtocol):
                protocol.serverClose(code=1001)
        self._stop_when_idle(time.monotonic() + DRAIN_TIMEOUT_S)

    def _in_flight(self) -> int:
        return sum(
            1
            for protocol, details in self.connections.items()
            if not isinstance(protocol, WebSocketProtocol)
            and details.get("application_instance") is not None
            and not details["application_instance"].done()
        )

    def _stop_when_idle(self, deadline: float) -> None:
        in_flight = self._in_flight()
        if in_flight and time.monotonic() < deadline:
            reactor.callLater(0.05, self._stop_when_idle, deadline)
            return
        if in_flight:
            logging.getLogger(__name__).warning(
                "drain timeout: stopping with requests in flight", extra={"in_flight": in_flight}
            )
        reactor.stop()


def _exit_now(reason: str) -> None:
    """Leave at once (no reactor, no locks: also from a signal handler or the watchdog thread)."""
    os.write(2, f"cad.daphne_drain: {reason}; exiting now\n".encode())
    os._exit(1)


class DrainingCommandLineInterface(CommandLineInterface):
    server_class = DrainingServer


if __name__ == "__main__":
    DrainingCommandLineInterface.entrypoint()
