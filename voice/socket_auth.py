"""Who may open the voice socket (contract §8): a per-call signed token in the URL, or Twilio's signature.

The TwiML we hand Twilio carries a token bound to one agent and one call session, valid for
VOICE_WS_TOKEN_TTL_SECONDS: HMAC-SHA256 with SECRET_KEY over "voice-ws:<agentId>:<session>:<expires>".
Twilio also signs the upgrade (`X-Twilio-Signature` over the wss URL, no body), checked like any of its
webhooks. Either proves the request; anything else is refused before the socket is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from django.conf import settings

from channels_app import signatures


def _mac(*, agent_id: str, session_id: str, expires: int) -> str:
    message = f"voice-ws:{agent_id}:{session_id}:{expires}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def socket_query(*, agent_id: str, session_id: str, now: float | None = None) -> str:
    """The query string of a call's voice socket URL: `session`, `expires` and the signed `token`."""
    expires = int((now if now is not None else time.time()) + settings.VOICE_WS_TOKEN_TTL_SECONDS)
    token = _mac(agent_id=agent_id, session_id=session_id, expires=expires)
    return urlencode({"session": session_id, "expires": expires, "token": token})


def socket_url(*, agent_id: str, session_id: str) -> str:
    """The ws(s):// URL of the call's socket: `ws://` when PUBLIC_BASE_URL is http://."""
    return f"{socket_base_url(agent_id)}?{socket_query(agent_id=agent_id, session_id=session_id)}"


def socket_base_url(agent_id: str) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    scheme, _, rest = base.partition("://")
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{rest}/webhooks/{agent_id}/voice-ws"


def token_valid(*, agent_id: str, session_id: str, expires: str, token: str, now: float | None = None) -> bool:
    """A token made by socket_query for this agent and session, not yet expired (constant-time compare)."""
    if not (session_id and expires and token):
        return False
    try:
        expires_at = int(expires)
    except ValueError:
        return False
    if expires_at < (now if now is not None else time.time()):
        return False
    expected = _mac(agent_id=agent_id, session_id=session_id, expires=expires_at)
    return hmac.compare_digest(expected, token)


def twilio_upgrade_valid(*, agent_id: str, query_string: str, signature: str) -> bool:
    """Twilio's `X-Twilio-Signature` of the socket URL it opened (our base URL, path and query; no body)."""
    if not signature:
        return False
    url = socket_base_url(agent_id) + (f"?{query_string}" if query_string else "")
    return signatures.twilio_signature_valid(
        url=url, params=[], signature=signature, auth_token=signatures.twilio_auth_token()
    )
