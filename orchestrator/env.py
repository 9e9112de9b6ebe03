"""Typed helpers that read configuration from the process environment and `.env`.

Process environment variables win over `.env` values (contract §1). A bad value
fails at start with a message naming the variable.
"""

from __future__ import annotations

import builtins
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off"}


def parse_env_file(path: Path) -> dict[str, str]:
    """Read KEY=value lines; `#` comments, blank lines and optional quotes are allowed."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


class Env:
    """A view over os.environ layered on top of a `.env` file's values.

    Below the `str` method, a bare `str` in an annotation would name the method, hence `builtins.str`.
    """

    def __init__(self, file_values: Mapping[str, str], environ: Mapping[str, str] | None = None):
        self.file_values = dict(file_values)
        self.environ = environ if environ is not None else os.environ

    def raw(self, name: str) -> str | None:
        # An empty process variable counts as unset (compose files pass `KEY=${KEY}` through empty),
        # so it does not hide the `.env` value, e.g. a generated SECRET_KEY.
        if self.environ.get(name):
            return self.environ[name]
        return self.file_values.get(name)

    def str(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        value = self.raw(name)
        return default if value is None else value

    def optional(self, name: builtins.str) -> builtins.str | None:
        value = self.raw(name)
        return value if value else None

    def bool(self, name: builtins.str, default: bool) -> bool:
        value = self.raw(name)
        if value is None or not value.strip():
            return default
        lowered = value.strip().lower()
        if lowered in TRUE_VALUES:
            return True
        if lowered in FALSE_VALUES:
            return False
        raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")

    def int(self, name: builtins.str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {number}")
        return number

    def url(self, name: builtins.str, default: builtins.str | None, *, schemes: tuple[builtins.str, ...] = ("http", "https")) -> builtins.str | None:
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        parts = urlsplit(value.strip())
        if parts.scheme not in schemes or not parts.netloc:
            raise ImproperlyConfigured(f"{name} must be a {'/'.join(schemes)} URL, got {value!r}")
        return value.strip().rstrip("/")

    def choice(self, name: builtins.str, default: builtins.str, choices: tuple[builtins.str, ...]) -> builtins.str:
        value = self.raw(name) or default  # empty means default, as for the other helpers
        if value not in choices:
            raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value


def otel_traces_exported(env: Env) -> bool:
    """Whether the standard OpenTelemetry variables name somewhere for traces to go.

    Spans are recorded only when an OpenTelemetry SDK with an exporter runs in the process (for example
    under `opentelemetry-instrument`), and that is configured through these variables.
    """
    exporter = (env.raw("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.optional("OTEL_EXPORTER_OTLP_ENDPOINT") or env.optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def database_from_url(url: str, *, base_dir: Path) -> dict[str, object]:
    """Turn DATABASE_URL into a Django DATABASES entry (SQLite or PostgreSQL via psycopg 3)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db, sqlite:////absolute/path.db, sqlite:///:memory:
        path = unquote(parts.path)
        if path.startswith("/"):
            path = path[1:]
        if not path:
            raise ImproperlyConfigured(f"DATABASE_URL names no SQLite file: {url!r}")
        name = path if path == ":memory:" or path.startswith("/") else str(base_dir / path)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            # IMMEDIATE transactions avoid "database is locked" upgrades when two writers race.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ImproperlyConfigured(f"DATABASE_URL names no PostgreSQL database: {url!r}")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise ImproperlyConfigured(f"DATABASE_URL must start with sqlite:// or postgres://, got {url!r}")


def redis_channel_layer(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL, got {url!r}")
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that channels_redis
        # blocks in BZPOPMIN: every idle receive then fails with "Timeout reading". Give reads room.
        "CONFIG": {
            "hosts": [{"address": url, "socket_timeout": 15, "socket_connect_timeout": 5}],
            "capacity": 1500,
            "expiry": 30,
            "group_expiry": 86400,
        },
    }


def ensure_generated_secrets(env_path: Path, env: Env) -> dict[str, str]:
    """Write SECRET_KEY and ORCHESTRATOR_TOKEN into `.env` (mode 0600) when neither the environment
    nor the file has them; returns what was written (`manage.py init_secrets` shows the token once)."""
    wanted: dict[str, str] = {}
    if not env.optional("SECRET_KEY"):
        wanted["SECRET_KEY"] = secrets.token_urlsafe(50)
    if not env.optional("ORCHESTRATOR_TOKEN"):
        wanted["ORCHESTRATOR_TOKEN"] = "orch_" + secrets.token_urlsafe(32)
    if not wanted:
        return {}
    existing = env_path.read_text(encoding="utf-8") if env_path.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    # Fill an empty `KEY=` placeholder (as in .env.example) in place; append keys that have no line.
    lines = existing.splitlines(keepends=True)
    pending = dict(wanted)
    for index, line in enumerate(lines):
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key in pending and not value.strip():
            lines[index] = f"{key}={pending.pop(key)}\n"
    addition = "".join(f"{key}={value}\n" for key, value in pending.items())
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("".join(lines) + addition)
    os.chmod(env_path, stat.S_IRUSR | stat.S_IWUSR)
    env.file_values.update(wanted)
    return wanted
