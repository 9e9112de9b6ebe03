"""Voice calls, inbound and outbound."""

from __future__ import annotations

import secrets

from django.db import models


def new_session_id() -> str:
    return "vs_" + secrets.token_hex(12)


class CallStatus(models.TextChoices):
    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    FAILED = "failed"
    TRANSFERRED = "transferred"


class Call(models.Model):
    call_sid = models.CharField(max_length=64, unique=True, null=True, blank=True)
    session_id = models.CharField(max_length=32, unique=True, default=new_session_id)
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="calls")
    organization = models.ForeignKey("agents.Organization", on_delete=models.CASCADE, related_name="calls")
    direction = models.CharField(max_length=10)
    purpose = models.CharField(max_length=30, default="conversation")
    status = models.CharField(max_length=20, choices=CallStatus.choices, default=CallStatus.QUEUED)
    from_address = models.CharField(max_length=32)
    to_address = models.CharField(max_length=32)
    greeting = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    voice = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=20, blank=True)
    context = models.JSONField(default=dict, blank=True)
    transcript = models.JSONField(default=list, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When the transcript and spoken texts were erased under CALL_TRANSCRIPT_RETENTION_DAYS (voice.retention).
    content_erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["agent", "created_at"]), models.Index(fields=["to_address", "created_at"])]

    def __str__(self) -> str:
        return f"{self.call_sid or self.session_id} {self.direction}"


def new_audio_token() -> str:
    # 256 bits: the URL is the only credential for the audio (Twilio fetches <Play> URLs unauthenticated).
    return secrets.token_urlsafe(32)


class VoiceAudio(models.Model):
    """Synthesized audio of a voice message, served at an unguessable URL until it expires."""

    token = models.CharField(max_length=64, unique=True, default=new_audio_token)
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="voice_audio")
    call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="audio")
    content_type = models.CharField(max_length=40)
    audio = models.BinaryField()
    size_bytes = models.PositiveIntegerField()
    duration_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"audio {self.token[:6]}… of {self.agent_id}"


class AnsweredBy(models.TextChoices):
    """Who answered a caller's turn on a live call."""

    AGENT_SAMPLING = "agent_sampling"  # the agent's MCP client, through sampling/createMessage
    AGENT_VOICE_PROMPT = "agent_voice_prompt"  # the agent, through a voice_prompt and comms_voice_reply
    ANSWERING_MACHINE = "answering_machine"  # the built-in answering machine (no agent in time)
    NOBODY = "nobody"  # cancelled by an interruption, or the call ended first


class CallTurn(models.Model):
    """One exchange on a live call: what the caller said and what was answered, with its timings."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="turns")
    sequence = models.PositiveIntegerField()
    caller_text = models.TextField(blank=True)
    reply_text = models.TextField(blank=True)
    answered_by = models.CharField(max_length=20, choices=AnsweredBy.choices, default=AnsweredBy.NOBODY)
    # When the caller's prompt frame arrived, when the first reply token left, when the reply ended.
    prompt_at = models.DateTimeField()
    first_reply_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The caller spoke over the reply: what they had heard of it (ConversationRelay's utteranceUntilInterrupt).
    interrupted = models.BooleanField(default=False)
    heard_text = models.TextField(blank=True)

    class Meta:
        ordering = ["call", "sequence"]
        constraints = [models.UniqueConstraint(fields=["call", "sequence"], name="unique_call_turn_sequence")]

    def __str__(self) -> str:
        return f"{self.call_id} turn {self.sequence}"

    @property
    def first_reply_ms(self) -> int | None:
        if self.first_reply_at is None:
            return None
        return int((self.first_reply_at - self.prompt_at).total_seconds() * 1000)
