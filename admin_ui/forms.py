"""Forms of the admin pages: the setup wizard's steps, agent provisioning, and the blocked-channels field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.conf import settings

from agents.models import Agent, Organization
from channels_app.channel_registry import channel_names, channels
from channels_app.destinations import DestinationRefused, callback_url_check

# --- blocked channels -------------------------------------------------------------------------------

ALL_CHANNELS = "*"


def blockable_channels() -> list[tuple[str, str]]:
    """One checkbox per registered channel, then "All channels"."""
    return [*((spec.name, spec.label) for spec in channels()), (ALL_CHANNELS, "All channels")]


def capability_choices() -> list[tuple[str, str]]:
    return [(spec.capability, spec.label) for spec in channels()]


class BlockedChannelsField(forms.MultipleChoiceField):
    """Agent.blocked_channels as checkboxes: one per channel, and "All channels" for `["*"]`."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Blocked channels")
        kwargs.setdefault("help_text", "A blocked channel refuses sends (403 channel_blocked) and ignores "
                                       "inbound webhooks. “All channels” blocks every channel.")
        super().__init__(choices=blockable_channels, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        # ["*"] shows every box ticked, so the page says plainly that everything is blocked.
        if isinstance(value, list | tuple) and ALL_CHANNELS in value:
            return [*channel_names(), ALL_CHANNELS]
        return value

    def clean(self, value: Any) -> list[str]:
        chosen: list[str] = super().clean(value)
        if ALL_CHANNELS in chosen:
            return [ALL_CHANNELS]
        # The model's order, whatever the order the browser sent them in.
        return [name for name in channel_names() if name in chosen]


class AgentAdminForm(forms.ModelForm):
    blocked_channels = BlockedChannelsField()
    callback_url = forms.URLField(max_length=500, required=False, assume_scheme="https", label="Callback URL")

    class Meta:
        model = Agent
        # Not the encrypted secrets (callback secret, LINE credentials): they are never shown.
        fields = ("id", "organization", "display_name", "status", "blocked_channels", "greeting", "system_prompt",
                  "voice", "language", "callback_url", "markup_percent", "tier", "quiet_hours_start",
                  "quiet_hours_end", "deprovisioned_at")

    def clean_callback_url(self) -> str:
        """As provisioning: a callbackUrl reaches public addresses only (CALLBACK_ALLOWED_HOSTS aside)."""
        url: str = self.cleaned_data.get("callback_url") or ""
        if url:
            try:
                callback_url_check(url)
            except DestinationRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return url


# --- provisioning -----------------------------------------------------------------------------------


class ProvisionForm(forms.Form):
    """The fields of POST /api/v1/provision an operator fills in by hand."""

    display_name = forms.CharField(max_length=200, label="Display name")
    agent_id = forms.SlugField(max_length=64, required=False, label="Agent id",
                               help_text="Letters, digits, - and _. Generated when left empty.")
    organization = forms.ModelChoiceField(queryset=Organization.objects.all(), required=False,
                                          help_text="Default organization when left empty.")
    capabilities = forms.MultipleChoiceField(
        choices=capability_choices,
        widget=forms.CheckboxSelectMultiple, initial=["sms", "email"],
    )
    country = forms.RegexField(regex=r"^[A-Za-z]{2}$", max_length=2, initial="US",
                               help_text="Two-letter ISO code of the phone number's country.")
    greeting = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), label="System prompt")
    voice = forms.CharField(max_length=100, required=False, help_text="ElevenLabs voice id; the default when empty.")
    language = forms.CharField(max_length=20, required=False, help_text="e.g. en-US; the default when empty.")
    email_domain = forms.CharField(max_length=200, required=False, label="Email domain",
                                   help_text=f"Addresses are <agent id>@{settings.EMAIL_DEFAULT_DOMAIN} when empty.")
    callback_url = forms.URLField(max_length=500, required=False, assume_scheme="https", label="Callback URL",
                                  help_text="Inbound messages are POSTed here when the agent has no live session.")
    line_channel_access_token = forms.CharField(required=False, label="LINE channel access token",
                                                widget=forms.PasswordInput(render_value=False))
    line_channel_secret = forms.CharField(required=False, label="LINE channel secret",
                                          widget=forms.PasswordInput(render_value=False))

    def __init__(self, *args: Any, organization: Organization | None = None, **kwargs: Any) -> None:
        """`organization`: the one an org member provisions into; superusers (None) pick any."""
        super().__init__(*args, **kwargs)
        self.fixed_organization = organization
        if organization is not None:
            del self.fields["organization"]

    def chosen_organization(self) -> Organization | None:
        if self.fixed_organization is not None:
            return self.fixed_organization
        chosen = self.cleaned_data.get("organization")
        return chosen if isinstance(chosen, Organization) else None


# --- setup wizard -----------------------------------------------------------------------------------
# Each step is a form whose field names are the .env keys POST /admin/api/save takes. The page renders
# them; a small script (static/admin_ui/setup.js) posts them as JSON: tests to /admin/api/test/…, then
# everything to save and deploy.


def _secret(label: str, help_text: str = "") -> forms.CharField:
    # Secrets are never rendered back: an empty field on save means "keep what is configured".
    return forms.CharField(label=label, required=False, help_text=help_text,
                           widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))


class BaseUrlStep(forms.Form):
    PUBLIC_BASE_URL = forms.URLField(label="Public base URL", required=False, assume_scheme="https",
                                     help_text="The URL providers use to reach this server, e.g. "
                                               "https://comms.example.com. Webhook signatures are checked "
                                               "against it.")


class TwilioStep(forms.Form):
    TWILIO_ACCOUNT_SID = forms.CharField(label="Account SID", required=False,
                                         widget=forms.TextInput(attrs={"autocomplete": "off"}))
    TWILIO_AUTH_TOKEN = _secret("Auth token")


class ResendStep(forms.Form):
    RESEND_API_KEY = _secret("API key")
    RESEND_WEBHOOK_SECRET = _secret("Webhook signing secret", "whsec_…, for inbound email.")
    EMAIL_DEFAULT_DOMAIN = forms.CharField(label="Email domain", required=False,
                                           help_text="Agent addresses are <agent id>@<this domain>.")


class ElevenLabsStep(forms.Form):
    ELEVENLABS_API_KEY = _secret("API key")
    ELEVENLABS_DEFAULT_VOICE = forms.CharField(label="Default voice id", required=False)


class LineStep(forms.Form):
    LINE_CHANNEL_ACCESS_TOKEN = _secret("Channel access token")
    LINE_CHANNEL_SECRET = _secret("Channel secret")


class VoiceStep(forms.Form):
    VOICE_DEFAULT_GREETING = forms.CharField(label="Greeting", required=False)
    VOICE_DEFAULT_LANGUAGE = forms.CharField(label="Language", required=False, help_text="e.g. en-US")
    VOICE_AI_DISCLOSURE = forms.BooleanField(label="Tell callers they are talking to an AI", required=False)


class ModeStep(forms.Form):
    DEMO_MODE = forms.BooleanField(label="Demo mode", required=False,
                                   help_text="Sandbox providers: nothing leaves the machine, costs are "
                                             "simulated. Auth and webhook signatures are still checked.")


@dataclass(frozen=True)
class WizardStep:
    slug: str
    title: str
    form_class: type[forms.Form]
    intro: str = ""
    # The test button: where it posts, and which JSON field takes which form field.
    test_url: str = ""
    test_fields: dict[str, str] = field(default_factory=dict)
    test_label: str = "Test"
    # The key of GET /admin/api/status whose `configured` marks the step done.
    status_key: str = ""

    @property
    def test_fields_json(self) -> str:
        return json.dumps(self.test_fields)


def wizard_steps(admin_prefix: str) -> list[WizardStep]:
    api = f"{admin_prefix}api/"
    return [
        WizardStep("base-url", "Public base URL", BaseUrlStep,
                   "Where providers reach this server. The check fetches <url>/health from here.",
                   test_url=f"{api}test/public-url", test_fields={"url": "PUBLIC_BASE_URL"},
                   test_label="Check it is reachable"),
        WizardStep("twilio", "Twilio", TwilioStep, "SMS, WhatsApp and voice calls.",
                   test_url=f"{api}test/twilio",
                   test_fields={"accountSid": "TWILIO_ACCOUNT_SID", "authToken": "TWILIO_AUTH_TOKEN"},
                   status_key="twilio"),
        WizardStep("resend", "Resend", ResendStep, "Email out and in.",
                   test_url=f"{api}test/resend", test_fields={"apiKey": "RESEND_API_KEY"}, status_key="resend"),
        WizardStep("elevenlabs", "ElevenLabs", ElevenLabsStep, "Text to speech for voice messages and calls.",
                   test_url=f"{api}test/elevenlabs", test_fields={"apiKey": "ELEVENLABS_API_KEY"},
                   status_key="elevenlabs"),
        WizardStep("line", "LINE", LineStep, "The default LINE channel; an agent may carry its own.",
                   test_url=f"{api}test/line", test_fields={"channelAccessToken": "LINE_CHANNEL_ACCESS_TOKEN"},
                   status_key="line"),
        WizardStep("voice", "Voice defaults", VoiceStep, "Used when an agent has no greeting or language of its own."),
        WizardStep("mode", "Demo mode", ModeStep),
    ]


def wizard_initial() -> dict[str, Any]:
    """What the non-secret fields show: the running configuration."""
    return {
        "PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL,
        "TWILIO_ACCOUNT_SID": "",  # shown masked by GET /admin/api/status, never here
        "EMAIL_DEFAULT_DOMAIN": settings.EMAIL_DEFAULT_DOMAIN,
        "ELEVENLABS_DEFAULT_VOICE": settings.ELEVENLABS_DEFAULT_VOICE or "",
        "VOICE_DEFAULT_GREETING": settings.VOICE_DEFAULT_GREETING,
        "VOICE_DEFAULT_LANGUAGE": settings.VOICE_DEFAULT_LANGUAGE,
        "VOICE_AI_DISCLOSURE": settings.VOICE_AI_DISCLOSURE,
        "DEMO_MODE": settings.DEMO_MODE,
    }
