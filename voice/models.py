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
