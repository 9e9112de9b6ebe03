"""Admin static files when DEBUG is off: collectstatic output served by the server itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command

from orchestrator.routing import PathDispatcher, static_prefixes


async def django_stand_in(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": [(b"x-served-by", b"django")]})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def production(settings: Any, tmp_path: Path) -> Path:
    settings.DEBUG = False
    settings.SERVE_STATIC_FILES = True
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--no-input", verbosity=0)
    return Path(settings.STATIC_ROOT)


def client() -> httpx.AsyncClient:
    app: Any = PathDispatcher(mounts={}, prefixes=static_prefixes(), default=django_stand_in)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_it_serves_the_admin_stylesheet_with_validators_and_304s(production: Path) -> None:
    async with client() as http:
        first = await http.get("/static/admin/css/base.css")
        again = await http.get("/static/admin/css/base.css", headers={"If-None-Match": first.headers["etag"]})
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/css")
    assert first.content == (production / "admin/css/base.css").read_bytes()
    assert again.status_code == 304


async def test_it_answers_404_for_missing_files_and_paths_outside_the_static_root(production: Path) -> None:
    (production.parent / "secret.txt").write_text("not for you")
    async with client() as http:
        missing = await http.get("/static/admin/css/no-such.css")
        outside = await http.get("/static/%2e%2e/secret.txt")
    assert missing.status_code == 404
    assert outside.status_code == 404
    assert b"not for you" not in outside.content


async def test_everything_else_still_goes_to_django(production: Path) -> None:
    async with client() as http:
        response = await http.get("/statics-are-not-a-prefix")
    assert response.headers["x-served-by"] == "django"


def test_in_debug_django_serves_them_and_no_prefix_is_mounted(settings: Any) -> None:
    settings.DEBUG = True
    assert static_prefixes() == {}


def test_a_proxy_can_take_them_over(settings: Any) -> None:
    settings.DEBUG = False
    settings.SERVE_STATIC_FILES = False
    assert static_prefixes() == {}
