"""The operator pages inside the admin: dashboard, setup wizard, API docs, provisioning, blocked channels."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client

from agents.crypto import token_digest
from agents.models import Agent, AgentToken, Organization, StaffMembership

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("root", "root@example.com", "pw-root-0123")


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def org_staff(make_org) -> tuple[Client, Organization]:
    org, _token = make_org("Acme", "acme")
    user = User.objects.create_user("ann", "ann@example.com", "pw-ann-0123", is_staff=True)
    StaffMembership.objects.create(user=user, organization=org)
    client = Client()
    client.force_login(user)
    return client, org


# --- access ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/dashboard", "/admin/setup", "/admin/api-docs", "/admin/provision"])
def test_it_sends_anonymous_visitors_to_the_admin_login(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=" + path)


def test_it_refuses_the_setup_wizard_to_staff_who_are_not_superusers(org_staff):
    client, _org = org_staff
    assert client.get("/admin/setup").status_code == 403
    response = client.post("/admin/api/test/public-url", data=json.dumps({"url": "http://127.0.0.1:9"}),
                           content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_the_admin_index_links_every_operator_page(admin_client):
    page = admin_client.get("/admin/").content.decode()
    for path in ("/admin/dashboard", "/admin/setup", "/admin/provision", "/admin/api-docs"):
        assert f'href="{path}"' in page


# --- dashboard ---------------------------------------------------------------------------------------


def test_the_dashboard_is_an_admin_page_that_loads_its_data_and_charts_from_local_files(org_staff):
    client, _org = org_staff
    response = client.get("/admin/dashboard")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-url="/admin/api/dashboard"' in page
    assert "Agent Comms Orchestrator" in page  # the admin's header: admin/base_site.html
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert "/static/admin_ui/charts.js" in scripts and "/static/admin_ui/dashboard.js" in scripts
    assert not [src for src in re.findall(r'(?:src|href)="(https?://[^"]+)"', page)], "no CDN"
    for name in ("charts.js", "dashboard.js", "admin_ui.css"):
        assert finders.find(f"admin_ui/{name}")


# --- setup wizard ------------------------------------------------------------------------------------


def test_the_setup_wizard_has_every_step_with_its_test_button_and_never_shows_a_secret(admin_client, settings):
    settings.TWILIO_AUTH_TOKEN = "secret-twilio-token-value"
    settings.RESEND_API_KEY = "re_secret_resend_key"
    settings.PUBLIC_BASE_URL = "https://comms.example.net"
    page = admin_client.get("/admin/setup").content.decode()
    for step in ("base-url", "twilio", "resend", "elevenlabs", "line", "voice", "mode", "save"):
        assert f'id="step-{step}"' in page
    for url in ("/admin/api/test/public-url", "/admin/api/test/twilio", "/admin/api/test/resend",
                "/admin/api/test/elevenlabs", "/admin/api/test/line"):
        assert f'data-test-url="{url}"' in page
    for key in ("PUBLIC_BASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "RESEND_API_KEY", "ELEVENLABS_API_KEY",
                "ELEVENLABS_DEFAULT_VOICE", "LINE_CHANNEL_ACCESS_TOKEN", "LINE_CHANNEL_SECRET",
                "VOICE_DEFAULT_GREETING", "VOICE_DEFAULT_LANGUAGE", "VOICE_AI_DISCLOSURE", "DEMO_MODE"):
        assert f'name="{key}"' in page
    assert 'value="https://comms.example.net"' in page
    assert "secret-twilio-token-value" not in page and "re_secret_resend_key" not in page
    assert 'data-save-url="/admin/api/save"' in page and 'data-deploy-url="/admin/api/deploy"' in page


class _HealthServer:
    """A loopback HTTP server whose /health answers what a test sets (this server's JSON, a redirect…)."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"status": "ok", "uptime": 1.0, "version": "0.1.0", "environment": "development",
                          "demoMode": False}
        self.location = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                payload = json.dumps(outer.body).encode() if not isinstance(outer.body, bytes) else outer.body
                self.send_response(outer.status)
                if outer.location:
                    self.send_header("Location", outer.location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health_server() -> Iterator[_HealthServer]:
    server = _HealthServer()
    yield server
    server.stop()


def _check(client: Client, url: str) -> tuple[int, dict[str, Any]]:
    response = client.post("/admin/api/test/public-url", data=json.dumps({"url": url}),
                           content_type="application/json")
    return response.status_code, response.json()


def test_the_base_url_check_fetches_health_from_the_given_url(admin_client, health_server):
    status, body = _check(admin_client, health_server.url + "/")
    assert status == 200
    assert body["success"] is True
    assert f"{health_server.url}/health" in body["message"] and "0.1.0" in body["message"]


def test_the_base_url_check_follows_no_redirect_and_says_where_it_pointed(admin_client, health_server):
    health_server.status, health_server.location = 302, "http://169.254.169.254/latest/meta-data"
    status, body = _check(admin_client, health_server.url)
    assert status == 200
    assert body["success"] is False
    assert "302" in body["message"] and "169.254.169.254" in body["message"]


def test_the_base_url_check_fails_for_a_server_that_is_not_this_one(admin_client, health_server):
    health_server.body = b"<html>hello</html>"
    assert _check(admin_client, health_server.url)[1]["success"] is False
    health_server.stop()
    status, body = _check(admin_client, health_server.url)
    assert (status, body["success"]) == (200, False)
    assert "Could not reach" in body["message"]


@pytest.mark.parametrize("url", ["", "ftp://example.com", "comms.example.com", "http://a b.example.com",
                                 "http://example.com/\r\nX: y"])
def test_the_base_url_check_refuses_what_is_not_an_http_url(admin_client, url):
    status, body = _check(admin_client, url)
    assert status == 400
    assert (body["code"], body["field"]) == ("invalid_request", "url")


def test_the_base_url_check_needs_the_csrf_token_of_the_session(superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post("/admin/api/test/public-url", data=json.dumps({"url": "http://127.0.0.1:9"}),
                           content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


# --- API docs ----------------------------------------------------------------------------------------


def test_api_docs_serve_swagger_ui_from_the_installed_package_over_the_openapi_document(org_staff):
    client, _org = org_staff
    response = client.get("/admin/api-docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "/api/v1/openapi.json" in page
    assert not re.findall(r'(?:src|href)="(https?://[^"]+)"', page), "no CDN"
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


# --- provisioning ------------------------------------------------------------------------------------


def test_a_superuser_provisions_an_agent_and_sees_its_token_once_with_the_mcp_snippet(admin_client, settings,
                                                                                        default_org):
    settings.DEMO_MODE = True
    settings.PUBLIC_BASE_URL = "https://comms.example.net"
    response = admin_client.post("/admin/provision", {
        "display_name": "Front desk", "agent_id": "front-desk", "capabilities": ["sms", "email"], "country": "US",
    })
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    token = re.search(r'<code id="agent-token">(agt_[^<]+)</code>', page).group(1)
    agent = Agent.objects.get(pk="front-desk")
    assert agent.organization_id == "default"
    assert AgentToken.objects.filter(agent=agent, digest=token_digest(token), revoked_at__isnull=True).exists()
    assert "https://comms.example.net/mcp" in page
    assert f"Bearer {token}" in page and f"https://comms.example.net/sse?token={token}" in page
    # Shown once: the agent's change page never shows it again.
    assert token not in admin_client.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()


def test_the_provisioned_page_links_the_agent_even_when_its_id_looks_quoted(admin_client, settings, default_org):
    # The admin unquotes ids in its URLs ("_24" is "$"): an agent id with an underscore needs quoting in the link.
    settings.DEMO_MODE = True
    page = admin_client.post("/admin/provision", {
        "display_name": "Desk 24", "agent_id": "desk_24", "capabilities": ["sms"], "country": "US",
    }).content.decode()
    link = re.search(r'<a href="([^"]+)">Desk 24 \(desk_24\)</a>', page).group(1)

    change_page = admin_client.get(link)
    assert change_page.status_code == 200
    assert change_page.context["original"].pk == "desk_24"


def test_a_superuser_may_provision_into_any_organization(admin_client, settings, make_org, default_org):
    settings.DEMO_MODE = True
    make_org("Globex", "globex")
    response = admin_client.post("/admin/provision", {"display_name": "G", "agent_id": "g-1", "organization": "globex",
                                                      "capabilities": ["email"], "country": "US"})
    assert response.status_code == 200
    assert Agent.objects.get(pk="g-1").organization_id == "globex"


def test_an_org_member_provisions_only_into_their_own_organization(org_staff, settings, make_org, default_org):
    settings.DEMO_MODE = True
    client, org = org_staff
    make_org("Globex", "globex")
    form_page = client.get("/admin/provision").content.decode()
    assert 'name="organization"' not in form_page
    client.post("/admin/provision", {"display_name": "A", "agent_id": "a-1", "organization": "globex",
                                     "capabilities": ["email"], "country": "US"})
    assert Agent.objects.get(pk="a-1").organization_id == org.pk


def test_staff_without_an_organization_cannot_provision(default_org):
    user = User.objects.create_user("lost", "lost@example.com", "pw-lost-0123", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get("/admin/provision").status_code == 403


def test_a_refused_provision_shows_why_on_the_form_and_creates_nothing(admin_client, settings, make_agent):
    settings.DEMO_MODE = True
    make_agent("taken")
    response = admin_client.post("/admin/provision", {"display_name": "T", "agent_id": "taken",
                                                      "capabilities": ["sms"], "country": "US"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert Agent.objects.count() == 1


def test_the_agent_list_links_the_provision_page(admin_client):
    assert 'href="/admin/provision"' in admin_client.get("/admin/agents/agent/").content.decode()


# --- blocked channels --------------------------------------------------------------------------------


def test_the_agent_list_shows_blocked_channels_as_toggles_that_post_to_the_admin_api(admin_client, make_agent):
    make_agent("bot")
    Agent.objects.filter(pk="bot").update(blocked_channels=["sms"])
    page = admin_client.get("/admin/agents/agent/").content.decode()
    group = re.search(r'<span class="ops-blocked"[^>]*data-agent="bot"[^>]*>.*?</span></span>', page, re.S).group(0)
    assert 'data-url="/admin/api/agents/bot/blocked-channels"' in group
    assert re.search(r'value="sms" checked', group)
    assert not re.search(r'value="voice" checked', group)
    assert "/static/admin_ui/blocked_channels.js" in page


def _change_form_data(client: Client, url: str) -> dict[str, Any]:
    """The change form's current values, as the browser would post them back."""
    context = client.get(url).context
    data: dict[str, Any] = {}
    form = context["adminform"].form
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None:
            continue
        data[name] = value if not isinstance(value, bool) else ("on" if value else "")
        if isinstance(value, bool) and not value:
            del data[name]
    for inline in context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for index, inline_form in enumerate(formset.forms):
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value is not None and value is not False:
                    data[f"{formset.prefix}-{index}-{name}"] = value
    return data


def test_the_agent_change_form_edits_blocked_channels_with_checkboxes(admin_client, make_agent):
    agent, _token = make_agent("bot")
    url = f"/admin/agents/agent/{agent.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'type="checkbox" name="blocked_channels" value="whatsapp"' in page
    assert "<textarea" not in re.search(r'<div class="form-row field-blocked_channels">.*?</div>\s*</div>', page,
                                        re.S).group(0)

    data = _change_form_data(admin_client, url)
    data["blocked_channels"] = ["voice", "sms"]
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    agent.refresh_from_db()
    assert agent.blocked_channels == ["sms", "voice"]

    data["blocked_channels"] = ["sms", "*"]
    admin_client.post(url, data)
    agent.refresh_from_db()
    assert agent.blocked_channels == ["*"]
    assert agent.is_channel_blocked("line")

    data.pop("blocked_channels")
    admin_client.post(url, data)
    agent.refresh_from_db()
    assert agent.blocked_channels == []


def test_the_blocked_channels_field_refuses_an_unknown_channel(admin_client, make_agent):
    agent, _token = make_agent("bot")
    url = f"/admin/agents/agent/{agent.pk}/change/"
    data = _change_form_data(admin_client, url)
    data["blocked_channels"] = ["fax"]
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "fax is not one of the available choices" in response.content.decode()
    agent.refresh_from_db()
    assert agent.blocked_channels == []


def test_the_favicon_browsers_ask_for_is_served_and_cached() -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content.startswith(b"\x00\x00\x01\x00")  # an ICO header
    assert "max-age" in response["Cache-Control"]
