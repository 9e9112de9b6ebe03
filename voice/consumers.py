"""The ConversationRelay socket: Twilio's side of a live call (contract §8).

Authenticates the upgrade (voice.socket_auth), then dispatches each frame by its `type` to the
call's Conversation. Replies from the agent's tools arrive as channel-layer messages on the call's
group, from whichever process ran the tool.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from orchestrator import metrics
from orchestrator.retries import run_blocking_retried
from orchestrator.workers import run_blocking
from voice import live, socket_auth
from voice.conversation import Conversation, Frame, Reply

logger = logging.getLogger(__name__)

# ConversationRelay frames are small JSON objects; anything far larger is not one of them.
MAX_FRAME_CHARS = 64 * 1024


class VoiceSocketConsumer(AsyncWebsocketConsumer):
    conversation: Conversation | None = None
    group: str | None = None

    async def connect(self) -> None:
        agent_id = str(self.scope["url_route"]["kwargs"]["agent_id"])
        query_string = self.scope.get("query_string", b"").decode("latin-1")
        query = {name: values[0] for name, values in parse_qs(query_string).items()}
        session_id = query.get("session", "")
        if not self._authorized(agent_id, session_id, query, query_string):
            return await self._refuse(agent_id, "no valid token or Twilio signature")
        try:
            call = await run_blocking(live.call_for_socket, agent_id=agent_id, session_id=session_id)
        except Exception:
            logger.exception("Could not read the call of a voice socket")
            call = None
        if call is None:
            return await self._refuse(agent_id, "no live call for this session")
        self.group = live.call_group(call.session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.conversation = Conversation(call=call, send=self._send_frame)
        metrics.ACTIVE_VOICE_SESSIONS.inc()
        await self.accept()

    def _authorized(self, agent_id: str, session_id: str, query: dict[str, str], query_string: str) -> bool:
        if socket_auth.token_valid(
            agent_id=agent_id, session_id=session_id, expires=query.get("expires", ""), token=query.get("token", "")
        ):
            return True
        signature = dict(self.scope.get("headers", [])).get(b"x-twilio-signature", b"").decode("latin-1")
        return socket_auth.twilio_upgrade_valid(agent_id=agent_id, query_string=query_string, signature=signature)

    async def _refuse(self, agent_id: str, why: str) -> None:
        # Closing before accepting answers the upgrade with 403.
        logger.info("Refused a voice socket for agent %s: %s", agent_id, why)
        await self.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        conversation = self.conversation
        if conversation is None or text_data is None or len(text_data) > MAX_FRAME_CHARS:
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            logger.info("Ignored a voice socket frame that is not JSON on call %s", conversation.call.call_sid)
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        try:
            await self._dispatch(conversation, kind, frame)
        except Exception:
            # Raised out of here, an error would end the socket without disconnect(): the call's transcript
            # and voicemail (conversation.closed), its group and the sessions gauge would be lost with it.
            logger.exception("Handling a %r frame failed on call %s", kind, conversation.call.call_sid)
            if kind == "setup":
                # A socket whose call could not be checked is not served; disconnect() still runs.
                await self.close(code=1011)

    async def _dispatch(self, conversation: Conversation, kind: object, frame: Frame) -> None:
        if kind == "setup":
            await self._setup(conversation, frame)
        elif kind == "prompt":
            # Without partialPrompts (our TwiML) every prompt is a whole utterance; partial ones are skipped.
            if frame.get("last", True) is not False:
                await conversation.prompt(str(frame.get("voicePrompt") or ""))
        elif kind == "interrupt":
            await conversation.interrupt(str(frame.get("utteranceUntilInterrupt") or ""))
        elif kind == "dtmf":
            await conversation.dtmf(str(frame.get("digit") or ""))
        elif kind == "error":
            conversation.error(str(frame.get("description") or ""))

    async def _setup(self, conversation: Conversation, frame: Frame) -> None:
        call = conversation.call
        call_sid = str(frame.get("callSid") or "")
        custom = frame.get("customParameters") or {}
        claimed_session = custom.get("sessionId") if isinstance(custom, dict) else None
        # call_bind is one transaction that sets what is not yet set: safe to try again.
        if claimed_session not in (None, call.session_id) or not await run_blocking_retried(
            live.call_bind, call_id=call.id, call_sid=call_sid
        ):
            logger.warning("Voice socket of session %s announced another call (%s); closing", call.session_id, call_sid)
            await self.close()
            return
        if call_sid and not call.call_sid:
            conversation.call = dataclasses.replace(call, call_sid=call_sid)

    async def _send_frame(self, frame: Frame) -> None:
        await self.send(text_data=json.dumps(frame))

    # channel-layer messages (voice.live.call_message_send)

    async def voice_reply(self, message: dict[str, Any]) -> None:
        if self.conversation is not None:
            await self.conversation.agent_reply(
                Reply(
                    text=str(message.get("text") or ""),
                    last=bool(message.get("last", True)),
                    play=str(message.get("play") or ""),
                    digits=str(message.get("digits") or ""),
                )
            )

    async def voice_end(self, message: dict[str, Any]) -> None:
        if self.conversation is not None:
            await self.conversation.agent_end(str(message.get("text") or ""))

    async def disconnect(self, code: int) -> None:
        conversation, self.conversation = self.conversation, None
        if conversation is None:
            return
        metrics.ACTIVE_VOICE_SESSIONS.dec()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await conversation.closed()
