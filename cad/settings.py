"""Settings from environment variables.

Embedded default (nothing set): SQLite, in-process channel layer, tasks on a local thread pool.
Production path: DATABASE_URL (PostgreSQL) and REDIS_URL (channel layer + Celery broker).
"""

import importlib.util
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Only for DEBUG (and tests): with DEBUG off a server refuses to start on it, and `check --deploy` fails.
BUILTIN_SECRET_KEY = "insecure-dev-only-key-change-me-for-production-0123456789"  # noqa: S105
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=BUILTIN_SECRET_KEY)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # service tokens (accounts.tokens); replaced rest_framework.authtoken (accounts migration 0004)
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "cad",
    "accounts",
    "geo",
    "units",
    "incidents",
    "interstate",
    "dashboard",
    "tips",
    "sensors",
    "console",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Instead of Django's LocaleMiddleware: es-MX unless the user chose otherwise (never Accept-Language).
    "cad.middleware.LocaleAndTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login
]

ROOT_URLCONF = "cad.urls"
ASGI_APPLICATION = "cad.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "cad.context_processors.csrf_cookie",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cad.sqlite3'}")}
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
if IS_POSTGRES:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side parameter binding: psycopg sends parameters apart from the SQL instead of quoting them into
    # it (Django's default). Measured on the escalation path (docs/benchmarks.md, 2026-11-28 A/B): a third
    # less CPU in every process (web, worker, PostgreSQL).
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env.bool(
        "DB_SERVER_SIDE_BINDING", default=True
    )
    # Prepared statements: psycopg prepares a statement it has run DB_PREPARE_THRESHOLD times on a connection,
    # so PostgreSQL stops parsing and planning it again. Django turns this off unless OPTIONS asks for it.
    # Measured on the escalation path (docs/benchmarks.md, 2026-11-29): PostgreSQL's CPU per escalation
    # 11.6 → 7.0 ms. DB_SERVER_SIDE_BINDING=false or DB_PREPARE_THRESHOLD=0 for a pooler that cannot keep
    # prepared statements (PgBouncer in transaction mode before 1.21).
    prepare_threshold = env.int("DB_PREPARE_THRESHOLD", default=5)
    if DATABASES["default"]["OPTIONS"]["server_side_binding"] and prepare_threshold > 0:
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = prepare_threshold
    # Under ASGI each request runs on a thread of its own, so a persistent connection (CONN_MAX_AGE) is never
    # reused: every request would open a new PostgreSQL connection (a backend process, milliseconds). A pool
    # per process (psycopg_pool) lends each request an open connection instead. DB_POOL_MAX_SIZE=0 turns it
    # off (then DB_CONN_MAX_AGE applies), e.g. behind PgBouncer in transaction mode.
    DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=8)
    if DB_POOL_MAX_SIZE > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(env.int("DB_POOL_MIN_SIZE", default=1), DB_POOL_MAX_SIZE),
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    # WAL + a busy timeout so the console, the task threads and the dev server share SQLite. IMMEDIATE
    # transactions take the write lock at BEGIN: a transaction that read first and then writes would otherwise
    # fail at once with "database is locked" (SQLite cannot wait to upgrade a read lock), whatever the timeout.
    DATABASES["default"]["OPTIONS"].update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
# A PostgreSQL read replica for dashboards, KPI reports and exports (see cad/db.py), only when configured.
if env.str("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = {
        **DATABASES["default"],
        "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),
        **env.db("DATABASE_REPLICA_URL"),
        "TEST": {"MIRROR": "default"},  # tests: the replica is the test database itself
    }
    DATABASE_ROUTERS = ["cad.db.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Redis: channel layer, Celery, cache ----------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Several instances on one host (`python3 run.py interstate`): CAD_INSTANCE namespaces this instance's Redis
# keys (channel layer groups, Celery queues, cache) and its session cookie, so two centres can share one
# Redis server and one browser without seeing each other's events, tasks, cache entries or logins.
INSTANCE = env.str("CAD_INSTANCE", default="")


def redis_channel_layer(url: str, *, prefix: str = "asgi") -> dict:
    """channels_redis on `url`, with the client configured so an idle stream is healthy: channels_redis
    blocks up to 5 s in BZPOPMIN (`brpop_timeout`), so the socket read timeout must be longer (redis-py 8's
    default of 5 s fires first and kills idle receivers); keepalive and health checks find dead connections,
    and a short connect timeout makes a restarted Redis reachable again within seconds."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": url,
                    # redis-py's asyncio pool raises (not waits) past max_connections (default 100): a burst
                    # of console reconnects after a restart must not crash consumers.
                    "max_connections": env.int("CHANNEL_REDIS_MAX_CONNECTIONS", default=2000),
                    "socket_timeout": env.float("CHANNEL_REDIS_SOCKET_TIMEOUT_S", default=15.0),
                    "socket_connect_timeout": 3,
                    "socket_keepalive": True,
                    "health_check_interval": 10,
                }
            ],
            "prefix": prefix,
            "capacity": env.int("CHANNEL_CAPACITY", default=1000),
            "expiry": 30,
            "group_expiry": 86400,
        },
    }


if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": redis_channel_layer(REDIS_URL, prefix=f"{INSTANCE}:asgi" if INSTANCE else "asgi")
    }
    CELERY_BROKER_URL = REDIS_URL
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": INSTANCE,
        }
    }
else:
    # Channels reserves the in-memory layer for development and tests: one process only.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = ""
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker runs its tasks on threads (`--concurrency` of them), not on forked children: the product's tasks
# mostly wait (an interstate delivery waits for the peer's answer), and prefork's hand-off of every task to
# a child and its result back cost a quarter of the worker's CPU per delivery (6.6 → 4.9 ms per escalation
# at 50/s, docs/benchmarks.md 2026-11-28). A worker is then one process on one core: run more workers to
# scale (docs/operations.md). CELERY_POOL=prefork restores children (`-P prefork` alone does not: Celery takes
# it for its default and lets this setting win).
CELERY_WORKER_POOL = env.str("CELERY_POOL", default="threads")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {}
# Celery's Django fixup closes the database connections before and after every task, and under prefork the
# whole psycopg pool with them: two new PostgreSQL backends per task (3.7 per escalation at 50/s). Past this
# many tasks it still does; cad.celery recycles the connection around each task as Django does around each
# request instead (back to the pool, or closed when unusable or past CONN_MAX_AGE).
CELERY_DB_REUSE_MAX = 10_000
# kombu's Redis default (3600 s) would hold an unacknowledged task of a killed worker for an hour: redeliver in
# seconds. Task retry countdowns stay well below it (CAD_INTERSTATE_RETRY_BACKOFF_MAX_S), or a waiting retry
# would be redelivered while it waits.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_S", default=30)}
if INSTANCE:  # kombu prefixes every broker key (queues, unacked, pidbox) with it
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = f"{INSTANCE}:"

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Per instance: two centres on one host (run.py interstate) share a browser's cookies, ports aside; a shared
# CSRF cookie would be rotated by a login to the other centre and fail this one's forms with 403.
SESSION_COOKIE_NAME = f"{INSTANCE}_sessionid" if INSTANCE else "sessionid"
CSRF_COOKIE_NAME = f"{INSTANCE}_csrftoken" if INSTANCE else "csrftoken"
# Login throttling (django-axes): after CAD_LOGIN_FAILURE_LIMIT wrong passwords for one account from one
# address, that pair is locked out for CAD_LOGIN_COOLOFF_MIN minutes (the address as cad.proxies resolves
# it). Administrators unlock with `python manage.py axes_reset_username <user>`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.CenterModelBackend",  # ModelBackend that reads the user with its centre
]
AXES_FAILURE_LIMIT = env.int("CAD_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("CAD_LOGIN_COOLOFF_MIN", default=15.0) / 60.0  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ADMIN = True
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- i18n / time ----------------------------------------------------------------------------
LANGUAGE_CODE = "es-mx"
LANGUAGES = [("es-mx", "Español (México)"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "cad_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600  # the choice is remembered (and saved on the user, accounts.views)
USE_I18N = True
TIME_ZONE = "America/Mexico_City"  # shown; stored in UTC (USE_TZ)
USE_TZ = True

# --- Static ---------------------------------------------------------------------------------
STATIC_URL = "static/"
LEAFLET_STATIC = Path(importlib.util.find_spec("leaflet").submodule_search_locations[0]) / "static"
# django-leaflet ships Leaflet; its admin module imports GeoDjango (system GDAL), so the package is
# used as the asset source rather than as an installed app.
STATICFILES_DIRS = [BASE_DIR / "static", LEAFLET_STATIC]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- REST -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an anonymous request gets 401 with `WWW-Authenticate: Token` (session first answers
    # 403, which a client cannot tell from a missing role). Consoles still authenticate by session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.auth.ServiceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "cad.api.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "cad.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["cad.api.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Service tokens (django-rest-knox): the database keeps a SHA-512 digest, never the token. Devices keep sending
# `Authorization: Token <token>`. A token expires CAD_TOKEN_TTL_DAYS after it is issued (0: never, not
# recommended); `manage.py service_token rotate` replaces one with a grace period (docs/operations.md).
CAD_TOKEN_TTL_DAYS = env.int("CAD_TOKEN_TTL_DAYS", default=365)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": timedelta(days=CAD_TOKEN_TTL_DAYS) if CAD_TOKEN_TTL_DAYS > 0 else None,
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "C4 CAD API",
    "DESCRIPTION": "Computer-aided dispatch for Mexican state command centres (C4/C5).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "PeerKindEnum": "interstate.models.Peer.Kind",
        "EscalationKindEnum": "interstate.models.AutoEscalationPolicy.Kind",
        "LocationSourceEnum": "incidents.models.LocationSource",
        # 089 input: no handset location (incidents.api.Call089Input).
        "AnonymousLocationSourceEnum": "incidents.api.ANONYMOUS_LOCATION_SOURCES",
    },
}

# --- Map ------------------------------------------------------------------------------------
LEAFLET_CONFIG = {
    "DEFAULT_CENTER": (19.35, -99.4),
    "DEFAULT_ZOOM": 9,
    "TILES": env.str("CAD_TILE_URL", default="") and [("Base", env.str("CAD_TILE_URL"), {})] or [],
    "ATTRIBUTION_PREFIX": "Fuente: INEGI, Marco Geoestadístico",
}

# --- CAD domain settings --------------------------------------------------------------------
CAD = {
    "CENTER_CODE": env.str("CAD_CENTER_CODE", default="MEX"),
    "DUPLICATE_RADIUS_M": env.float("CAD_DUPLICATE_RADIUS_M", default=500.0),
    "DUPLICATE_WINDOW_MIN": env.int("CAD_DUPLICATE_WINDOW_MIN", default=60),
    "DUPLICATE_MATCH": env.str("CAD_DUPLICATE_MATCH", default="subtipo"),  # subtipo | tipo | any
    "AVL_STALE_SECONDS": env.int("CAD_AVL_STALE_SECONDS", default=300),
    "AVL_MAX_BATCH": env.int("CAD_AVL_MAX_BATCH", default=5000),
    "ROAD_FACTOR": env.float("CAD_ROAD_FACTOR", default=1.35),
    "TRAVEL_TIME_ESTIMATOR": env.str(
        "CAD_TRAVEL_TIME_ESTIMATOR", default="units.routing.StraightLineEstimator"
    ),
    "RECOMMEND_LIMIT": env.int("CAD_RECOMMEND_LIMIT", default=5),
    # Units beyond either limit are never suggested and always flagged (recommendations, manual dispatch).
    "RECOMMEND_MAX_ETA_S": env.int("CAD_RECOMMEND_MAX_ETA_S", default=1800),
    "RECOMMEND_MAX_DISTANCE_KM": env.float("CAD_RECOMMEND_MAX_DISTANCE_KM", default=60.0),
    # A point farther than this outside the centre's state boundary needs an explicit confirmation.
    "SERVICE_AREA_MARGIN_KM": env.float("CAD_SERVICE_AREA_MARGIN_KM", default=1.0),
    # Geocoding: "gazetteer" (offline, INEGI localities imported by the operator) or "nominatim" (HTTP).
    "GEOCODER": env.str("CAD_GEOCODER", default="gazetteer"),
    "GEOCODER_URL": env.str("CAD_GEOCODER_URL", default=""),
    "GEOCODER_TIMEOUT_S": env.float("CAD_GEOCODER_TIMEOUT_S", default=4.0),
    "GEOCODER_USER_AGENT": env.str("CAD_GEOCODER_USER_AGENT", default="c4-cad/0.1 (self-hosted CAD)"),
    # KPIs computed over fewer measurements than this say "datos insuficientes".
    "KPI_MIN_SAMPLE": env.int("CAD_KPI_MIN_SAMPLE", default=20),
    "REPLAY_LIMIT": env.int("CAD_REPLAY_LIMIT", default=2000),
    # Memory for each sort of an exact KPI report (PostgreSQL work_mem, that transaction only).
    "REPORT_WORK_MEM": env.str("CAD_REPORT_WORK_MEM", default="128MB"),
    # Realtime self-repair: broadcasts wait at most this long for the channel layer, at most this many queue
    # (more are dropped; consoles replay them); heartbeats carry each stream's seq; sessions are re-checked.
    "BROADCAST_TIMEOUT_S": env.float("CAD_BROADCAST_TIMEOUT_S", default=2.0),
    "BROADCAST_QUEUE": env.int("CAD_BROADCAST_QUEUE", default=10000),
    "HEARTBEAT_S": env.float("CAD_HEARTBEAT_S", default=10.0),
    "SESSION_CHECK_S": env.float("CAD_SESSION_CHECK_S", default=60.0),
    # Event-table retention (pruned hourly): consoles further behind than what is left reload by REST.
    "EVENT_RETENTION_DAYS": env.int("CAD_EVENT_RETENTION_DAYS", default=30),
    "AVL_EVENT_RETENTION_H": env.int("CAD_AVL_EVENT_RETENTION_H", default=1),
    # Timer targets in seconds (Mexican 9-1-1 norm defaults), overridable per deployment.
    "TARGET_MINIMUM_DATA_S": env.int("CAD_TARGET_MINIMUM_DATA_S", default=90),
    "TARGET_DISPATCH_S": env.int("CAD_TARGET_DISPATCH_S", default=120),
    "TARGET_ON_SCENE_S": env.int("CAD_TARGET_ON_SCENE_S", default=600),
    # 089 follow-up: failed call-back look-ups of one folio allowed per window before it is locked.
    "TIPS_LOOKUP_MAX_FAILURES": env.int("CAD_TIPS_LOOKUP_MAX_FAILURES", default=5),
    "TIPS_LOOKUP_WINDOW_MIN": env.int("CAD_TIPS_LOOKUP_WINDOW_MIN", default=15),
    # Panic buttons: CNIE type of the incident a press opens (30402 «Botón de emergencia activado», ALTA),
    # SIA codes that count as a press, and the window in which presses of one button join its incident.
    "PANIC_INCIDENT_TYPE": env.str("CAD_PANIC_INCIDENT_TYPE", default="30402"),
    "PANIC_PRESS_CODES": env.list("CAD_PANIC_PRESS_CODES", default=["PA", "HA", "QA", "MA", "PH"]),
    "PANIC_MERGE_WINDOW_S": env.int("CAD_PANIC_MERGE_WINDOW_S", default=600),
    # SIA DC-09 receiver (its own process): address, accepted timestamp window (s before, s after now).
    "DC09_HOST": env.str("CAD_DC09_HOST", default="0.0.0.0"),  # noqa: S104 - panels dial in from the network
    "DC09_PORT": env.int("CAD_DC09_PORT", default=12128),
    "DC09_TIMEBAND": tuple(env.list("CAD_DC09_TIMEBAND", cast=int, default=[40, 20])),
    "DC09_ACCOUNTS_REFRESH_S": env.float("CAD_DC09_ACCOUNTS_REFRESH_S", default=30.0),
    # LPR: raw reads kept this many days (hits stay), reads per ingest batch, hours of track shown.
    "LPR_RETENTION_DAYS": env.int("CAD_LPR_RETENTION_DAYS", default=90),
    "LPR_MAX_BATCH": env.int("CAD_LPR_MAX_BATCH", default=5000),
    "LPR_TRACK_HOURS": env.int("CAD_LPR_TRACK_HOURS", default=24),
    # CNIE type of an incident opened from a hit when the dispatcher does not choose one.
    "LPR_INCIDENT_TYPE": env.str("CAD_LPR_INCIDENT_TYPE", default="30430"),
}

# --- Interstate (CAD-to-CAD escalation; docs/interstate.md) ---------------------------------
CAD_PUBLIC_URL = env.str("CAD_PUBLIC_URL", default="http://127.0.0.1:8000")  # published to peers
CAD_CENTER_KIND = env.str("CAD_CENTER_KIND", default="state")  # state | municipal (published to peers)
CAD_CONTACT_DESK = env.str("CAD_CONTACT_DESK", default="")  # published to peers
CAD_INTERSTATE_BORDER_KM = env.float("CAD_INTERSTATE_BORDER_KM", default=5.0)
CAD_INTERSTATE_CLOCK_SKEW_S = env.int("CAD_INTERSTATE_CLOCK_SKEW_S", default=300)
CAD_INTERSTATE_SWEEP_AFTER_S = env.float("CAD_INTERSTATE_SWEEP_AFTER_S", default=10.0)
CAD_INTERSTATE_SWEEP_EVERY_S = env.float("CAD_INTERSTATE_SWEEP_EVERY_S", default=5.0)
CAD_INTERSTATE_HTTP_TIMEOUT_S = env.float("CAD_INTERSTATE_HTTP_TIMEOUT_S", default=5.0)
CAD_INTERSTATE_LEASE_S = env.float("CAD_INTERSTATE_LEASE_S", default=30.0)
CAD_INTERSTATE_RETRY_BACKOFF_MAX_S = env.int("CAD_INTERSTATE_RETRY_BACKOFF_MAX_S", default=10)
# Peer request audit (PeerRequestLog) kept this many days, then pruned hourly (interstate.tasks.prune).
CAD_INTERSTATE_AUDIT_RETENTION_DAYS = env.int("CAD_INTERSTATE_AUDIT_RETENTION_DAYS", default=365)
# Vehicles per vehicleAlert message when a shared list is published in bulk (one EIDO each).
CAD_INTERSTATE_VEHICLE_BATCH = env.int("CAD_INTERSTATE_VEHICLE_BATCH", default=500)
# Encrypts the peers' HMAC secrets at rest. Required in production (`check --deploy`); without it a key is
# derived from SECRET_KEY (changing SECRET_KEY then makes the stored secrets unreadable: rotate them).
CAD_INTERSTATE_KEY = env.str("CAD_INTERSTATE_KEY", default="")
# Dotted paths of callables `fn(incident) -> {"vehicles": [...], "persons": [...]}` adding facts to the EIDO
# (interstate.eido.EidoFacts documents the keys).
CAD_INTERSTATE_EIDO_SOURCES = env.list("CAD_INTERSTATE_EIDO_SOURCES", default=["sensors.eido.hit_vehicles"])

# --- Security (production settings are checked with `check --deploy`) -----------------------
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG and bool(REDIS_URL))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or networks); from anyone
# else those headers are dropped (cad.proxies).
CAD_TRUSTED_PROXIES = env.list("CAD_TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])

# --- Logging: structured (one JSON object per line) -----------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Each line names its centre: `run.py interstate` interleaves two centres' processes on one terminal.
    "formatters": {"json": {"()": "cad.logging.JsonFormatter", "center": CAD["CENTER_CODE"]}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
# Celery's own lines (its default formats) with the centre's code, as the JSON lines have it.
CELERY_WORKER_LOG_FORMAT = f"[%(asctime)s: %(levelname)s/%(processName)s] {CAD['CENTER_CODE']} %(message)s"
CELERY_WORKER_TASK_LOG_FORMAT = f"[%(asctime)s: %(levelname)s/%(processName)s] {CAD['CENTER_CODE']} %(task_name)s[%(task_id)s]: %(message)s"
