"""A WebSocket upgrade on a path no route serves (issue 14, item 10): refused cleanly, one log line."""

from __future__ import annotations

import logging

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.live_server import LIVE_SERVER_APPS, LiveServer

pytestmark = pytest.mark.django_db(transaction=True, available_apps=LIVE_SERVER_APPS)


@pytest.mark.parametrize("path", ["/nowhere", "/mcp", "/webhooks/agent-a/sms", "/ws?token=agt_secret0123456789abcdef"])
async def test_it_refuses_an_upgrade_on_an_unknown_path_with_one_line_and_no_traceback(
    asgi_server: LiveServer, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"ws://{asgi_server.host}:{asgi_server.port}{path}", open_timeout=10):
            pass
    assert refused.value.response.status_code == 403
    lines = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(lines) == 1, [record.getMessage() for record in lines]
    assert lines[0].exc_info is None
    assert "agt_secret" not in lines[0].getMessage()
