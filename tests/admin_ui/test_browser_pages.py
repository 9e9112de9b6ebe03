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
    assert agent.blocked_channels == ["voice", "whatsapp"]
    assert errors == []
