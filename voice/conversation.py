"""One live call's conversation: the caller's turns to the agent, or to the answering machine.

A caller's prompt goes to the agent's live MCP session in whichever process holds it
(orchestrator.agent_registry): sampled when its client can sample, else pushed as a `voice_prompt`
notification that the agent answers with `comms_voice_reply` / `comms_end_call` (those replies reach
this object through the channel layer, see voice.consumers). Each turn waits at most
VOICE_TURN_TIMEOUT_SECONDS for the agent's first word (and as long again for each further streamed
piece); with no agent connected, or none answering in time, the answering machine takes the rest of
the call and leaves the agent a voicemail.

Nothing here touches the database on the way from a prompt to its answer. Turns are kept in memory and
written in batches (every TURN_BATCH turns, and when the call ends), off the event loop's critical
path, one write at a time per call, in order (_Writes): a database write per turn cost as much server
CPU as the rest of the turn (bench/HISTORY.md). A voicemail is written at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from orchestrator import agent_registry, metrics
from orchestrator.retries import run_blocking_retried
from voice import live
from voice.answering_machine import AnsweringMachine, Say
from voice.live import LiveCall, TurnRecord
from voice.models import AnsweredBy

logger = logging.getLogger(__name__)

Frame = dict[str, Any]
SendFrame = Callable[[Frame], Awaitable[None]]

# What the agent is given of the conversation when it samples: the last exchanges, not the whole call.
MAX_HISTORY_MESSAGES = 20
# Caps on what one caller can make us hold in memory.
MAX_UTTERANCE_CHARS = 4000
MAX_TRANSCRIPT_ENTRIES = live.MAX_TRANSCRIPT_ENTRIES
MAX_PENDING_REPLIES = 200
MAX_TURNS = 10_000
WRITE_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0)
TURN_BATCH = 10


def _now_iso() -> str:
    return timezone.now().isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Reply:
    """One comms_voice_reply: text to speak (`last` closes the answer), and optionally audio to play
    (`play`, an https URL) and keypad digits to send (`digits`, e.g. to an IVR) before it."""

    text: str
    last: bool = True
    play: str = ""
    digits: str = ""


@dataclass
class _Turn:
    sequence: int
    caller_text: str
    prompt_at: datetime
    started: float
    replies: asyncio.Queue[Reply] = field(default_factory=lambda: asyncio.Queue(MAX_PENDING_REPLIES))
    answered_by: str = AnsweredBy.NOBODY
    reply_parts: list[str] = field(default_factory=list)
    first_reply_at: datetime | None = None
    waiting_for_replies: bool = False
    task: asyncio.Task[None] | None = None
    interrupted: bool = False
    heard_text: str = ""

    def record(self, call_id: int, *, completed: bool) -> TurnRecord:
        return TurnRecord(
            call_id=call_id,
            sequence=self.sequence,
            caller_text=self.caller_text,
            reply_text="".join(self.reply_parts),
            answered_by=self.answered_by if self.reply_parts else AnsweredBy.NOBODY,
            prompt_at=self.prompt_at,
            first_reply_at=self.first_reply_at,
            completed_at=timezone.now() if completed else None,
            interrupted=self.interrupted,
            heard_text=self.heard_text,
        )


class _Writes:
    """The call's database writes, run one after another off the event loop, in the order given."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], object]] = []
        self.task: asyncio.Task[None] | None = None

    def add(self, write: Callable[[], object]) -> None:
        self.pending.append(write)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.pending:
            write = self.pending.pop(0)
            try:
                # A lock or a dropped connection is transient; the record (a voicemail!) is not.
                await run_blocking_retried(write, delays=WRITE_RETRY_DELAYS)
            except Exception:
                logger.exception("Recording a live call's progress failed")

    async def flush(self) -> None:
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)


class Conversation:
    """The state of one call between its socket and the agent (or the answering machine)."""

    def __init__(self, *, call: LiveCall, send: SendFrame) -> None:
        self.call = call
        self.send = send
        self.history: list[dict[str, str]] = []
        self.transcript: list[dict[str, Any]] = []
        self.sequence = 0
        self.turn: _Turn | None = None
        self.last_answered: _Turn | None = None
        self.machine: AnsweringMachine | None = None
        self.voicemail_left = False
        self.ended = False
        self.writes = _Writes()
        self.unsaved_turns: dict[int, TurnRecord] = {}
        self.saved_turns: set[int] = set()

    # --- frames from the caller (ConversationRelay) -----------------------------------------------

    async def prompt(self, text: str) -> None:
        """The caller finished an utterance."""
        text = text[:MAX_UTTERANCE_CHARS]
        self._note("caller", text)
        if self.ended or self.sequence >= MAX_TURNS:
            return
        self.sequence += 1
        turn = _Turn(sequence=self.sequence, caller_text=text, prompt_at=timezone.now(), started=time.monotonic())
        if self.machine is not None:
            await self._machine_turn(turn, self.machine.hear(text))
            return
        if self.turn is not None:
            # The caller spoke again before the agent answered: the agent answers both at once.
            self._cancel_turn(self.turn)
        self.history.append({"role": "user", "content": text})
        del self.history[:-MAX_HISTORY_MESSAGES]
        self.turn = turn
        turn.task = asyncio.get_running_loop().create_task(self._agent_turn(turn))

    async def interrupt(self, heard: str) -> None:
        """The caller spoke over the reply: cancel what is still coming, remember what they heard."""
        self._note("event", f"caller interrupted after: {heard}")
        logger.debug("Caller interrupted on call %s", self.call.call_sid)
        turn = self.turn if self.turn is not None and self.turn.reply_parts else self.last_answered
        if self.turn is not None:
            self._cancel_turn(self.turn)
        if turn is None:
            return
        if self.history and self.history[-1]["role"] == "assistant" and turn is self.last_answered:
            # The agent's next sample should know what the caller actually heard.
            self.history[-1] = {"role": "assistant", "content": heard}
        turn.interrupted, turn.heard_text = True, heard[:MAX_UTTERANCE_CHARS]
        self._record(turn, completed=True)

    async def dtmf(self, digit: str) -> None:
        digit = digit[:8]
        self._note("caller", f"[pressed {digit}]")
        if self.machine is not None:
            said = self.machine.press(digit)
            if said is not None:
                await self._say(said, by="machine")
                await self._after_machine(said)
            return
        self.history.append({"role": "user", "content": f"[The caller pressed {digit} on the keypad]"})
        del self.history[:-MAX_HISTORY_MESSAGES]

    def error(self, description: str) -> None:
        logger.warning("ConversationRelay reported an error on call %s: %s", self.call.call_sid, description[:500])
        self._note("error", description[:500])

    # --- from the agent (comms_voice_reply / comms_end_call, any process) --------------------------

    async def agent_reply(self, reply: Reply) -> None:
        if self.ended or self.machine is not None:
            return
        turn = self.turn
        if turn is None or not turn.waiting_for_replies:
            # No caller's turn waits for an answer: it came too late (the turn timed out, or the caller
            # interrupted and so cancelled it). Speaking it now would answer something else.
            logger.info("Dropped a late reply on call %s", self.call.call_sid)
            return
        try:
            turn.replies.put_nowait(reply)
        except asyncio.QueueFull:
            logger.warning("Dropped a reply piece on call %s: too many pending", self.call.call_sid)

    async def agent_end(self, text: str) -> None:
        if self.ended:
            return
        if self.turn is not None:
            self._cancel_turn(self.turn)
        if text:
            await self._send_text(text, True)
            self._note("agent", text)
        await self._end({"reason": "agent_ended"})

    # --- the end ------------------------------------------------------------------------------------

    async def closed(self) -> None:
        """The socket is gone (the caller hung up, or the relay ended): settle and write everything."""
        self.ended = True
        if self.turn is not None:
            self._cancel_turn(self.turn)
        self._leave_voicemail()
        self._save_turns()
        call_id, transcript = self.call.id, list(self.transcript)
        self.writes.add(lambda: live.call_transcript_save(call_id=call_id, transcript=transcript))
        await self.writes.flush()

    # --- the agent's turn ---------------------------------------------------------------------------

    async def _agent_turn(self, turn: _Turn) -> None:
        timeout = float(settings.VOICE_TURN_TIMEOUT_SECONDS)
        try:
            try:
                text = await agent_registry.sample_agent(
                    self.call.agent_id,
                    list(self.history),
                    timeout=timeout,
                    system_prompt=self._system_prompt(),
                )
            except agent_registry.SamplingNotSupported:
                await self._voice_prompt_turn(turn, timeout)
                return
            turn.answered_by = AnsweredBy.AGENT_SAMPLING
            await self._reply_piece(turn, text, True)
        except asyncio.CancelledError:
            raise
        except agent_registry.AgentNotConnected:
            await self._machine_takes_over(turn, "the agent is not connected")
        except TimeoutError:
            await self._machine_takes_over(turn, "the agent did not answer in time")
        except Exception:
            logger.exception("The agent's turn failed on call %s", self.call.call_sid)
            await self._machine_takes_over(turn, "the agent's turn failed")

    async def _voice_prompt_turn(self, turn: _Turn, timeout: float) -> None:
        turn.waiting_for_replies = True
        if not await agent_registry.notify_agent(self.call.agent_id, self._voice_prompt(turn)):
            raise agent_registry.AgentNotConnected(self.call.agent_id)
        turn.answered_by = AnsweredBy.AGENT_VOICE_PROMPT
        while True:
            reply = await asyncio.wait_for(turn.replies.get(), timeout=timeout)
            if reply.play:
                await self._send({"type": "play", "source": reply.play, "loop": 1, "preemptible": False, "interruptible": True})
            if reply.digits:
                await self._send({"type": "sendDigits", "digits": reply.digits})
            await self._reply_piece(turn, reply.text, reply.last)
            if reply.last:
                return

    async def _reply_piece(self, turn: _Turn, text: str, last: bool) -> None:
        await self._send_text(text, last)
        if turn.first_reply_at is None:
            turn.first_reply_at = timezone.now()
            metrics.VOICE_TURN_SECONDS.observe(time.monotonic() - turn.started)
        turn.reply_parts.append(text)
        if not last:
            return
        reply = "".join(turn.reply_parts)
        self._note("agent", reply)
        self.history.append({"role": "assistant", "content": reply})
        del self.history[:-MAX_HISTORY_MESSAGES]
        if self.turn is turn:
            self.turn = None
        self.last_answered = turn
        self._record(turn, completed=True)

    def _cancel_turn(self, turn: _Turn) -> None:
        if turn.task is not None and not turn.task.done() and turn.task is not asyncio.current_task():
            turn.task.cancel()
        if self.turn is turn:
            self.turn = None
        if turn.reply_parts:
            self.last_answered = turn
        self._record(turn, completed=True)

    # --- the answering machine ----------------------------------------------------------------------

    async def _machine_takes_over(self, turn: _Turn, why: str) -> None:
        logger.info("Answering machine takes call %s: %s", self.call.call_sid, why)
        if self.turn is turn:
            self.turn = None
        # The conversation so far, including the utterance nobody answered, goes into the voicemail.
        speakers = {"caller": "Caller", "agent": self.call.agent_name or "Agent"}
        earlier = [(speakers[entry["speaker"]], entry["text"]) for entry in self.transcript if entry["speaker"] in speakers]
        self.machine = AnsweringMachine(agent_name=self.call.agent_name, caller=self.call.other_party, earlier=earlier)
        if turn.reply_parts:
            # The agent stopped mid-answer: close what it had started saying.
            await self._send_text("", True)
        await self._machine_turn(turn, self.machine.start())

    async def _machine_turn(self, turn: _Turn, said: Say | None) -> None:
        if said is None:
            return
        turn.answered_by = AnsweredBy.ANSWERING_MACHINE
        turn.first_reply_at = timezone.now()
        turn.reply_parts = [said.text]
        await self._say(said, by="machine")
        self._record(turn, completed=True)
        await self._after_machine(said)

    async def _after_machine(self, said: Say) -> None:
        if said.end_call:
            self._leave_voicemail()
            await self._end({"reason": "voicemail_taken"})

    def _leave_voicemail(self) -> None:
        machine = self.machine
        if machine is None or self.voicemail_left or not machine.has_message:
            return
        self.voicemail_left = True
        call, transcript = self.call, machine.transcript()
        self.writes.add(lambda: live.voicemail_leave(call=call, transcript=transcript))

    # --- frames to the caller -----------------------------------------------------------------------

    async def _say(self, said: Say, *, by: str) -> None:
        await self._send_text(said.text, True)
        self._note(by, said.text)

    async def _send_text(self, token: str, last: bool) -> None:
        await self._send({"type": "text", "token": token, "last": last})

    async def _send(self, frame: Frame) -> None:
        if not self.ended:
            await self.send(frame)

    async def _end(self, handoff: dict[str, Any]) -> None:
        if self.ended:
            return
        import json

        await self.send({"type": "end", "handoffData": json.dumps({**handoff, "callSid": self.call.call_sid})})
        self.ended = True

    # --- bookkeeping --------------------------------------------------------------------------------

    def _note(self, speaker: str, text: str) -> None:
        if len(self.transcript) < MAX_TRANSCRIPT_ENTRIES:
            self.transcript.append({"at": _now_iso(), "speaker": speaker, "text": text})

    def _record(self, turn: _Turn, *, completed: bool) -> None:
        self.unsaved_turns[turn.sequence] = turn.record(self.call.id, completed=completed)
        if len(self.unsaved_turns) >= TURN_BATCH:
            self._save_turns()

    def _save_turns(self) -> None:
        if not self.unsaved_turns:
            return
        records = list(self.unsaved_turns.values())
        self.unsaved_turns.clear()
        new = [record for record in records if record.sequence not in self.saved_turns]
        changed = [record for record in records if record.sequence in self.saved_turns]
        self.saved_turns.update(record.sequence for record in new)
        self.writes.add(lambda: live.call_turns_save(new=new, changed=changed))

    def _system_prompt(self) -> str:
        context = (
            f"You are {self.call.agent_name}, on a live phone call (callSid {self.call.call_sid}) with "
            f"{self.call.other_party or 'a caller'}. Answer in short spoken sentences: your words are read aloud."
        )
        return f"{self.call.system_prompt}\n\n{context}" if self.call.system_prompt else context

    def _voice_prompt(self, turn: _Turn) -> dict[str, Any]:
        """The waiting-message object (contract §6.3) of a caller's utterance; pushed, never stored."""
        inbound = self.call.direction == live.INBOUND
        return {
            "id": "vp_" + secrets.token_hex(12),
            "agentId": self.call.agent_id,
            "channel": "voice",
            "kind": "voice_prompt",
            "direction": "inbound",
            "from": self.call.other_party,
            "to": self.call.callee if inbound else self.call.caller,
            "subject": None,
            "body": turn.caller_text,
            "mediaUrls": [],
            "externalId": None,
            "callSid": self.call.call_sid,
            "status": "received",
            "reason": None,
            "createdAt": turn.prompt_at.isoformat().replace("+00:00", "Z"),
        }
