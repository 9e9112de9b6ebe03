"""LINE Messaging API: push messages and bot info, with the default channel or an agent's own.

Quirks: the push endpoint takes up to 5 message objects; media URLs become image messages, which LINE
requires to be HTTPS and uses as their own preview. `X-Line-Retry-Key` must be a UUID, so our
idempotency key is hashed into a UUIDv5; a retry with the same key that LINE already accepted answers
409, which we report as permanent "rejected" (the first send went through; never send it again).
LINE reports no price per push (plans bill by monthly volume), so cost is the price table's. There are
no delivery reports for push messages: a push that LINE accepted is "sent".
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import urllib3
from django.conf import settings
from linebot.v3.messaging import (
    ApiClient,
    Configuration,
    ImageMessage,
    MessagingApi,
    PushMessageRequest,
    TextMessage,
)
from linebot.v3.messaging.exceptions import ApiException

from channels_app.providers import pricing
from channels_app.providers.base import LineBotInfo, OutboundMessage, ProviderError, SendResult

PROVIDER = "line"
DEFAULT_HOST = "https://api.line.me"
TIMEOUT_SECONDS = 15
MAX_MESSAGES_PER_PUSH = 5
RETRY_KEY_NAMESPACE = uuid.UUID("6f1c3f3e-7a55-4a3b-9a43-2b0b51f0c0de")


@functools.lru_cache(maxsize=32)
def _api(access_token: str, host: str) -> MessagingApi:
    # Cached per channel so the urllib3 pool is reused; the pool is thread-safe.
    configuration = Configuration(host=host, access_token=access_token)
    return MessagingApi(ApiClient(configuration))


def map_error(exc: Exception) -> ProviderError:
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = f"LINE answered HTTP {status}"
        try:
            body = json.loads(exc.body) if exc.body else {}
            message = str(body.get("message") or message)
        except (TypeError, ValueError):
            pass
        if status == 429 or status >= 500:
            permanent, reason = False, ("rate_limited" if status == 429 else "unavailable")
        elif status in (401, 403):
            permanent, reason = True, "auth_failed"
        elif status == 404:
            permanent, reason = True, "not_found"
        elif status == 400 and "'to'" in message:
            permanent, reason = True, "invalid_recipient"
        else:
            permanent, reason = True, "rejected"
        return ProviderError(message, provider=PROVIDER, permanent=permanent, code=str(status), status=status, reason=reason)
    return ProviderError(f"LINE unreachable: {exc.__class__.__name__}", provider=PROVIDER, permanent=False)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except (ApiException, urllib3.exceptions.HTTPError) as exc:
        raise map_error(exc) from exc


def build_messages(message: OutboundMessage) -> list[Any]:
    messages: list[Any] = []
    if message.body:
        messages.append(TextMessage(text=message.body, quickReply=None, quoteToken=None))
    for url in message.media_urls:
        messages.append(ImageMessage(originalContentUrl=url, previewImageUrl=url, quickReply=None))
    if not messages:
        raise ProviderError("A LINE message needs text or media.", provider=PROVIDER, permanent=True, status=400)
    if len(messages) > MAX_MESSAGES_PER_PUSH:
        raise ProviderError(
            f"LINE pushes at most {MAX_MESSAGES_PER_PUSH} messages (text plus images) at once.",
            provider=PROVIDER,
            permanent=True,
            status=400,
        )
    return messages


class LineMessagingProvider:
    name = PROVIDER

    def __init__(self, access_token: str) -> None:
        self.access_token = access_token

    def api(self, access_token: str | None = None) -> MessagingApi:
        return _api(access_token or self.access_token, settings.LINE_API_BASE_URL or DEFAULT_HOST)

    def send(self, message: OutboundMessage) -> SendResult:
        # The message may carry the agent's own channel token; it wins over the one we were built with.
        token = message.credentials.get("channel_access_token") or message.credentials.get("channelAccessToken")
        request = PushMessageRequest(
            to=message.to_address, messages=build_messages(message), notificationDisabled=False, customAggregationUnits=None
        )
        retry_key = str(uuid.uuid5(RETRY_KEY_NAMESPACE, message.idempotency_key)) if message.idempotency_key else None
        with translate_errors():
            response = self.api(token).push_message(request, x_line_retry_key=retry_key, _request_timeout=TIMEOUT_SECONDS)
        sent = response.sent_messages or []
        cost, _ = pricing.estimate_message_cost("line")
        return SendResult(
            external_id=str(sent[0].id) if sent else "",
            status="sent",
            provider=self.name,
            cost=cost,
            cost_estimated=True,
            from_address=message.from_address,
            to_address=message.to_address,
        )

    def bot_info(self) -> LineBotInfo:
        with translate_errors():
            info = self.api().get_bot_info(_request_timeout=TIMEOUT_SECONDS)
        return LineBotInfo(
            user_id=str(info.user_id),
            basic_id=str(info.basic_id),
            display_name=str(info.display_name),
            picture_url=info.picture_url,
        )


def is_configured() -> bool:
    return bool(settings.LINE_CHANNEL_ACCESS_TOKEN)


def readiness_check() -> None:
    LineMessagingProvider(settings.LINE_CHANNEL_ACCESS_TOKEN or "").bot_info()


def check_access_token(access_token: str) -> str:
    """Fetch the bot's profile with an explicit channel access token (the admin's credential test); returns
    the bot's display name."""
    return LineMessagingProvider(access_token).bot_info().display_name
