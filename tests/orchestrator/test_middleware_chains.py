"""Machine-facing paths skip BROWSER_MIDDLEWARE (orchestrator.middleware.BrowserOnlyMiddleware); the admin
runs it (real sockets, as clients see it)."""

from __future__ import annotations

import re

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from orchestrator.urls import urlpatterns as project_urlpatterns
from tests.live_server import LIVE_SERVER_APPS, LiveServer

ADMIN_APPS = [*LIVE_SERVER_APPS, "django.contrib.admin", "django.contrib.sessions", "django.contrib.messages",
              "django.contrib.staticfiles"]

pytestmark = pytest.mark.django_db(transaction=True, available_apps=ADMIN_APPS)


def what_the_request_carries(request: HttpRequest) -> JsonResponse:
    user = getattr(request, "user", None)
    return JsonResponse({
        "session": hasattr(request, "session"),
        "user": user.get_username() if user is not None and user.is_authenticated else None,
    })


# This module is the URLconf of the tests that need a view on both sides of the split.
urlpatterns = [
    path("api/test-request", csrf_exempt(what_the_request_carries)),
    path("admin/api/test-request", what_the_request_carries),
    *project_urlpatterns,
]


@pytest.fixture
def urls_with_test_views(settings) -> None:
    settings.ROOT_URLCONF = __name__


async def log_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = await client.get("/admin/login/")
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert match, form.text
    return await client.post("/admin/login/", data={
        "username": username, "password": password, "csrfmiddlewaretoken": match.group(1), "next": "/admin/",
    })


@pytest.fixture
def staff_user(transactional_db: None) -> tuple[str, str]:
    from django.contrib.auth.models import User

    User.objects.create_user("operator", password="correct horse battery", is_staff=True, is_superuser=True)
    return "operator", "correct horse battery"


async def test_it_serves_api_requests_without_session_middleware(
    asgi_server: LiveServer, urls_with_test_views: None, staff_user: tuple[str, str], make_agent
) -> None:
    _agent, token = await sync_to_async(make_agent)()
    async with httpx.AsyncClient(base_url=asgi_server.url) as client:
        assert (await log_in(client, *staff_user)).status_code == 302
        # The staff session cookie goes along, but machine paths neither load nor touch a session.
        carried = await client.get("/api/test-request")
        health = await client.get("/api/v1/health", headers={"Authorization": f"Bearer {token}"})
        webhook = await client.post("/webhooks/agent-a/sms", data={"Body": "unsigned"})

    assert carried.json() == {"session": False, "user": None}
    assert health.status_code == 200 and health.json()["agentId"] == "agent-a"
    for response in (carried, health, webhook):
        assert "set-cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")
        assert "x-frame-options" not in response.headers  # a JSON API is not framed
        # What the short chain keeps: SecurityMiddleware's headers, CommonMiddleware's Content-Length.
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response.headers["Content-Length"] == str(len(response.content))
    assert webhook.status_code == 403  # unsigned


async def test_it_still_checks_the_host_header_on_api_paths(asgi_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=asgi_server.url) as client:
        response = await client.get("/api/v1/health", headers={"Host": "evil.example.com"})

    assert response.status_code == 400


async def test_it_keeps_csrf_sessions_and_frame_options_on_the_admin_login(
    asgi_server: LiveServer, staff_user: tuple[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=asgi_server.url) as client:
        form = await client.get("/admin/login/")
        without_token = await client.post("/admin/login/", data={"username": staff_user[0], "password": staff_user[1]})
        logged_in = await log_in(client, *staff_user)
        index = await client.get("/admin/")

    assert form.headers["X-Frame-Options"] == "DENY"
    assert "csrftoken" in form.cookies
    assert without_token.status_code == 403
    assert logged_in.status_code == 302 and logged_in.headers["Location"] == "/admin/"
    assert "sessionid" in logged_in.cookies
    assert index.status_code == 200 and "Site administration" in index.text


async def test_it_gives_admin_api_paths_the_session_user_and_the_csrf_check(
    asgi_server: LiveServer, urls_with_test_views: None, staff_user: tuple[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=asgi_server.url) as client:
        anonymous = await client.get("/admin/api/test-request")
        await log_in(client, *staff_user)
        signed_in = await client.get("/admin/api/test-request")
        post_without_token = await client.post("/admin/api/test-request")
        post_with_token = await client.post(
            "/admin/api/test-request", headers={"X-CSRFToken": client.cookies["csrftoken"]}
        )

    assert anonymous.json() == {"session": True, "user": None}
    assert signed_in.json() == {"session": True, "user": "operator"}
    assert post_without_token.status_code == 403 and post_without_token.json()["code"] == "forbidden"
    assert post_with_token.json() == {"session": True, "user": "operator"}


def requests_counted(metrics_text: str, view: str) -> float:
    pattern = (r'^django_http_requests_total_by_view_transport_method_total\{method="GET",transport="http",'
               rf'view="{re.escape(view)}"\}} (\S+)$')
    match = re.search(pattern, metrics_text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_it_counts_api_requests_in_the_request_metrics(asgi_server: LiveServer, make_agent) -> None:
    _agent, token = await sync_to_async(make_agent)()
    async with httpx.AsyncClient(base_url=asgi_server.url, headers={"Authorization": f"Bearer {token}"}) as client:
        before = (await client.get("/metrics")).text
        for _ in range(3):
            assert (await client.get("/api/v1/health")).status_code == 200
        after = (await client.get("/metrics")).text

    assert requests_counted(after, "api-ping") - requests_counted(before, "api-ping") == 3
    assert 'django_http_responses_total_by_status_view_method_total{method="GET",status="200",view="api-ping"}' in after
