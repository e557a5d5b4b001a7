"""Serve cad.asgi with N Daphne processes behind ONE address.

    python -m cad.serve [--host 127.0.0.1] [--port 8000] [--procs N] [-- DAPHNE ARGS]

Under Daphne, Django runs every synchronous view on one thread per process, so one process serialises
all API requests. This parent binds the address and starts N `daphne --fd` children on it:

* Linux (default): N listening sockets on the same address with SO_REUSEPORT, one per child; the kernel
  spreads new connections evenly over them (by connection hash).
* `--shared-socket` (and where SO_REUSEPORT is missing): ONE listening socket inherited by every child;
  the kernel wakes them all and whichever accepts first takes the connection. Twisted accepts every
  pending connection at once, so a burst of connections (a client pool opening 5 at a time) tends to land
  on one process; hence the default above.

Websocket fan-out across processes needs a shared channel layer (Redis), so more than one process is
refused with the in-memory layer. Default --procs: the number of CPUs with Redis, 1 without.

SIGINT/SIGTERM are forwarded to the children (which run in their own process group, so a terminal Ctrl+C
reaches them only once, through here); each child drains (cad.daphne_drain: stops accepting, finishes the
requests in flight, closes websockets with 1001) before it exits. A child that dies is restarted with
backoff (1, 2, 4 … 30 s); the others keep serving, and the parent keeps the listening sockets meanwhile.
Arguments after `--` are passed to every Daphne process (e.g. `-- -v 0` turns off the access log).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = "cad.asgi:application"
BACKLOG = 1024
DRAIN_TIMEOUT_S = float(os.environ.get("CAD_DRAIN_TIMEOUT_S", "20"))
STOP_TIMEOUT_S = DRAIN_TIMEOUT_S + 5.0  # children drain first (cad.daphne_drain)
RESTART_BACKOFF_MAX_S = 30
RESTART_RESET_S = 60.0  # a child that ran this long before dying is restarted after 1 s again


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def shared_channel_layer() -> bool:
    """True when the configured channel layer reaches every process (anything but the in-memory one)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")
    from django.conf import settings

    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return bool(backend) and not backend.endswith("InMemoryChannelLayer")


def listen(host: str, port: int, count: int = 1) -> list[socket.socket]:
    """Inheritable listening sockets on one address (IPv6 when the host has a colon): one, or `count` with
    SO_REUSEPORT (the first bind picks the port when `port` is 0)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if this parent dies without stopping it (e.g. SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def daphne_command(sock: socket.socket, *, extra: list[str]) -> list[str]:
    fd = sock.fileno()
    # Twisted's fd endpoint assumes IPv4 unless told otherwise.
    where = ["--fd", str(fd)] if sock.family == socket.AF_INET else ["-e", f"fd:fileno={fd}:domain=INET6"]
    return [
        sys.executable,
        "-m",
        "cad.daphne_drain",
        *where,
        *extra,
        APPLICATION,
    ]


class _Stop(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def _raise_stop(signum, frame):
    raise _Stop(signum)


def backoff_s(failures: int) -> float:
    """Seconds before restarting a child that died `failures` times in a row: 1, 2, 4 … 30."""
    return float(min(RESTART_BACKOFF_MAX_S, 2 ** max(0, failures - 1)))


def serve(sockets: list[socket.socket], procs: int, *, extra: list[str] = ()) -> int:
    """Run `procs` Daphne children on the listening sockets (one shared, or one each) until SIGTERM/SIGINT;
    a child that dies is restarted with backoff (the parent keeps the sockets, so connections wait in the
    backlog meanwhile). Returns the exit code once every child has drained and stopped."""
    bound_host, bound_port = sockets[0].getsockname()[:2]
    shown = f"[{bound_host}]" if sockets[0].family == socket.AF_INET6 else bound_host
    how = "un socket compartido" if len(sockets) == 1 else "SO_REUSEPORT, un socket por proceso"
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    children: list[subprocess.Popen | None] = [None] * procs
    started = [0.0] * procs
    failures = [0] * procs
    restart_at: list[float | None] = [None] * procs
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)

    def start(number: int) -> subprocess.Popen:
        sock = sockets[number % len(sockets)]
        children[number] = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            daphne_command(sock, extra=list(extra)),
            cwd=ROOT,
            pass_fds=(sock.fileno(),),
            start_new_session=True,  # signals come from here only
            preexec_fn=preexec,  # prctl only: safe before exec
        )
        started[number] = time.monotonic()
        return children[number]

    try:
        pids = ", ".join(str(start(number).pid) for number in range(procs))
        print(
            f"==> cad.serve: {procs} proceso(s) Daphne sirven http://{shown}:{bound_port}/ "
            f"({how}; pid {pids})",
            flush=True,
        )
        while True:
            now = time.monotonic()
            for number, child in enumerate(children):
                if restart_at[number] is not None:
                    if now >= restart_at[number]:
                        restart_at[number] = None
                        print(
                            f"==> cad.serve: proceso Daphne {number + 1}/{procs} reiniciado (pid {start(number).pid})",
                            flush=True,
                        )
                    continue
                code = child.poll()
                if code is None:
                    continue
                failures[number] = 1 if now - started[number] > RESTART_RESET_S else failures[number] + 1
                delay = backoff_s(failures[number])
                restart_at[number] = now + delay
                print(
                    f"\nERROR: cad.serve: el proceso Daphne {number + 1}/{procs} (pid {child.pid}) terminó "
                    f"con código {code}; se reinicia en {delay:.0f} s.",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(0.2)
    except _Stop as stop:
        print(
            f"==> cad.serve: señal {signal.Signals(stop.signum).name}; deteniendo Daphne (drenando)…",
            flush=True,
        )
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_all([child for child in children if child is not None])
        for sock in sockets:
            sock.close()


def _stop_all(children: list[subprocess.Popen]) -> None:
    """SIGTERM every child (each drains its requests in flight, cad.daphne_drain), then wait for them."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"cad.serve: pid {child.pid} no se detuvo a tiempo; forzando", file=sys.stderr, flush=True)
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m cad.serve",
        description="N procesos Daphne detrás de una sola dirección (un socket compartido).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: un puerto libre (se imprime)")
    parser.add_argument(
        "--procs", type=int, default=None, help="procesos Daphne (por omisión: CPUs con Redis, 1 sin Redis)"
    )
    parser.add_argument(
        "--shared-socket",
        action="store_true",
        help="un solo socket heredado por todos (sin SO_REUSEPORT; reparto desigual en ráfagas)",
    )
    args = parser.parse_args(argv)
    shared = shared_channel_layer()
    procs = args.procs if args.procs is not None else (cpu_count() if shared else 1)
    if procs < 1:
        parser.error("--procs debe ser 1 o más")
    if procs > 1 and not shared:
        sys.exit(
            f"ERROR: cad.serve: --procs {procs} necesita REDIS_URL. Sin Redis la capa de canales está en "
            "memoria (un proceso): los websockets de un proceso no verían los eventos de otro. "
            "Defina REDIS_URL o use --procs 1."
        )
    try:
        reuseport = procs > 1 and not args.shared_socket and hasattr(socket, "SO_REUSEPORT")
        sockets = listen(args.host, args.port, procs if reuseport else 1)
    except OSError as exc:
        sys.exit(f"ERROR: cad.serve: no se pudo escuchar en {args.host}:{args.port}: {exc}")
    sys.exit(serve(sockets, procs, extra=extra))


if __name__ == "__main__":
    main()
