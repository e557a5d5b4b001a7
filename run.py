#!/usr/bin/env python3
"""The two commands of this project, for a fresh machine with only Python 3.11+.

    python3 run.py              # install into .venv, migrate, seed the demo, serve on :8000
    python3 run.py test [ARGS]  # install dev extras into .venv, run the whole pytest suite
    python3 run.py install [--dev]  # only install into .venv (CI uses it before linting)
    python3 run.py interstate   # two centres, MEX on :8000 and CDMX on :8001, registered as each other's peers

Standard library only: this file runs before anything is installed. Nothing is installed system-wide.

Embedded default (no DATABASE_URL / REDIS_URL): SQLite in var/, in-process channel layer and local task
threads, so Daphne, the periodic scheduler (cad.periodic) and the demo AVL simulator share one process.
Production path (DATABASE_URL and REDIS_URL set): Daphne (`python -m cad.serve`: one Daphne process per CPU
behind one address, `--web-procs N`), a Celery worker, Celery beat and the demo AVL simulator run as child
processes; Ctrl+C stops them all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".cad-install-stamp"
DEMO_PASSWORD = "c4-demo-2026"  # noqa: S105 - the documented demo password printed by seed_demo
MIN_PYTHON = (3, 11)
# Celery worker concurrency on the production path (threads: settings.CELERY_WORKER_POOL). An interstate
# delivery mostly waits for the peer's answer: at 50 escalations/s on 2 cores, 4 (then prefork children)
# delivered 24.2/s against 21.8/s with 2 (p99 7.7 s against 11.2 s; medians of 3, interleaved,
# docs/benchmarks.md 2026-11-28), and drained the outbox as fast after a worker kill during a peer outage.
WORKER_CONCURRENCY = 4


# --- Output ---------------------------------------------------------------------------------
def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str, hint: str = "") -> None:
    print(f"\nERROR: {message}", file=sys.stderr)
    if hint:
        print(f"Qué hacer: {hint}", file=sys.stderr)
    sys.exit(1)


def run(cmd: list, *, what: str, hint: str = "", env: dict | None = None) -> None:
    """Run a command from the repo root; on failure explain what failed and what to do."""
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)  # noqa: S603
    if result.returncode != 0:
        fail(f"{what} terminó con código {result.returncode}.", hint)


# --- Virtual environment --------------------------------------------------------------------
def ensure_python() -> None:
    if sys.version_info < MIN_PYTHON:
        fail(
            f"Se requiere Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} o más reciente; esta es {sys.version.split()[0]}.",
            "instale Python 3.11+ y ejecute de nuevo: python3.11 run.py",
        )


def ensure_venv() -> None:
    if PY.exists():
        return
    say(f"Creando el entorno virtual en {VENV.relative_to(ROOT)}/")
    try:
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(VENV, ignore_errors=True)
        fail(
            f"No se pudo crear el entorno virtual ({exc}).",
            "en Debian/Ubuntu instale el módulo venv: sudo apt-get install python3-venv",
        )


def ensure_installed(*, dev: bool) -> None:
    """pip install -e .[dev] into .venv, again only when pyproject.toml or the extras change."""
    ensure_venv()
    extras = "[dev]" if dev else ""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    installed = STAMP.read_text().split() if STAMP.exists() else []
    # A dev install satisfies a plain one; a plain install does not satisfy a dev one.
    wanted = {digest}
    if not dev:
        wanted.add(hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + b"[dev]").hexdigest())
    if wanted & set(installed):
        return
    say(f"Instalando el proyecto y sus dependencias en .venv (pip install -e .{extras}); puede tardar")
    run(
        [PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f".{extras}"],
        what="La instalación de dependencias (pip)",
        hint="revise la conexión a PyPI (o el proxy/índice configurado para pip) y vuelva a ejecutar; "
        "para empezar de cero borre la carpeta .venv",
    )
    STAMP.write_text(digest + "\n")


def manage(*args: str, what: str, hint: str = "", env: dict | None = None) -> None:
    run([PY, "manage.py", *args], what=what, hint=hint, env=env)


def compile_messages(env: dict) -> None:
    """Compile the translation catalogues (.po → .mo; the .mo files are build output, not in git).

    gettext's msgfmt when installed (Django's compilemessages); otherwise polib, a project dependency, so a
    machine with only Python still gets the English interface."""
    if not list(ROOT.glob("**/locale/*/LC_MESSAGES/*.po")):
        return
    if shutil.which("msgfmt") is not None:
        manage(
            "compilemessages",
            "--ignore=.venv",
            "--ignore=node_modules",
            what="compilemessages",
            hint="revise los archivos .po indicados arriba",
            env=env,
        )
        return
    run(
        [PY, "-c", POLIB_COMPILE],
        what="La compilación de traducciones (polib)",
        hint="revise los archivos .po indicados arriba, o instale gettext (msgfmt)",
        env=env,
    )


POLIB_COMPILE = """
import pathlib, polib
for po in pathlib.Path(".").glob("**/locale/*/LC_MESSAGES/*.po"):
    if ".venv" not in po.parts:
        polib.pofile(str(po)).save_as_mofile(str(po.with_suffix(".mo")))
"""


# --- Modes ----------------------------------------------------------------------------------
def production_path(env: dict) -> bool:
    """A broker (REDIS_URL) means tasks go to Celery, so workers and beat must run as processes."""
    return bool(env.get("REDIS_URL"))


def check_services(env: dict) -> None:
    """With DATABASE_URL/REDIS_URL set, fail early and clearly if PostgreSQL or Redis is unreachable."""
    probe = (
        "import os, sys\n"
        "import environ\n"
        "errors = []\n"
        "url = os.environ.get('DATABASE_URL')\n"
        "if url and url.startswith('postgres'):\n"
        "    import psycopg\n"
        "    cfg = environ.Env.db_url_config(url)\n"
        "    try:\n"
        "        psycopg.connect(host=cfg['HOST'] or None, port=cfg['PORT'] or None, user=cfg['USER'] or None,\n"
        "                        password=cfg['PASSWORD'] or None, dbname='postgres', connect_timeout=5).close()\n"
        "    except psycopg.Error as exc:\n"
        '        errors.append(f\'PostgreSQL ({cfg["HOST"]}:{cfg["PORT"]}): {exc}\')\n'
        "    else:\n"
        "        with psycopg.connect(host=cfg['HOST'] or None, port=cfg['PORT'] or None, user=cfg['USER'] or None,\n"
        "                             password=cfg['PASSWORD'] or None, dbname='postgres', autocommit=True) as c:\n"
        "            if not c.execute('SELECT 1 FROM pg_database WHERE datname=%s', [cfg['NAME']]).fetchone():\n"
        '                c.execute(f\'CREATE DATABASE "{cfg["NAME"]}"\')\n'
        "                print(f'==> Base de datos {cfg[\"NAME\"]} creada', flush=True)\n"
        "rurl = os.environ.get('REDIS_URL')\n"
        "if rurl:\n"
        "    import redis\n"
        "    try:\n"
        "        redis.Redis.from_url(rurl, socket_connect_timeout=5).ping()\n"
        "    except redis.RedisError as exc:\n"
        "        errors.append(f'Redis ({rurl}): {exc}')\n"
        "for e in errors:\n"
        "    print('No responde ' + e, file=sys.stderr)\n"
        "sys.exit(1 if errors else 0)\n"
    )
    result = subprocess.run([str(PY), "-c", probe], cwd=ROOT, env=env)  # noqa: S603
    if result.returncode != 0:
        fail(
            "PostgreSQL o Redis no responden (ver arriba).",
            "arranque los servicios, corrija DATABASE_URL / REDIS_URL, o quítelas para usar el modo "
            "embebido (SQLite en var/, sin Redis)",
        )


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# The embedded server: one process holds Daphne, the in-process channel layer, the periodic scheduler
# (cad.periodic, if present) and the demo AVL simulator, so their events reach the websocket consumers.
EMBEDDED_SERVER = """
import importlib.util, os, sys, threading
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")
import django
django.setup()
from django.core.management import call_command
if importlib.util.find_spec("cad.periodic") is not None:
    import cad.periodic
    if cad.periodic.start():
        print("==> Tareas periódicas en proceso (cad.periodic) activas", flush=True)
if os.environ.get("CAD_RUN_AVL_SIM") == "1":
    from django.core.management.base import CommandError
    def simulate():
        try:
            call_command("simulate_avl", interval=5, quiet=True)
        except CommandError as exc:
            print(f"==> Simulador AVL no iniciado: {exc}", flush=True)
    threading.Thread(target=simulate, name="avl-simulator", daemon=True).start()
    print("==> Simulador AVL de demostración activo (cada 5 s)", flush=True)
if os.environ.get("CAD_RUN_DC09_PORT"):
    # Embedded: the DC-09 receiver shares this process, so its events reach the in-process channel layer.
    def receive_dc09():
        try:
            call_command("dc09_receiver", port=int(os.environ["CAD_RUN_DC09_PORT"]))
        except OSError as exc:
            print(f"==> Receptor DC-09 no iniciado: {exc}", flush=True)
    threading.Thread(target=receive_dc09, name="dc09-receiver", daemon=True).start()
from cad.daphne_drain import DrainingCommandLineInterface
DrainingCommandLineInterface().run(sys.argv[1:])
"""


def local_secret_key(env: dict) -> None:
    """The local two commands need no DJANGO_SECRET_KEY: they keep a random one in var/secret_key (0600,
    made once). Servers refuse to start with DEBUG off and no key (never a public built-in one)."""
    if env.get("DJANGO_SECRET_KEY"):
        return
    path = ROOT / "var" / "secret_key"
    if not path.exists():
        import secrets

        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(64))
    env["DJANGO_SECRET_KEY"] = path.read_text().strip()


def prepare(env: dict, *, center: str, seed: bool, units: int | None = None, hint: str = "") -> None:
    """Migrate the database in `env` and seed the demo centre `center` (idempotent)."""
    say(f"Migrando la base de datos ({center})")
    manage("migrate", "--noinput", what="migrate", hint=hint, env=env)
    if seed:
        say(f"Cargando datos de demostración de {center} (seed_demo, idempotente)")
        units_args = ["--units", str(units)] if units is not None else []
        manage(
            "seed_demo",
            "--center",
            center,
            *units_args,
            what="seed_demo",
            hint="revise el error anterior; omita la siembra con --no-seed",
            env=env,
        )


def check_web_procs(web_procs: int, *, prod: bool) -> None:
    if web_procs < 1:
        fail("--web-procs debe ser 1 o más.")
    if web_procs > 1 and not prod:
        fail(
            f"--web-procs {web_procs} necesita REDIS_URL (ruta de producción).",
            "el modo embebido usa un canal en memoria: un solo proceso; defina REDIS_URL o quite --web-procs",
        )


def allowed_hosts_notice(host: str, env: dict) -> str | None:
    """Serving beyond this machine (e.g. --host 0.0.0.0) without DJANGO_ALLOWED_HOSTS: Django answers every
    request by another name or address with a bare "Bad Request (400)". Say so before starting."""
    if host in ("127.0.0.1", "localhost", "::1") or env.get("DJANGO_ALLOWED_HOSTS"):
        return None
    return (
        f"Aviso: --host {host} sin DJANGO_ALLOWED_HOSTS: sólo se aceptan localhost y 127.0.0.1; desde otro "
        "equipo cada página responde «Bad Request (400)». Defina DJANGO_ALLOWED_HOSTS con el nombre o la "
        "IP por la que se entra, p. ej. DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1,192.168.1.20"
    )


def check_port(host: str, port: int, option: str = "--port") -> None:
    if not port_free(host, port):
        fail(
            f"El puerto {port} en {host} ya está en uso.",
            f"detenga el otro servidor o use otro puerto: python3 run.py {option} {port + 2}",
        )


def instance_processes(
    env: dict, *, host: str, port: int, web_procs: int, simulate: bool, tag: str = "", dc09_port: int = 0
) -> list[tuple[str, list, dict, bool]]:
    """The processes of one instance: (name, command, environment, essential). Production path: Daphne
    (`cad.serve`), a Celery worker, Celery beat and the AVL simulator; embedded: one Daphne process that also
    runs the periodic scheduler and the simulator. `tag` names the instance when several share this host.
    `dc09_port` > 0 adds the SIA DC-09 panic-button receiver: its own process on the production path
    (non-essential: a taken port does not stop the server), a thread of the one process when embedded."""
    label = f"{tag}-" if tag else ""
    if not production_path(env):
        daphne_args = ["-b", host, "-p", str(port), "cad.asgi:application"]
        child_env = dict(
            env, CAD_RUN_AVL_SIM="1" if simulate else "0", CAD_RUN_DC09_PORT=str(dc09_port or "")
        )
        return [(f"{label}daphne", [PY, "-c", EMBEDDED_SERVER, *daphne_args], child_env, True)]
    serve_args = ["--host", host, "--port", str(port), "--procs", str(web_procs)]
    worker = [BIN / "celery", "-A", "cad", "worker", "-l", "INFO", "--concurrency", str(WORKER_CONCURRENCY)]
    if tag:
        worker += ["-n", f"{tag}@%h"]
    beat_schedule = ROOT / "var" / f"celerybeat-schedule{'-' + tag if tag else ''}"
    processes = [
        (f"{label}daphne", [PY, "-m", "cad.serve", *serve_args], env, True),
        (f"{label}celery-worker", worker, env, True),
        (
            f"{label}celery-beat",
            [BIN / "celery", "-A", "cad", "beat", "-l", "INFO", "-s", beat_schedule],
            env,
            True,
        ),
    ]
    if simulate:
        sim = [PY, "manage.py", "simulate_avl", "--interval", "5", "--quiet"]
        processes.append((f"{label}simulate-avl", sim, env, False))
    if dc09_port:
        dc09 = [PY, "manage.py", "dc09_receiver", "--port", str(dc09_port)]
        processes.append((f"{label}dc09-receiver", dc09, env, False))
    return processes


class Child:
    """A supervised child: (name, command, environment, essential). An essential child that dies is
    restarted with backoff (1, 2, 4 … 30 s; back to 1 s once it ran a minute); a non-essential one (the demo
    simulator, the DC-09 receiver on a taken port) is reported once and left stopped."""

    def __init__(self, name: str, cmd: list, env: dict, essential: bool):
        self.name, self.cmd, self.env, self.essential = name, cmd, env, essential
        self.failures, self.restart_at, self.started, self.proc = 0, None, 0.0, None

    def start(self) -> None:
        self.proc = subprocess.Popen([str(c) for c in self.cmd], cwd=ROOT, env=self.env)  # noqa: S603
        self.started = time.monotonic()


def start_processes(processes: list[tuple[str, list, dict, bool]]) -> list[Child]:
    children = [Child(*spec) for spec in processes]
    for child in children:
        child.start()
    return children


def served_env() -> dict:
    """The environment of the servers run.py starts: this one, with the session and CSRF cookies not marked
    Secure unless DJANGO_SECURE_COOKIES says so. run.py serves plain HTTP (TLS, if any, is a proxy in front
    of it, which sets the variable): a browser keeps a Secure cookie over plain HTTP only from localhost, so
    from any other address (--host 0.0.0.0) every login would fail the CSRF check."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SECURE_COOKIES", "false")
    return env


def serve(args: argparse.Namespace) -> None:
    env = served_env()
    prod = production_path(env)
    if env.get("DATABASE_URL") and not env.get("REDIS_URL"):
        say("Aviso: DATABASE_URL sin REDIS_URL: canal en memoria y tareas locales (un solo proceso).")
    if env.get("REDIS_URL") and not env.get("DATABASE_URL"):
        say("Aviso: REDIS_URL sin DATABASE_URL: SQLite compartida por varios procesos (sólo para pruebas).")
    ensure_installed(dev=False)
    (ROOT / "var").mkdir(exist_ok=True)
    local_secret_key(env)
    if env.get("DATABASE_URL") or env.get("REDIS_URL"):
        check_services(env)
    center = env.get("CAD_CENTER_CODE") or "MEX"
    prepare(
        env,
        center=center,
        seed=not args.no_seed,
        hint="revise el error anterior; en modo embebido puede borrar var/cad.sqlite3",
    )
    compile_messages(env)
    say("Reuniendo archivos estáticos (collectstatic)")
    manage("collectstatic", "--noinput", "-v", "0", what="collectstatic", env=env)
    web_procs = args.web_procs
    if web_procs is None:
        web_procs = (os.cpu_count() or 1) if prod else 1
    check_web_procs(web_procs, prod=prod)
    check_port(args.host, args.port)
    if notice := allowed_hosts_notice(args.host, env):
        say(notice)

    simulate = not args.no_avl_sim
    if prod:
        say(
            f"Ruta de producción (Redis): arrancando {web_procs} proceso(s) Daphne, Celery worker y Celery beat"
        )
    else:
        say("Modo embebido: un proceso, canal en memoria, tareas en hilos locales")
    children = start_processes(
        instance_processes(
            env,
            host=args.host,
            port=args.port,
            web_procs=web_procs,
            simulate=simulate,
            dc09_port=args.dc09_port,
        )
    )
    banner(args.host, args.port, prod=prod, simulate=simulate, web_procs=web_procs, dc09_port=args.dc09_port)
    supervise(children)


def banner(
    host: str, port: int, *, prod: bool, simulate: bool, web_procs: int = 1, dc09_port: int = 0
) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
    base = f"http://{shown}:{port}"
    lines = [
        "",
        "=" * 72,
        f" CAD C4/C5 en {base}/   ({'ruta de producción' if prod else 'modo embebido'})",
        "",
        f"   Consola de despacho     {base}/console/",
        f"   Recepción de llamadas   {base}/console/intake/",
        f"   Denuncia anónima 089    {base}/console/intake/089/",
        f"   Tablero (supervisión)   {base}/dashboard/",
        f"   Administración          {base}/admin/",
        f"   API (OpenAPI)           {base}/api/v1/docs/",
        "",
        f" Usuarios de demostración (contraseña {os.environ.get('CAD_DEMO_PASSWORD') or DEMO_PASSWORD}):",
        "   operador (operador de llamadas), despachador, supervisor, admin (administrador)",
        " Cuentas de servicio por token: avl-gateway (AVL), peer-cdmx (estado vecino)",
        f" Simulador AVL: {'activo' if simulate else 'desactivado (--no-avl-sim)'}",
        " Receptor SIA DC-09 (botones de pánico): "
        + (f"TCP {dc09_port}" if dc09_port else "desactivado (--dc09-port 0)"),
        f" Procesos Daphne: {web_procs}"
        + (" (una dirección, --web-procs N)" if prod else " (modo embebido)"),
        "",
        " Ctrl+C para detener.",
        "=" * 72,
        "",
    ]
    print("\n".join(lines), flush=True)


# --- Two centres registered as each other's peers (interstate) -------------------------------
# (centre code, INEGI state key of its service area: boundaries shipped in geo/data/inegi-entidades/)
PEER_CENTRES = (("MEX", "15"), ("CDMX", "09"))
CENTRE_NAMES = {"MEX": "Estado de México C5", "CDMX": "Ciudad de México C5"}


def instance_database_url(url: str, tag: str) -> str:
    """The database of instance `tag`: `var/<tag>.sqlite3` by default, `<name>_<tag>` with a DATABASE_URL
    (PostgreSQL: a database beside the named one; SQLite: a file beside it)."""
    if not url:
        return f"sqlite:///{ROOT / 'var' / f'{tag}.sqlite3'}"
    if url.startswith("sqlite"):
        stem, dot, ext = url.rpartition(".")
        return f"{stem}_{tag}.{ext}" if dot and "/" not in ext else f"{url}_{tag}"
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{parts.path.lstrip('/') or 'cad'}_{tag}"))


def instance_env(env: dict, *, code: str, public_url: str) -> dict:
    """Environment of one of several instances on this host: its own database, its centre, its Redis
    namespace and session cookie (CAD_INSTANCE), and the URL it publishes to its peers."""
    tag = code.lower()
    return dict(
        env,
        DATABASE_URL=instance_database_url(env.get("DATABASE_URL", ""), tag),
        CAD_CENTER_CODE=code,
        CAD_INSTANCE=tag,
        CAD_PUBLIC_URL=public_url,
    )


# Registers in this instance the peers described on stdin (JSON list), each with its INEGI state boundary as
# service area, and prints (JSON) the key id and secret this instance issues to each for signing its requests
# (fresh every run); an entry with `outbound` stores the credentials that peer issued to us instead.
PEER_SETUP = """
import json, sys
from geo.models import Jurisdiction
from interstate import services
from interstate.models import Peer
issued = {}
for spec in json.load(sys.stdin):
    if "outbound" in spec:
        services.peer_set_outbound_credentials(code=spec["code"], **spec["outbound"])
        continue
    code, area = spec["code"], Jurisdiction.objects.get(kind="state", cve_ent=spec["cve_ent"]).geometry
    if Peer.objects.filter(code=code).exists():  # a run before: maybe other ports; new secrets
        services.peer_set_base_url(code=code, base_url=spec["base_url"])
        key_id, secret = services.peer_rotate_inbound_secret(code=code)
    else:
        peer, secret = services.peer_register(
            code=code, name=spec["name"], base_url=spec["base_url"], service_area=area
        )
        key_id = peer.inbound_key_id
    issued[code] = {"key_id": key_id, "secret": secret}
print(json.dumps(issued))
"""


def peer_setup(jobs: list[tuple[str, dict, list]]) -> dict[str, dict]:
    """Run PEER_SETUP in several instances at once. `jobs`: (code, env, specs); secrets travel on stdin,
    never on a command line. Returns {code: what that instance issued}."""
    running = [
        (
            code,
            specs,
            subprocess.Popen(  # noqa: S603
                [str(PY), "manage.py", "shell", "-c", PEER_SETUP],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for code, env, specs in jobs
    ]
    issued = {}
    for code, specs, proc in running:
        out, err = proc.communicate(json.dumps(specs))
        if proc.returncode != 0:
            print(out + err, file=sys.stderr)
            fail(f"El registro de centros vecinos en {code} terminó con código {proc.returncode}.")
        issued[code] = json.loads(out.strip().splitlines()[-1])
    return issued


def register_peers(instances: list[tuple[str, str, str, dict]]) -> dict:
    """Register every instance in every other one as an enabled peer: its name, base URL and INEGI service
    area, and a fresh key id + secret per direction, issued by the receiving side as between real centres.
    `instances`: (code, cve_ent, public URL, env). Returns {(receiver, sender): {key_id, secret}}."""
    for code, _cve, _url, _env in instances:
        say(f"Registrando en {code} a " + ", ".join(f"{p} ({u})" for p, _c, u, _e in instances if p != code))
    issued = peer_setup(
        [
            (
                code,
                env,
                [
                    {"code": peer, "name": CENTRE_NAMES[peer], "base_url": url, "cve_ent": cve_ent}
                    for peer, cve_ent, url, _env in instances
                    if peer != code
                ],
            )
            for code, _cve, _url, env in instances
        ]
    )
    credentials = {(code, peer): issued[code][peer] for code in issued for peer in issued[code]}
    peer_setup(
        [
            (code, env, [{"code": peer, "outbound": credentials[(peer, code)]} for peer in issued[code]])
            for code, _cve, _url, env in instances
        ]
    )
    return credentials


def interstate(args: argparse.Namespace) -> None:
    """Two instances on this host, MEX and CDMX, each with its own database, registered as each other's
    peers; Ctrl+C stops both."""
    env = served_env()
    prod = production_path(env)
    ensure_installed(dev=False)
    (ROOT / "var").mkdir(exist_ok=True)
    local_secret_key(env)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104 - display only
    ports = {"MEX": args.mex_port, "CDMX": args.cdmx_port}
    if ports["MEX"] == ports["CDMX"]:
        fail("--mex-port y --cdmx-port deben ser distintos.")
    check_web_procs(args.web_procs, prod=prod)
    for code, port in ports.items():
        check_port(args.host, port, f"--{code.lower()}-port")
    if notice := allowed_hosts_notice(args.host, env):
        say(notice)
    instances = []
    for code, cve_ent in PEER_CENTRES:
        url = f"http://{shown}:{ports[code]}"
        instance = instance_env(env, code=code, public_url=url)
        if env.get("DATABASE_URL") or env.get("REDIS_URL"):
            check_services(instance)
        prepare(
            instance,
            center=code,
            seed=not args.no_seed,
            hint=f"revise el error anterior; en modo embebido puede borrar var/{code.lower()}.sqlite3",
        )
        instances.append((code, cve_ent, url, instance))
    compile_messages(env)
    say("Reuniendo archivos estáticos (collectstatic)")
    manage("collectstatic", "--noinput", "-v", "0", what="collectstatic", env=instances[0][3])
    register_peers(instances)

    simulate = not args.no_avl_sim
    processes = []
    for code, _cve_ent, _url, instance in instances:
        processes += instance_processes(
            instance,
            host=args.host,
            port=ports[code],
            web_procs=args.web_procs,
            simulate=simulate,
            tag=code.lower(),
        )
    say(
        "Ruta de producción: por centro, Daphne, Celery worker y Celery beat"
        if prod
        else "Modo embebido: un proceso por centro (canal en memoria, tareas en hilos locales)"
    )
    children = start_processes(processes)
    interstate_banner({code: url for code, _cve_ent, url, _env in instances}, prod=prod)
    supervise(children)


def interstate_banner(urls: dict[str, str], *, prod: bool) -> None:
    mex, cdmx = urls["MEX"], urls["CDMX"]
    lines = [
        "",
        "=" * 72,
        f" Dos centros vecinos ({'ruta de producción' if prod else 'modo embebido'}):",
        "",
        f"   MEX  Estado de México     {mex}/console/   (llamadas: {mex}/console/intake/)",
        f"   CDMX Ciudad de México     {cdmx}/console/   (llamadas: {cdmx}/console/intake/)",
        "",
        f" Usuarios en cada centro (contraseña {os.environ.get('CAD_DEMO_PASSWORD') or DEMO_PASSWORD}):",
        "   operador (operador de llamadas), despachador, supervisor, admin (administrador)",
        "",
        " Pruebe: en MEX, como operador, registre una llamada ubicada dentro de la CDMX (p. ej. el Zócalo,",
        " 19.4326, -99.1332); la consola de MEX la marca para CDMX: escálela. En CDMX, como despachador,",
        " acéptela y asigne unidades; MEX ve la aceptación, las unidades, las notas y el cierre.",
        " Guía completa: README.md, sección «Dos centros: escalamiento interestatal».",
        "",
        " Ctrl+C para detener.",
        "=" * 72,
        "",
    ]
    print("\n".join(lines), flush=True)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def supervise(children: list[Child]) -> None:
    """Keep the children running (see Child) until Ctrl+C/SIGTERM, then stop them all; each drains first."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        while True:
            now = time.monotonic()
            for child in children:
                if child.restart_at is not None and now >= child.restart_at:
                    child.restart_at = None
                    child.start()
                    say(f"Proceso {child.name} reiniciado (pid {child.proc.pid})")
                if child.restart_at is not None or child.proc.poll() is None or child.failures < 0:
                    continue
                code = child.proc.returncode
                if not child.essential:
                    child.failures = -1  # reported once, left stopped
                    print(
                        f"\nAviso: el proceso {child.name} terminó (código {code}); el servidor sigue.",
                        flush=True,
                    )
                    continue
                child.failures = 1 if now - child.started > 60 else child.failures + 1
                delay = min(30, 2 ** (child.failures - 1))
                child.restart_at = now + delay
                print(
                    f"\nERROR: el proceso {child.name} terminó (código {code}); se reinicia en {delay} s.",
                    flush=True,
                )
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("Deteniendo procesos (terminan las solicitudes en curso)…")
    finally:
        running = [child.proc for child in children if child.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30  # cad.serve drains its Daphne children first
        for child in children:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{child.name} no se detuvo a tiempo; forzando")
                child.proc.kill()
                child.proc.wait()
    sys.exit(0)


def test(pytest_args: list[str]) -> None:
    env = dict(os.environ)
    ensure_installed(dev=True)
    if env.get("DATABASE_URL") or env.get("REDIS_URL"):
        check_services(env)
        say(
            "Pruebas en la ruta de producción: "
            f"DATABASE_URL={'definida' if env.get('DATABASE_URL') else '-'}, "
            f"REDIS_URL={'definida' if env.get('REDIS_URL') else '-'}"
        )
    else:
        say("Pruebas en modo embebido (SQLite, canal en memoria)")
    compile_messages(env)
    say("pytest " + " ".join(pytest_args))
    result = subprocess.run([str(PY), "-m", "pytest", *pytest_args], cwd=ROOT, env=env)  # noqa: S603
    if result.returncode == 5:
        fail("pytest no recolectó ninguna prueba (código 5).", "revise la ruta o el filtro (-k) indicados")
    if result.returncode != 0:
        print(f"\npytest terminó con código {result.returncode}.", file=sys.stderr)
    sys.exit(result.returncode)


def main(argv: list[str]) -> None:
    ensure_python()
    os.chdir(ROOT)
    if argv[:1] == ["test"]:
        test(argv[1:])
        return
    if argv[:1] == ["install"]:
        dev = "--dev" in argv[1:]
        ensure_installed(dev=dev)
        say(f"Instalado en .venv{' (con extras dev)' if dev else ''}: {PY}")
        return
    if argv[:1] == ["interstate"]:
        interstate(interstate_parser().parse_args(argv[1:]))
        return
    parser = argparse.ArgumentParser(
        prog="python3 run.py",
        description="Instala en .venv, migra, siembra la demostración y sirve las consolas con Daphne. "
        "`python3 run.py test [args de pytest]` ejecuta las pruebas; "
        "`python3 run.py install [--dev]` sólo instala en .venv; "
        "`python3 run.py interstate` arranca dos centros vecinos (MEX y CDMX).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-seed", action="store_true", help="no ejecutar seed_demo")
    parser.add_argument("--no-avl-sim", action="store_true", help="no arrancar el simulador AVL")
    parser.add_argument(
        "--dc09-port",
        type=int,
        default=int(os.environ.get("CAD_DC09_PORT", "12128")),
        help="puerto TCP del receptor SIA DC-09 de botones de pánico (0 = no arrancarlo)",
    )
    parser.add_argument(
        "--web-procs",
        type=int,
        default=None,
        help="procesos Daphne en la ruta de producción (por omisión: uno por CPU; el modo embebido usa 1)",
    )
    serve(parser.parse_args(argv))


def interstate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 run.py interstate",
        description="Dos centros en este equipo, Estado de México (MEX) y Ciudad de México (CDMX), cada uno "
        "con su base de datos, registrados como centros vecinos (escalamiento interestatal).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mex-port", type=int, default=8000)
    parser.add_argument("--cdmx-port", type=int, default=8001)
    parser.add_argument("--no-seed", action="store_true", help="no ejecutar seed_demo")
    parser.add_argument("--no-avl-sim", action="store_true", help="no arrancar el simulador AVL")
    parser.add_argument(
        "--web-procs", type=int, default=1, help="procesos Daphne por centro en la ruta de producción (1)"
    )
    return parser


if __name__ == "__main__":
    main(sys.argv[1:])
