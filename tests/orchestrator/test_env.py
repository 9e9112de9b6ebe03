"""Settings parsing: typed env helpers, DATABASE_URL / REDIS_URL, first-run secrets, start-up failures."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from orchestrator.env import (
    Env,
    database_from_url,
    ensure_generated_secrets,
    otel_traces_exported,
    parse_env_file,
    redis_channel_layer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def env_of(**values: str) -> Env:
    return Env({}, environ=values)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " True "])
def test_it_reads_true_values(raw: str) -> None:
    assert env_of(FLAG=raw).bool("FLAG", False) is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "off", "FALSE"])
def test_it_reads_false_values(raw: str) -> None:
    assert env_of(FLAG=raw).bool("FLAG", True) is False


def test_it_uses_the_default_for_an_unset_or_empty_bool() -> None:
    assert env_of().bool("FLAG", True) is True
    assert env_of(FLAG=" ").bool("FLAG", True) is True
    assert Env({"FLAG": ""}, environ={}).bool("FLAG", False) is False


def test_it_refuses_a_bool_it_cannot_read_and_names_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="DEMO_MODE must be true or false, got 'maybe'"):
        env_of(DEMO_MODE="maybe").bool("DEMO_MODE", False)


def test_it_reads_integers_within_bounds() -> None:
    assert env_of(PORT="8080").int("PORT", 3100, minimum=1, maximum=65535) == 8080
    assert env_of(PORT="").int("PORT", 3100) == 3100
    assert env_of().int("PORT", 3100) == 3100


@pytest.mark.parametrize(("raw", "message"), [("abc", "PORT must be an integer"), ("70000", "PORT must be between")])
def test_it_refuses_bad_integers_and_names_the_variable(raw: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        env_of(PORT=raw).int("PORT", 3100, minimum=1, maximum=65535)


def test_it_reads_urls_without_a_trailing_slash() -> None:
    env = env_of(PUBLIC_BASE_URL="https://comms.example.com/ ")
    assert env.url("PUBLIC_BASE_URL", None) == "https://comms.example.com"
    assert env_of().url("PUBLIC_BASE_URL", "http://localhost:3100") == "http://localhost:3100"


@pytest.mark.parametrize("raw", ["comms.example.com", "ftp://comms.example.com", "https://"])
def test_it_refuses_urls_that_are_not_http(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL must be a http/https URL"):
        env_of(PUBLIC_BASE_URL=raw).url("PUBLIC_BASE_URL", None)


def test_it_accepts_only_listed_choices() -> None:
    choices = ("development", "production")
    assert env_of(ENVIRONMENT="production").choice("ENVIRONMENT", "development", choices) == "production"
    with pytest.raises(ImproperlyConfigured, match="ENVIRONMENT must be one of development, production"):
        env_of(ENVIRONMENT="staging").choice("ENVIRONMENT", "development", choices)


def test_it_lets_the_process_environment_win_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nPORT=4000\nexport DEMO_MODE='true'\nLOG_LEVEL=\"DEBUG\"\n\nnot a line\n")
    env = Env(parse_env_file(env_file), environ={"PORT": "5000"})
    assert env.int("PORT", 3100) == 5000
    assert env.bool("DEMO_MODE", False) is True
    assert env.str("LOG_LEVEL") == "DEBUG"


def test_it_lets_an_empty_process_variable_fall_back_to_the_env_file() -> None:
    env = Env({"SECRET_KEY": "from-file"}, environ={"SECRET_KEY": ""})
    assert env.optional("SECRET_KEY") == "from-file"


def test_it_reads_a_relative_sqlite_url_into_the_repo_root(tmp_path: Path) -> None:
    database = database_from_url("sqlite:///db.sqlite3", base_dir=tmp_path)
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "db.sqlite3")


def test_it_reads_an_absolute_sqlite_url() -> None:
    assert database_from_url("sqlite:////var/lib/comms/db.sqlite3", base_dir=Path("/x"))["NAME"] == (
        "/var/lib/comms/db.sqlite3"
    )


def test_it_reads_a_postgres_url_with_escaped_credentials() -> None:
    database = database_from_url("postgres://comms:p%40ss@db.internal:6543/comms_prod", base_dir=Path("/x"))
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == ("comms_prod", "comms", "p@ss")
    assert (database["HOST"], database["PORT"]) == ("db.internal", "6543")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/comms", "DATABASE_URL must start with sqlite:// or postgres://"),
        ("postgres://db.internal:5432/", "names no PostgreSQL database"),
        ("sqlite://", "names no SQLite file"),
    ],
)
def test_it_refuses_database_urls_it_cannot_use(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        database_from_url(url, base_dir=Path("/x"))


def test_it_builds_a_redis_channel_layer() -> None:
    layer = redis_channel_layer("redis://127.0.0.1:6379/0")
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]  # type: ignore[index]
    assert host["address"] == "redis://127.0.0.1:6379/0"
    # Reads must outlast channels_redis's 5 s BZPOPMIN, or idle receives fail with read timeouts.
    assert host["socket_timeout"] > 5


def test_it_refuses_a_redis_url_of_another_scheme() -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL must be a redis:// URL"):
        redis_channel_layer("http://127.0.0.1:6379")


def test_it_generates_missing_secrets_into_a_private_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DEMO_MODE=true")  # no trailing newline: the generated lines must not glue onto it
    env = Env(parse_env_file(env_file), environ={})

    written = ensure_generated_secrets(env_file, env)

    assert sorted(written) == ["ORCHESTRATOR_TOKEN", "SECRET_KEY"]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = parse_env_file(env_file)
    assert values["DEMO_MODE"] == "true"
    assert values["ORCHESTRATOR_TOKEN"].startswith("orch_")
    assert len(values["SECRET_KEY"]) >= 50
    assert env.str("ORCHESTRATOR_TOKEN") == values["ORCHESTRATOR_TOKEN"]


def test_it_keeps_existing_secrets_and_writes_only_the_missing_ones(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=keep-me\n")
    env = Env(parse_env_file(env_file), environ={})

    assert list(ensure_generated_secrets(env_file, env)) == ["ORCHESTRATOR_TOKEN"]
    first = env_file.read_text()
    assert "SECRET_KEY=keep-me\n" in first
    assert ensure_generated_secrets(env_file, Env(parse_env_file(env_file), environ={})) == {}
    assert env_file.read_text() == first


def test_it_fills_empty_placeholders_instead_of_adding_second_lines(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=\nPORT=3100\nORCHESTRATOR_TOKEN=\n")

    ensure_generated_secrets(env_file, Env(parse_env_file(env_file), environ={}))

    lines = env_file.read_text().splitlines()
    assert [line.split("=")[0] for line in lines] == ["SECRET_KEY", "PORT", "ORCHESTRATOR_TOKEN"]
    assert all(line.split("=", 1)[1] for line in lines)


def test_it_treats_an_empty_choice_as_the_default() -> None:
    assert env_of(ENVIRONMENT="").choice("ENVIRONMENT", "development", ("development", "production")) == "development"


def test_it_does_not_write_a_secret_the_process_environment_provides(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env = Env({}, environ={"ORCHESTRATOR_TOKEN": "orch_from_env", "SECRET_KEY": "from-env"})
    assert ensure_generated_secrets(env_file, env) == {}
    assert not env_file.exists()


def _import_settings(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "PORT", "DEMO_MODE", "PUBLIC_BASE_URL")
    }
    environ.update(
        ENV_FILE=str(tmp_path / "absent.env"),
        SECRET_KEY="x" * 50,
        DJANGO_SETTINGS_MODULE="orchestrator.settings",
    )
    environ.update(overrides)
    code = "import django; django.setup(); from django.conf import settings; print(settings.PORT)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "abc", "PORT must be an integer, got 'abc'"),
        ("DEMO_MODE", "perhaps", "DEMO_MODE must be true or false"),
        ("DATABASE_URL", "mysql://db/x", "DATABASE_URL must start with sqlite:// or postgres://"),
        ("PUBLIC_BASE_URL", "localhost:3100", "PUBLIC_BASE_URL must be a http/https URL"),
        ("RESEND_WEBHOOK_SECRET", "abc", "RESEND_WEBHOOK_SECRET must start with whsec_"),
    ],
)
def test_it_fails_at_start_naming_the_bad_variable(tmp_path: Path, variable: str, value: str, message: str) -> None:
    result = _import_settings(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_it_reports_a_bad_value_to_manage_py_users_in_one_line(tmp_path: Path) -> None:
    environ = {**os.environ, "ENV_FILE": str(tmp_path / "absent.env"), "PORT": "abc"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "Configuration error: PORT must be an integer, got 'abc'"


def test_it_fails_at_start_without_a_secret_key(tmp_path: Path) -> None:
    environ = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    environ.update(ENV_FILE=str(tmp_path / "absent.env"), SECRET_KEY="", DEBUG="false")
    result = subprocess.run(
        [sys.executable, "-c", "import orchestrator.asgi"], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set: run `manage.py init_secrets`" in result.stderr


def test_importing_settings_writes_no_env_file_and_prints_nothing(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text((REPO_ROOT / ".env.example").read_text())
    before = env_file.read_text()

    result = _import_settings(tmp_path, ENV_FILE=str(env_file), SECRET_KEY="", ORCHESTRATOR_TOKEN="", DEBUG="")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3100" and result.stderr == ""
    assert env_file.read_text() == before
    absent = tmp_path / "absent.env"
    assert _import_settings(tmp_path, ENV_FILE=str(absent), SECRET_KEY="", ORCHESTRATOR_TOKEN="").returncode == 0
    assert not absent.exists()


def test_init_secrets_writes_the_first_run_secrets_once_and_shows_the_token(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text((REPO_ROOT / ".env.example").read_text())
    environ = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    environ.update(ENV_FILE=str(env_file), SECRET_KEY="", ORCHESTRATOR_TOKEN="")

    def init_secrets() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", "init_secrets"], cwd=REPO_ROOT, env=environ,
                              capture_output=True, text=True, timeout=60)

    first = init_secrets()
    assert first.returncode == 0, first.stderr
    values = parse_env_file(env_file)
    assert values["ORCHESTRATOR_TOKEN"].startswith("orch_") and len(values["SECRET_KEY"]) >= 50
    assert values["ORCHESTRATOR_TOKEN"] in first.stdout and values["SECRET_KEY"] not in first.stdout
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    second = init_secrets()
    assert second.returncode == 0 and second.stdout == ""
    assert parse_env_file(env_file) == values


def test_debug_is_off_unless_asked_for(tmp_path: Path) -> None:
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG, settings.ENVIRONMENT)"
    environ = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    environ.update(ENV_FILE=str(tmp_path / "absent.env"), DJANGO_SETTINGS_MODULE="orchestrator.settings")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "production"], result.stderr


def test_it_documents_every_setting_in_env_example() -> None:
    settings_source = (REPO_ROOT / "orchestrator" / "settings.py").read_text()
    read = set(re.findall(r'env\.\w+\("([A-Z_]+)"', settings_source)) | {"ENV_FILE", "PROMETHEUS_MULTIPROC_DIR"}
    example = (REPO_ROOT / ".env.example").read_text()
    reference = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert sorted(name for name in read if name not in example) == []
    assert sorted(name for name in read if f"`{name}`" not in reference) == []


def test_it_starts_with_good_values(tmp_path: Path) -> None:
    result = _import_settings(tmp_path, PORT="3111")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3111"


@pytest.mark.parametrize(
    ("values", "exported"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ],
)
def test_it_turns_mcp_spans_on_only_where_an_opentelemetry_exporter_is_configured(
    values: dict[str, str], exported: bool
) -> None:
    assert otel_traces_exported(env_of(**values)) is exported
