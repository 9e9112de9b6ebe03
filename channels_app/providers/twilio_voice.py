"""Twilio Programmable Voice: outbound calls, live call updates and transfers, and phone numbers.

Quirks: TwiML is built by the voice app and passed through verbatim (Twilio accepts up to 4,000
characters inline; longer documents need a `url`). Call status callbacks go to
PUBLIC_BASE_URL/webhooks/<agentId>/call-status for every progress event so our Call row can move forward.
A bought number gets SmsUrl, VoiceUrl and the voice StatusCallback pointed at our webhooks in the same
request, so there is no window in which it answers with Twilio's demo TwiML. Call prices are negative
strings and arrive only once the call is completed; `duration` is a string of seconds.
"""

from __future__ import annotations

from typing import Any

from channels_app.providers import twilio_client
from channels_app.providers.base import AvailableNumber, CallResult, CallStatusUpdate, PurchasedNumber, webhook_url

CALL_STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


def number_webhooks(agent_id: str) -> dict[str, str]:
    """The IncomingPhoneNumber fields that route a number's traffic to the agent's webhooks."""
    return {
        "sms_url": webhook_url(agent_id, "sms"),
        "sms_method": "POST",
        "voice_url": webhook_url(agent_id, "voice"),
        "voice_method": "POST",
        "status_callback": webhook_url(agent_id, "call-status"),
        "status_callback_method": "POST",
    }


class TwilioVoiceProvider:
    name = "twilio"

    def create_call(
        self,
        *,
        agent_id: str,
        from_number: str,
        to_number: str,
        twiml: str | None = None,
        url: str | None = None,
        status_callback_url: str | None = None,
        timeout_seconds: int | None = None,
    ) -> CallResult:
        if (twiml is None) == (url is None):
            raise ValueError("give exactly one of twiml or url")
        params: dict[str, Any] = {
            "to": to_number,
            "from_": from_number,
            "status_callback": status_callback_url or webhook_url(agent_id, "call-status"),
            "status_callback_method": "POST",
            "status_callback_event": CALL_STATUS_EVENTS,
        }
        if twiml is not None:
            params["twiml"] = twiml
        else:
            params["url"] = url
            params["method"] = "POST"
        if timeout_seconds is not None:
            params["timeout"] = timeout_seconds
        client = twilio_client.client("voice")
        with twilio_client.translate_errors():
            call = client.calls.create(**params)
        return self.result(call)

    def update_call(self, call_sid: str, *, twiml: str | None = None, status: str | None = None) -> CallResult:
        """Replace the live call's TwiML, or end it (status "completed") / cancel it while ringing ("canceled")."""
        params: dict[str, Any] = {}
        if twiml is not None:
            params["twiml"] = twiml
        if status is not None:
            params["status"] = status
        client = twilio_client.client("voice")
        with twilio_client.translate_errors():
            call = client.calls(call_sid).update(**params)
        return self.result(call)

    def transfer_call(self, call_sid: str, *, twiml: str) -> CallResult:
        """A transfer is a TwiML update (typically <Say/> then <Dial>) of the live call."""
        return self.update_call(call_sid, twiml=twiml)

    def fetch_call(self, call_sid: str) -> CallResult:
        client = twilio_client.client("voice")
        with twilio_client.translate_errors():
            call = client.calls(call_sid).fetch()
        return self.result(call)

    def result(self, call: Any) -> CallResult:
        duration = getattr(call, "duration", None)
        return CallResult(
            call_sid=str(call.sid),
            status=str(call.status or "queued"),
            provider=self.name,
            from_number=str(getattr(call, "_from", None) or ""),
            to_number=str(getattr(call, "to", None) or ""),
            duration_seconds=int(duration) if duration not in (None, "") else None,
            cost=twilio_client.parse_price(getattr(call, "price", None)),
        )

    def search_numbers(self, country: str, *, limit: int = 1, area_code: str | None = None) -> list[AvailableNumber]:
        params: dict[str, Any] = {"limit": limit, "sms_enabled": True, "voice_enabled": True}
        if area_code:
            params["area_code"] = area_code
        client = twilio_client.client("voice")
        with twilio_client.translate_errors():
            found = client.available_phone_numbers(country.upper()).local.list(**params)
        return [
            AvailableNumber(
                number=str(n.phone_number),
                country=str(n.iso_country or country.upper()),
                locality=str(n.locality or ""),
                region=str(n.region or ""),
            )
            for n in found
        ]

    def purchase_number(self, number: str, *, agent_id: str, country: str = "US") -> PurchasedNumber:
        client = twilio_client.client("voice")
        with twilio_client.translate_errors():
            bought = client.incoming_phone_numbers.create(
                phone_number=number, friendly_name=f"agent {agent_id}", **number_webhooks(agent_id)
            )
        return PurchasedNumber(number=str(bought.phone_number), sid=str(bought.sid), country=country.upper(), provider=self.name)

    def release_number(self, sid: str) -> None:
        client = twilio_client.client("voice")
        with twilio_client.translate_errors():
            client.incoming_phone_numbers(sid).delete()

    def configure_whatsapp_sender(self, sender_sid: str, *, agent_id: str) -> bool:
        from channels_app.providers.twilio_whatsapp import configure_sender

        return configure_sender(sender_sid, agent_id=agent_id)


def parse_call_status(form: dict[str, str]) -> CallStatusUpdate | None:
    """A Twilio call status callback (CallSid, CallStatus, CallDuration, ...) as a CallStatusUpdate.

    Twilio sends `CallDuration` (seconds, string) only with the final event and rarely a `Price`; the
    price usually appears later on the Call resource, so callers fall back to the price table.
    Returns None for a form without CallSid/CallStatus.
    """
    sid = form.get("CallSid")
    status = (form.get("CallStatus") or "").lower()
    if not sid or not status:
        return None
    duration = form.get("CallDuration") or form.get("Duration")
    return CallStatusUpdate(
        call_sid=sid,
        status=status,
        provider=twilio_client.PROVIDER,
        duration_seconds=int(duration) if duration and duration.isdigit() else None,
        cost=twilio_client.parse_price(form.get("Price")),
        error_code=form.get("ErrorCode") or None,
        answered_by=form.get("AnsweredBy") or None,
    )
