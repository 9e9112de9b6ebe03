"""The setup wizard in a real browser (headless Chromium), against the loopback fake providers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.env import parse_env_file
from tests.admin_ui.browser import (
    BROWSER_TEST_APPS,
    BrowserThread,
    admin_server,
    browser,
    create_superuser,
    log_in,
    open_tab,
    screenshot,
)
from tests.fake_providers import (
    ELEVENLABS_API_KEY,
    LINE_CHANNEL_ACCESS_TOKEN,
    RESEND_API_KEY,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
)
from tests.live_server import LiveServer

__all__ = ["admin_server", "browser"]  # fixtures, imported for pytest

pytestmark = pytest.mark.django_db(transaction=True, available_apps=BROWSER_TEST_APPS)


def _walk_the_wizard(chromium: Any, base_url: str) -> dict[str, Any]:
    tab = open_tab(chromium, base_url)
    page = tab.page
    results: dict[str, str] = {}

    def test_step(slug: str, fields: dict[str, str]) -> None:
        step = page.locator(f"#step-{slug}")
        step.wait_for(state="visible")
        for name, value in fields.items():
            step.locator(f'[name="{name}"]').fill(value)
        step.locator(".ops-test").click()
        result = step.locator(f'[data-result-for="{slug}"]')
        page.wait_for_function(
            "el => el.textContent && el.textContent !== 'Testing…'", arg=result.element_handle()
        )
        results[slug] = result.inner_text()
        screenshot(tab, f"setup-{slug}")

    def next_step(slug: str) -> None:
        page.locator(f"#step-{slug} .ops-next").click()

    try:
        log_in(tab, "root", "/admin/setup")
        test_step("base-url", {"PUBLIC_BASE_URL": base_url})
        next_step("base-url")
        # A wrong token first: the wizard says the provider refused it.
        test_step("twilio", {"TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "wrong-token"})
        results["twilio-wrong"] = results.pop("twilio")
        results["twilio-wrong-state"] = page.inner_text('[data-state-for="twilio"]')
        test_step("twilio", {"TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN})
        next_step("twilio")
        test_step("resend", {"RESEND_API_KEY": RESEND_API_KEY})
        next_step("resend")
        test_step("elevenlabs", {"ELEVENLABS_API_KEY": ELEVENLABS_API_KEY})
        next_step("elevenlabs")
        test_step("line", {"LINE_CHANNEL_ACCESS_TOKEN": LINE_CHANNEL_ACCESS_TOKEN})
        next_step("line")
        page.locator('#step-voice [name="VOICE_DEFAULT_GREETING"]').fill("Hello from the wizard, how can I help?")
        page.locator('#step-voice [name="VOICE_DEFAULT_LANGUAGE"]').fill("en-GB")
        next_step("voice")
        page.locator('#step-mode [name="DEMO_MODE"]').check()
        next_step("mode")
        page.locator("#step-save").wait_for(state="visible")
        summary = page.inner_text("#ops-save-summary")
        page.click("#ops-save")
        saved = page.locator('[data-result-for="save"]')
        page.wait_for_function("el => el.textContent.startsWith('Saved')", arg=saved.element_handle())
        results["save"] = saved.inner_text()
        screenshot(tab, "setup-saved")
        page.click("#ops-deploy")
        page.wait_for_function("el => !el.textContent.startsWith('Deploying')", arg=saved.element_handle())
        results["deploy"] = saved.inner_text()
        steps = {slug: page.inner_text(f'[data-state-for="{slug}"]')
                 for slug in ("base-url", "twilio", "resend", "elevenlabs", "line", "voice", "mode", "save")}
        return {"results": results, "summary": summary, "steps": steps, "errors": tab.errors}
    finally:
        tab.close()


async def test_an_operator_walks_the_setup_wizard_tests_each_provider_and_saves(
    browser: BrowserThread, admin_server: LiveServer, live_provider_settings: FakeProviders, settings: Any,
    tmp_path: Path,
):
    settings.ENV_FILE = tmp_path / ".env"
    settings.ENV_FILE.write_text("SECRET_KEY=kept-as-it-was\n")
    await create_superuser()

    seen = await browser.run(_walk_the_wizard, browser.browser, admin_server.url)

    results = seen["results"]
    assert results["base-url"].startswith(f"Reached {admin_server.url}/health")
    assert "refused" in results["twilio-wrong"] and seen["results"]["twilio"]
    assert results["twilio-wrong-state"] == "test failed"
    for slug in ("twilio", "resend", "elevenlabs", "line"):
        assert "accepted" in results[slug], (slug, results[slug])
        assert seen["steps"][slug] == "tested ✓"
    assert seen["steps"]["base-url"] == "tested ✓"
    assert seen["steps"]["save"] == "saved ✓"
    assert seen["steps"]["voice"] == seen["steps"]["mode"] == "saved ✓"  # edited, untested, then saved
    # The wizard shows what it is about to save, secrets cut short.
    assert f"TWILIO_ACCOUNT_SID = {TWILIO_ACCOUNT_SID}" in seen["summary"]
    assert TWILIO_AUTH_TOKEN not in seen["summary"]
    # The test buttons sent exactly the typed credentials to the providers' APIs.
    fake = live_provider_settings
    assert fake.requests_to("twilio")[-1].basic_auth == (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
    assert ("wrong-token" in [r.basic_auth[1] for r in fake.requests_to("twilio") if r.basic_auth])
    assert fake.requests_to("resend")[-1].bearer == RESEND_API_KEY
    assert fake.requests_to("elevenlabs")[-1].headers["xi-api-key"] == ELEVENLABS_API_KEY
    assert fake.requests_to("line")[-1].bearer == LINE_CHANNEL_ACCESS_TOKEN
    # Saved into the .env file, next to what was there.
    saved = parse_env_file(settings.ENV_FILE)
    assert saved["SECRET_KEY"] == "kept-as-it-was"
    assert saved["TWILIO_ACCOUNT_SID"] == TWILIO_ACCOUNT_SID and saved["TWILIO_AUTH_TOKEN"] == TWILIO_AUTH_TOKEN
    assert saved["RESEND_API_KEY"] == RESEND_API_KEY and saved["ELEVENLABS_API_KEY"] == ELEVENLABS_API_KEY
    assert saved["LINE_CHANNEL_ACCESS_TOKEN"] == LINE_CHANNEL_ACCESS_TOKEN
    assert saved["PUBLIC_BASE_URL"] == admin_server.url
    assert saved["VOICE_DEFAULT_GREETING"] == "Hello from the wizard, how can I help?"
    assert saved["VOICE_DEFAULT_LANGUAGE"] == "en-GB"
    assert saved["DEMO_MODE"] == "true"
    assert "VOICE_AI_DISCLOSURE" not in saved  # untouched: not pinned into .env
    # This test server was not started by a lifespan-running server, so it says it cannot restart itself.
    assert "cannot restart itself" in results["deploy"]
    assert seen["errors"] == []
