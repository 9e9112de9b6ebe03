"""A callbackUrl must reach the public internet: provisioning and the admin refuse anything else (SSRF)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from agents.models import Agent
from tests.ops_helpers import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_api(settings, make_org):
    settings.DEMO_MODE = True
    _org, token = make_org("Acme", "acme")
    return Api(token)


def provision(api: Api, callback_url: str) -> tuple[int, dict]:
    return api.post("provision", {"agentId": "cb", "displayName": "CB", "capabilities": ["email"], "callbackUrl": callback_url})


def a_name_of_this_host_on_loopback() -> str:
    """The machine's own name, which /etc/hosts maps to a loopback or private address here."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    assert addresses and not any(ipaddress.ip_address(address).is_global for address in addresses), addresses
    return name


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "https://LOCALHOST./hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://100.64.0.1/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number: resolves to loopback
        "ftp://example.com/hook",
        "http:///no-host",
    ],
)
def test_it_refuses_a_callback_url_that_is_not_public(org_api, url):
    status, body = provision(org_api, url)
    assert (status, body["code"], body["field"]) == (400, "invalid_request", "callbackUrl"), body
    assert not Agent.objects.exists()


def test_it_refuses_a_name_that_resolves_to_loopback(org_api):
    status, body = provision(org_api, f"http://{a_name_of_this_host_on_loopback()}:8080/hook")
    assert (status, body["code"], body["field"]) == (400, "invalid_request", "callbackUrl"), body
    assert "CALLBACK_ALLOWED_HOSTS" in body["error"]


@pytest.mark.parametrize("url", ["https://93.184.215.14/hook", "https://[2606:4700::1111]/hook", "https://agents.invalid/hook"])
def test_it_accepts_a_public_address_and_a_name_that_does_not_resolve_yet(org_api, url):
    # A name that does not resolve now is checked again at every delivery, before connecting.
    status, body = provision(org_api, url)
    assert status == 200, body
    assert Agent.objects.get(pk="cb").callback_url == url


def test_an_operator_can_allow_an_internal_host(org_api, settings):
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1", "Runner.Internal"]
    assert provision(org_api, "http://127.0.0.1:8000/hook")[0] == 200
    Agent.objects.all().delete()
    # Allowed by name (compared without case); its address is not checked.
    assert provision(org_api, "http://runner.internal/hook")[0] == 200
    Agent.objects.all().delete()
    assert provision(org_api, "http://10.0.0.5/hook")[0] == 400


def test_the_admin_refuses_a_loopback_callback_url(make_agent, admin_client):
    make_agent("agent-a")
    page = admin_client.get("/admin/agents/agent/agent-a/change/")
    assert page.status_code == 200
    form = {name: value for name, value in page.context["adminform"].form.initial.items()
            if value is not None and name != "blocked_channels"}
    form.update({
        "organization": "default", "callback_url": "http://169.254.169.254/latest",
        "addresses-TOTAL_FORMS": "0", "addresses-INITIAL_FORMS": "0",
        "limits-TOTAL_FORMS": "0", "limits-INITIAL_FORMS": "0",
    })
    response = admin_client.post("/admin/agents/agent/agent-a/change/", form)
    assert response.status_code == 200  # the form again, with the error
    assert "callbackUrl must reach a public address" in response.content.decode()
    assert Agent.objects.get(pk="agent-a").callback_url == ""


def test_the_admin_provision_page_refuses_a_loopback_callback_url(admin_client, settings, default_org):
    settings.DEMO_MODE = True
    response = admin_client.post("/admin/provision", {
        "display_name": "Front desk", "agent_id": "front-desk", "capabilities": ["email"], "country": "US",
        "callback_url": "http://localhost:8080/hook",
    })
    assert response.status_code == 200
    assert "callbackUrl must reach a public address" in response.content.decode()
    assert not Agent.objects.exists()
