"""The admin pages in a real browser (headless Chromium): API docs, provisioning, blocked channels."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from agents.models import Agent
from tests.admin_ui.browser import (
    BROWSER_TEST_APPS,
    BrowserThread,
    Tab,
    admin_server,
    browser,
    create_superuser,
    log_in,
    open_tab,
    screenshot,
)
from tests.live_server import LiveServer

__all__ = ["admin_server", "browser"]  # fixtures, imported for pytest

pytestmark = pytest.mark.django_db(transaction=True, available_apps=BROWSER_TEST_APPS)


async def test_swagger_ui_renders_every_operation_from_the_local_files(browser: BrowserThread, admin_server: LiveServer):
    await create_superuser()

    def scenario(chromium: Any) -> dict[str, Any]:
        tab = open_tab(chromium, admin_server.url)
        outside: list[str] = []
        tab.page.on("request", lambda request: None if request.url.startswith(admin_server.url)
                    else outside.append(request.url))
        try:
            log_in(tab, "root", "/admin/api-docs")
            tab.page.wait_for_selector(".opblock-summary-path", state="attached")
            paths = tab.page.locator(".opblock-summary-path").all_inner_texts()
            title = tab.page.locator(".information-container .title").inner_text()
            screenshot(tab, "api-docs")
            return {"paths": paths, "title": title, "outside": outside, "errors": tab.errors}
        finally:
            tab.close()

    seen = await browser.run(scenario, browser.browser)
    assert "Agent Comms Orchestrator API" in seen["title"]
    paths = {path.replace("\u200b", "") for path in seen["paths"]}
    assert {"/api/v1/send-message", "/api/v1/provision", "/api/v1/waiting-messages", "/api/v1/usage"} <= paths
    assert seen["outside"] == []  # no CDN: every file came from this server
    assert seen["errors"] == []


async def test_an_operator_provisions_an_agent_and_is_shown_its_token_and_mcp_snippet(
    browser: BrowserThread, admin_server: LiveServer, default_org: Any, settings: Any
):
    settings.DEMO_MODE = True
    await create_superuser()

    def scenario(chromium: Any) -> dict[str, Any]:
        tab = open_tab(chromium, admin_server.url)
        try:
            log_in(tab, "root", "/admin/agents/agent/")
            tab.page.click("text=Provision agent")
            tab.page.wait_for_url("**/admin/provision")
            tab.page.fill("#id_display_name", "Front desk")
            tab.page.fill("#id_agent_id", "front-desk")
            tab.page.check("input[name=capabilities][value=voice]")
            screenshot(tab, "provision-form")
            tab.page.click("input[type=submit][value=Provision]")
            tab.page.wait_for_selector("#agent-token")
            screenshot(tab, "provisioned")
            return {
                "token": tab.page.inner_text("#agent-token"),
                "snippet": tab.page.inner_text("#mcp-http-config"),
                "errors": tab.errors,
            }
        finally:
            tab.close()

    seen = await browser.run(scenario, browser.browser)
    assert seen["token"].startswith("agt_")
    assert f"Bearer {seen['token']}" in seen["snippet"]
    assert f"{settings.PUBLIC_BASE_URL}/mcp" in seen["snippet"]
    agent = await sync_to_async(Agent.objects.get)(pk="front-desk")
    assert agent.display_name == "Front desk"
    assert seen["errors"] == []


async def test_the_agent_change_form_blocks_a_channel_with_a_checkbox(
    browser: BrowserThread, admin_server: LiveServer, make_agent: Any
):
    await sync_to_async(make_agent)("bot")
    await create_superuser()

    def scenario(chromium: Any) -> list[str]:
        tab: Tab = open_tab(chromium, admin_server.url)
        try:
            log_in(tab, "root", "/admin/agents/agent/bot/change/")
            tab.page.check("input[name=blocked_channels][value=whatsapp]")
            tab.page.check("input[name=blocked_channels][value=voice]")
            screenshot(tab, "agent-change-form")
            tab.page.click("input[name=_continue]")
            tab.page.wait_for_selector(".messagelist .success")
            return tab.errors
        finally:
            tab.close()

    errors = await browser.run(scenario, browser.browser)
    agent = await sync_to_async(Agent.objects.get)(pk="bot")
    assert agent.blocked_channels == ["whatsapp", "voice"]  # in the channel registry's order
    assert errors == []


def _dashboard_data(make_agent: Any) -> str:
    """An agent with three demo-mode sends, one failed delivery and one opt-out."""
    from agents.models import OptOut
    from agents.services import AgentAddresses
    from channels_app.models import Message
    from tests.ops_helpers import Api

    agent, token = make_agent("agent-a", addresses=AgentAddresses(phone="+12025550100", email="agent-a@agents.example.com"))
    for n in range(3):
        status, body = Api(token).post("send-message", {"to": f"+1415555012{n}", "body": f"hello {n}"})
        assert status == 200, body
    Message.objects.create(agent=agent, organization=agent.organization, direction="outbound", channel="sms",
                           from_address="+12025550100", to_address="+14155550199", status="failed",
                           error_code="30006", error_message="Landline or unreachable carrier")
    OptOut.objects.create(agent=agent, channel="sms", contact="+14155550188", keyword="STOP")
    return token


async def test_the_dashboard_draws_its_charts_from_the_admin_api_and_refreshes_in_place(
    browser: BrowserThread, admin_server: LiveServer, make_agent: Any, settings: Any, monkeypatch: Any
):
    from admin_ui import views_pages

    settings.DEMO_MODE = True
    monkeypatch.setattr(views_pages, "DASHBOARD_REFRESH_SECONDS", 1)
    token = await sync_to_async(_dashboard_data)(make_agent)
    await create_superuser()

    def first_look(chromium: Any) -> tuple[Tab, dict[str, Any]]:
        tab = open_tab(chromium, admin_server.url)
        log_in(tab, "root", "/admin/dashboard")
        page = tab.page
        page.wait_for_selector('#ops-volume-chart rect.ops-bar[data-series="sent"][data-value="4"]', state="attached")
        page.evaluate("window.stillTheSamePage = true")
        screenshot(tab, "dashboard")
        bars = page.eval_on_selector_all(
            "svg rect.ops-bar",
            "rects => rects.map(r => [r.closest('svg').dataset.chart, r.dataset.series, r.dataset.label, "
            "Number(r.dataset.value), r.dataset.limit ?? null])",
        )
        return tab, {
            "bars": bars,
            "alerts": page.inner_text("#ops-alert-list"),
            "failures": page.inner_text("#ops-failures"),
            "optouts": page.inner_text("#ops-optouts"),
            "agents": page.inner_text("#ops-agents"),
            "services": page.inner_text("#ops-services"),
        }

    tab, seen = await browser.run(first_look, browser.browser)
    try:
        volume = {(series, value) for chart, series, _label, value, _limit in seen["bars"] if chart == "volume"}
        assert {("sent", 4), ("failed", 1)} <= volume
        spend = {label: (value, limit) for chart, _series, label, value, limit in seen["bars"] if chart == "limits"}
        today_value, today_limit = spend["agent-a today"]
        assert today_value > 0 and float(today_limit) == 50
        assert float(spend["agent-a month"][1]) == 500
        assert "org default today" in spend
        assert "30006" in seen["failures"] and "+14155550199" in seen["failures"]
        assert "sms" in seen["optouts"]
        assert "agent-a" in seen["agents"] and "offline" in seen["agents"]
        assert "twilio" in seen["services"] and "resend" in seen["services"]

        assert seen["alerts"] == "No alerts."

        # A fourth send, and a daily cap the agent's spend is now near: both show up on the next refresh,
        # without reloading the page.
        from agents.models import AgentLimits
        from tests.ops_helpers import Api

        status, _body = await sync_to_async(Api(token).post)("send-message", {"to": "+14155550130", "body": "more"})
        assert status == 200
        await sync_to_async(AgentLimits.objects.filter(agent_id="agent-a").update)(max_spend_per_day="0.04")

        def second_look(_: Any) -> dict[str, Any]:
            page = tab.page
            page.wait_for_selector('#ops-volume-chart rect.ops-bar[data-series="sent"][data-value="5"]',
                                   state="attached")
            page.wait_for_selector('#ops-alert-list [data-kind="spend_near_cap"]', state="attached")
            screenshot(tab, "dashboard-alert")
            return {
                "same_page": page.evaluate("window.stillTheSamePage === true"),
                "alert": page.inner_text('#ops-alert-list [data-kind="spend_near_cap"]'),
                "bar_class": page.get_attribute('rect.ops-bar[data-label="agent-a today"]', "class"),
            }

        again = await browser.run(second_look, None)
        assert again["same_page"] is True
        assert "Agent-A" in again["alert"] and "daily cap" in again["alert"]
        assert "ops-near" in again["bar_class"]
        assert tab.errors == []
    finally:
        await browser.run(tab.close)


async def test_the_agent_list_toggles_a_blocked_channel_through_the_admin_api(
    browser: BrowserThread, admin_server: LiveServer, make_agent: Any
):
    await sync_to_async(make_agent)("bot")
    await create_superuser()

    def scenario(chromium: Any) -> dict[str, Any]:
        tab = open_tab(chromium, admin_server.url)
        try:
            log_in(tab, "root", "/admin/agents/agent/")
            row = tab.page.locator('.ops-blocked[data-agent="bot"]')
            row.locator('input[value="sms"]').check()
            tab.page.wait_for_selector('.ops-blocked[data-agent="bot"][data-saved="1"]', state="attached")
            after_sms = row.get_attribute("data-blocked")
            row.locator('input[value="*"]').check()
            tab.page.wait_for_selector('.ops-blocked[data-agent="bot"][data-saved="2"]', state="attached")
            screenshot(tab, "agent-list-toggles")
            return {
                "after_sms": after_sms,
                "voice_disabled": row.locator('input[value="voice"]').is_disabled(),
                "voice_checked": row.locator('input[value="voice"]').is_checked(),
                "status": row.locator(".ops-toggle-status").inner_text(),
                "errors": tab.errors,
            }
        finally:
            tab.close()

    seen = await browser.run(scenario, browser.browser)
    assert seen["after_sms"] == '["sms"]'
    assert seen["voice_checked"] and seen["voice_disabled"]  # "All" ticks and locks the rest
    assert seen["status"] == "saved"
    agent = await sync_to_async(Agent.objects.get)(pk="bot")
    assert agent.blocked_channels == ["*"]
    assert seen["errors"] == []


async def test_the_admin_pages_load_without_a_single_failed_request(browser: BrowserThread, admin_server: LiveServer):
    """What an operator's browser console shows: no request of an admin page fails, and the icon a browser
    asks for at /favicon.ico is there (headless Chromium doesn't ask by itself, so the test asks)."""
    await create_superuser()

    def scenario(chromium: Any) -> dict[str, Any]:
        tab = open_tab(chromium, admin_server.url)
        failed: list[str] = []
        tab.page.on("response", lambda response: failed.append(f"{response.status} {response.url}")
                    if response.status >= 400 else None)
        tab.page.on("requestfailed", lambda request: failed.append(f"failed {request.url}"))
        try:
            log_in(tab, "root", "/admin/")
            for path in ("/admin/dashboard", "/admin/setup", "/admin/api-docs", "/admin/agents/agent/"):
                tab.page.goto(path)
                tab.page.wait_for_load_state("networkidle")
            icon = tab.page.goto("/favicon.ico")
            return {"failed": failed, "icon": (icon.status, icon.headers.get("content-type")), "errors": tab.errors}
        finally:
            tab.close()

    seen = await browser.run(scenario, browser.browser)
    assert seen["failed"] == []
    assert seen["icon"] == (200, "image/x-icon")
    assert seen["errors"] == []
