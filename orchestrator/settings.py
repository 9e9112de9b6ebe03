"""One env-driven settings module. Every variable is listed in docs/configuration.md and contract §1."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from orchestrator.env import Env, database_from_url, otel_traces_exported, parse_env_file, redis_channel_layer

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = Path(os.environ.get("ENV_FILE", str(BASE_DIR / ".env")))
env = Env(parse_env_file(ENV_FILE))

VERSION: str = "0.1.0"
# Off unless asked for: Django's debug pages show settings, and `make run` must be safe to expose by
# mistake. Turn it on for development only (README, "Configuration").
DEBUG: bool = env.bool("DEBUG", False)
ENVIRONMENT: str = env.choice("ENVIRONMENT", "development" if DEBUG else "production", ("development", "production", "test"))

# Importing settings reads configuration and writes nothing: first-run secrets come from
# `manage.py init_secrets` (which `make run` calls). A missing SECRET_KEY stops the server at start
# (orchestrator.asgi) and any command that needs it, with Django's own message.
SECRET_KEY: str = env.str("SECRET_KEY")
ORCHESTRATOR_TOKEN: str = env.str("ORCHESTRATOR_TOKEN")

PORT: int = env.int("PORT", 3100, minimum=1, maximum=65535)
PUBLIC_BASE_URL: str = env.url("PUBLIC_BASE_URL", f"http://localhost:{PORT}") or ""
PUBLIC_HOST = urlsplit(PUBLIC_BASE_URL).hostname or "localhost"
DEMO_MODE: bool = env.bool("DEMO_MODE", False)

# --- providers (features stay off until configured) ---------------------------------------
TWILIO_ACCOUNT_SID = env.optional("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env.optional("TWILIO_AUTH_TOKEN")
TWILIO_API_BASE_URL = env.url("TWILIO_API_BASE_URL", None)
RESEND_API_KEY = env.optional("RESEND_API_KEY")
RESEND_WEBHOOK_SECRET = env.optional("RESEND_WEBHOOK_SECRET")
if RESEND_WEBHOOK_SECRET and not RESEND_WEBHOOK_SECRET.startswith("whsec_"):
    raise ImproperlyConfigured("RESEND_WEBHOOK_SECRET must start with whsec_")
RESEND_API_BASE_URL = env.url("RESEND_API_BASE_URL", None)
EMAIL_DEFAULT_DOMAIN: str = env.str("EMAIL_DEFAULT_DOMAIN", "agents.example.com")
ELEVENLABS_API_KEY = env.optional("ELEVENLABS_API_KEY")
ELEVENLABS_DEFAULT_VOICE = env.optional("ELEVENLABS_DEFAULT_VOICE")
ELEVENLABS_API_BASE_URL = env.url("ELEVENLABS_API_BASE_URL", None)
LINE_CHANNEL_ACCESS_TOKEN = env.optional("LINE_CHANNEL_ACCESS_TOKEN")
LINE_CHANNEL_SECRET = env.optional("LINE_CHANNEL_SECRET")
LINE_API_BASE_URL = env.url("LINE_API_BASE_URL", None)
VOICE_DEFAULT_GREETING = env.str("VOICE_DEFAULT_GREETING", "Hello! How can I help you today?")
VOICE_DEFAULT_LANGUAGE = env.str("VOICE_DEFAULT_LANGUAGE", "en-US")
VOICE_AI_DISCLOSURE = env.bool("VOICE_AI_DISCLOSURE", True)
# How long a caller waits for the agent's answer to one utterance (its first token) before the
# answering machine takes over the rest of the call.
VOICE_TURN_TIMEOUT_SECONDS: float = env.int("VOICE_TURN_TIMEOUT_SECONDS", 8, minimum=1, maximum=60)
# How long the signed voice-socket URL in a call's TwiML stays valid (Twilio connects within seconds).
VOICE_WS_TOKEN_TTL_SECONDS = env.int("VOICE_WS_TOKEN_TTL_SECONDS", 300, minimum=30, maximum=86400)
# USD list prices used when a provider reports no cost (and for every sandbox send): per 1,000 TTS
# characters, per number-month. Each channel's unit price (an SMS/WhatsApp segment, an email, a LINE
# push, a call minute) is its registry entry's (channels_app.channel_registry); a key here overrides it.
PROVIDER_PRICES: dict[str, str] = {
    "tts": "0.3000",
    "number": "1.1500",
}

# --- auth ------------------------------------------------------------------------------
AUTH_FAILURE_LIMIT: int = env.int("AUTH_FAILURE_LIMIT", 10, minimum=1)
AUTH_FAILURE_WINDOW_SECONDS: int = env.int("AUTH_FAILURE_WINDOW_SECONDS", 300, minimum=1)
# Comma-separated proxy addresses whose X-Forwarded-For we believe; empty: use the socket address.
TRUSTED_PROXIES: list[str] = [p.strip() for p in env.str("TRUSTED_PROXIES").split(",") if p.strip()]
TOKEN_LAST_USED_INTERVAL_SECONDS = 300
MAX_REQUEST_BODY_BYTES = 1024 * 1024

# --- inbound -----------------------------------------------------------------------------
# Days a delivered inbound message keeps its body; 0 erases it once delivered and acknowledged.
MESSAGE_BODY_RETENTION_DAYS: int = env.int("MESSAGE_BODY_RETENTION_DAYS", 0, minimum=0)
# Days a call's transcript and turn texts are kept after it ended; 0 erases them at the worker's first pass
# at least 5 minutes after the end (voice.retention.SETTLE).
CALL_TRANSCRIPT_RETENTION_DAYS: int = env.int("CALL_TRANSCRIPT_RETENTION_DAYS", 30, minimum=0)

# --- callbacks (contract §8; channels_app.callbacks, channels_app.destinations) ---------------
# Hosts (names or addresses, comma-separated) a callbackUrl may reach although they are not public:
# an operator's internal agent runner. Everything else must resolve to public addresses only.
CALLBACK_ALLOWED_HOSTS: list[str] = [h.strip() for h in env.str("CALLBACK_ALLOWED_HOSTS").split(",") if h.strip()]
CALLBACK_TIMEOUT_SECONDS: int = env.int("CALLBACK_TIMEOUT_SECONDS", 10, minimum=1, maximum=60)
# Callbacks in flight at once to one destination (scheme, host, port), over as many kept-alive connections.
CALLBACK_CONCURRENCY_PER_DESTINATION: int = env.int("CALLBACK_CONCURRENCY_PER_DESTINATION", 8, minimum=1, maximum=100)
# The wait after the first failed attempt; each later one is 3× the previous (5 s … about an hour).
# Tests shorten it; the contract fixes 5 s.
CALLBACK_FIRST_RETRY_SECONDS: float = 5.0
# How often each server process (and deliver_callbacks) looks for due retries; 0 turns the server's off.
CALLBACK_SWEEP_SECONDS: float = float(env.int("CALLBACK_SWEEP_MILLISECONDS", 1000, minimum=0)) / 1000

# --- Django ------------------------------------------------------------------------------
ALLOWED_HOSTS = list({PUBLIC_HOST, "localhost", "127.0.0.1", "[::1]", "testserver"} | set(
    h.strip() for h in env.str("EXTRA_ALLOWED_HOSTS").split(",") if h.strip()
))
CSRF_TRUSTED_ORIGINS = [f"{urlsplit(PUBLIC_BASE_URL).scheme}://{urlsplit(PUBLIC_BASE_URL).netloc}"]

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin with the operator pages as admin.site (admin_ui/sites.py).
    "admin_ui.apps.OrchestratorAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's files for /admin/api-docs, served from the package (no CDN, nothing vendored).
    "drf_spectacular_sidecar",
    "channels",
    "agents",
    "channels_app",
    "voice",
    "admin_ui",
]

MIDDLEWARE = [
    # First on purpose: it must see the error pages every other middleware renders (see its docstring).
    "orchestrator.middleware.JsonErrorPagesMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # BROWSER_MIDDLEWARE, for every path but the machine-facing ones (/api/, /webhooks/, /health*).
    "orchestrator.middleware.BrowserOnlyMiddleware",
    "orchestrator.request_metrics.PrometheusAfterMiddleware",  # django-prometheus's, labels looked up once
    # Sync-only on purpose (see its docstring): the whole chain runs in sync mode, in one worker hop.
    "orchestrator.middleware.ApiErrorMiddleware",
]
# What only browsers need (the admin and its /admin/api/: staff sessions with CSRF), in this order, run
# by BrowserOnlyMiddleware where it stands in MIDDLEWARE. Machine-facing paths (bearer tokens and
# provider signatures, never a browser session) skip them: every view there is csrf_exempt, and they
# were half of a webhook's middleware cost. Sync-capable middleware without exception hooks only.
BROWSER_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The admin's checks look for its middleware in MIDDLEWARE by class; they run from BROWSER_MIDDLEWARE.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

ROOT_URLCONF = "orchestrator.urls"
ASGI_APPLICATION = "orchestrator.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env.str("DATABASE_URL", "sqlite:///db.sqlite3")
DATABASES = {"default": database_from_url(DATABASE_URL, base_dir=BASE_DIR)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL: readers never wait for the writer, and a commit appends to the log instead of rewriting a
    # rollback journal with two fsyncs; every send commits twice (row before the provider call, outcome after).
    _sqlite_options: dict[str, object] = DATABASES["default"].setdefault("OPTIONS", {})  # type: ignore[assignment]
    _sqlite_options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    # Django's SQLite backend, with write transactions queued in-process (see its docstring).
    DATABASES["default"]["ENGINE"] = "orchestrator.sqlite_backend"
# Requests and MCP tool calls run on a fixed pool of worker threads (orchestrator.workers), each of
# which keeps its database connection this many seconds: a process holds at most WORKER_THREADS
# connections. 0 reconnects for every request (slow: a fresh connection costs more than most requests).
WORKER_THREADS: int = env.int("WORKER_THREADS", 32, minimum=1, maximum=256)
# How many of those threads run calls at once; queued calls wait for a slot, first come first served
# (orchestrator.workers). Python runs one thread at a time anyway: on SQLite, whose writes queue on one
# lock too, 20 threads runnable at once cost ~15 % more CPU per webhook and p99 61-65 ms against 44-49 ms
# with one slot (bench/HISTORY.md). A thread waiting on a provider's API lends its slot meanwhile, and the
# pool lends another whenever its running calls make no progress for 0.2 s (a locked database), so slow
# or stuck calls never hold the others up for long. On PostgreSQL, whose queries wait on the network,
# slots cost throughput and save no CPU: no limit by default. 0: no limit.
WORKER_CPU_SLOTS: int = env.int(
    "WORKER_CPU_SLOTS", 1 if DATABASES["default"]["ENGINE"] == "orchestrator.sqlite_backend" else 0,
    minimum=0, maximum=256,
)
# Long polls (wait-for-message) get threads of their own, so waiting agents never starve other requests.
LONG_CALL_THREADS: int = env.int("LONG_CALL_THREADS", 64, minimum=1, maximum=1024)
# Long polls one agent / one organization may hold at once in a process; one more answers 429 with
# retryAfter (channels_app/long_polls.py), so no tenant can take every long-call thread from the others.
LONG_POLLS_PER_AGENT: int = env.int("LONG_POLLS_PER_AGENT", 4, minimum=1, maximum=1024)
LONG_POLLS_PER_ORG: int = env.int("LONG_POLLS_PER_ORG", 16, minimum=1, maximum=1024)
# Net container allocations between two collections of the garbage collector's youngest generation, in
# a server started by uvicorn (orchestrator/heap.py). Python's 700 collected every ~8 MCP calls, at about
# a fifth of the server's CPU per call; larger pauses the server longer each time (bench/HISTORY.md).
GC_YOUNG_THRESHOLD: int = env.int("GC_YOUNG_THRESHOLD", 5_000, minimum=100, maximum=1_000_000)
# In a server started by uvicorn, keep the process's threads on one CPU, moved when another is clearly less
# busy (orchestrator/cpu_placement.py): the loop's and the workers' threads hand every request over, and on
# two CPUs that cost 20-30 % more CPU per webhook (docs/decisions/010-one-cpu.md).
SERVER_ONE_CPU: bool = env.bool("SERVER_ONE_CPU", True)
# The MCP SDK's OpenTelemetry span around every MCP message (its default middleware). Without an exporter
# it records nothing, yet costs about 2 % of a tool call's CPU: on when the OTEL_* variables name one.
MCP_OTEL_SPANS: bool = env.bool("MCP_OTEL_SPANS", otel_traces_exported(env))
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", 300, minimum=0)
# Off: orchestrator.workers.check_idle_connections tests only connections idle for over a second.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.optional("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", str(BASE_DIR / "static")))
# With DEBUG off the server itself serves STATIC_ROOT under STATIC_URL (orchestrator.routing); turn
# it off when a proxy or CDN serves them.
SERVE_STATIC_FILES: bool = env.bool("SERVE_STATIC_FILES", True)

DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["agents.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["agents.authentication.IsAuthenticatedPrincipal"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["orchestrator.json_input.JsonParser"],
    "EXCEPTION_HANDLER": "orchestrator.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Comms Orchestrator API",
    "DESCRIPTION": "SMS, email, WhatsApp, LINE and voice for AI agents.",
    "VERSION": VERSION,
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Enums stay inline: the operations' pydantic models reuse channel sets under several field names,
    # which the default enum-extraction hook reports as naming collisions.
    "POSTPROCESSING_HOOKS": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

PROMETHEUS_EXPORT_MIGRATIONS = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_tokens": {"()": "orchestrator.logging.RedactTokensFilter"},
        "security_refusals_one_line": {"()": "orchestrator.logging.OneLineSecurityRefusals"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["security_refusals_one_line", "redact_tokens"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Drop Django's default console handler so its lines reach the (redacting) root handler once.
        "django": {"handlers": [], "level": "INFO"},
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # httpx logs every request at INFO: a line per callback (with its URL) is noise and costs CPU;
        # failed callbacks are logged by channels_app.callbacks.
        "httpx": {"level": "WARNING"},
    },
}
