"""Provision and deprovision an agent's channels (contract §6.1, issue 4 item 5).

Provisioning buys a number (live: Twilio search + purchase with our webhook URLs; demo: the sandbox
provider's fictional range), then creates the agent, its addresses and its WhatsApp sender claim in one
transaction. Only the purchase happens outside the database, so a failure after it releases the number
and the rollback removes everything else: nothing is left half-provisioned.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydantic import Field

from agents.models import (
    AddressKind,
    Agent,
    AgentStatus,
    ChannelAddress,
    Organization,
    PhoneNumber,
    WhatsAppSender,
)
from agents.services import (
    AgentAddresses,
    agent_create,
    agent_deactivate,
    agent_id_check_available,
    default_email_address,
)
from channels_app.channel_registry import ChannelSpec, capabilities, channels, resolve
from channels_app.destinations import DestinationRefused, callback_url_check
from channels_app.providers.base import ProviderError, ProviderNotConfigured, PurchasedNumber, webhook_url
from orchestrator.errors import ApiError
from orchestrator.operations import OperationInput, one_of

logger = logging.getLogger(__name__)

# The two status callbacks serve every channel; each channel's own inbound route is its registry entry's.
STATUS_WEBHOOK_ROUTES = {"callStatus": "call-status", "messageStatus": "message-status"}


if TYPE_CHECKING:
    Capability = str
else:
    # The registry's capability names: provision's schema (REST, MCP, OpenAPI) enumerates exactly those.
    Capability = one_of(capabilities)


class LineCredentialsInput(OperationInput):
    channel_access_token: str = ""
    channel_secret: str = ""


class ProvisionInput(OperationInput):
    # The patterns below are checked by the provisioning service, with its own messages; they are stated
    # here for the OpenAPI document. An empty agentId counts as absent (one is generated).
    agent_id: str | None = Field(default=None, description="Generated when absent. Letters, digits, - and _.",
                                 json_schema_extra={"pattern": r"^([A-Za-z0-9][A-Za-z0-9_\-]{0,63})?$"})
    org_id: str | None = Field(default=None, description="Orchestrator token only; default organization if absent.")
    display_name: str = Field(min_length=1, max_length=200, json_schema_extra={"pattern": r"\S"},
                              description="Not blank.")
    capabilities: list[Capability] = Field(min_length=1)
    country: str = Field(default="US", json_schema_extra={"pattern": "^[A-Za-z]{2}$"},
                         description="ISO 3166 two-letter code of the number's country.")
    greeting: str = ""
    system_prompt: str = ""
    voice: str = ""
    language: str = ""
    email_domain: str | None = None
    callback_url: str = ""
    line: LineCredentialsInput | None = None

    def line_credentials(self) -> LineCredentialsInput:
        return self.line or LineCredentialsInput()


def webhook_urls(agent_id: str) -> dict[str, str]:
    """provision's `webhookUrls`: each channel's inbound webhook under its capability, then the status callbacks."""
    routes = {**{spec.capability: spec.webhook_route for spec in channels()}, **STATUS_WEBHOOK_ROUTES}
    return {name: webhook_url(agent_id, route) for name, route in routes.items()}


def _provider_error(error: ProviderError | ProviderNotConfigured) -> ApiError:
    from channels_app.services import provider_api_error

    return provider_api_error(error)


def _buy_number(*, agent_id: str, country: str) -> PurchasedNumber:
    """Search and buy one number for the country, webhooks pointed at this agent."""
    from channels_app.providers.registry import telephony_provider

    try:
        telephony = telephony_provider()
        available = telephony.search_numbers(country, limit=1)
        if not available:
            raise ApiError(409, "number_unavailable", f"No phone number is available to buy in {country}.",
                           field="country", hint="Try another country, or add numbers to the pool in the admin.")
        return telephony.purchase_number(available[0].number, agent_id=agent_id, country=country)
    except (ProviderError, ProviderNotConfigured) as exc:
        raise _provider_error(exc) from None


def _release_number(sid: str) -> None:
    from channels_app.providers.registry import telephony_provider

    telephony_provider().release_number(sid)


def _validate(request: ProvisionInput) -> None:
    if not request.display_name.strip():
        raise ApiError(400, "invalid_request", "displayName must not be empty.", field="displayName")
    if not request.capabilities:
        raise ApiError(400, "invalid_request", "Ask for at least one capability.", field="capabilities")
    unknown = [c for c in request.capabilities if c not in capabilities()]
    if unknown:
        raise ApiError(400, "invalid_request", f"Unknown capability {unknown[0]!r}; use {', '.join(capabilities())}.",
                       field="capabilities")
    # ASCII letters only: str.isalpha() would let "ÄÖ" through to the number search.
    if not re.fullmatch(r"[A-Za-z]{2}", request.country):
        raise ApiError(400, "invalid_request", "country is a two-letter ISO code such as US.", field="country")
    if "line" in request.capabilities and not settings.DEMO_MODE and not request.line_credentials().channel_access_token \
            and not settings.LINE_CHANNEL_ACCESS_TOKEN:
        raise ApiError(400, "invalid_request", "LINE needs line.channelAccessToken and line.channelSecret "
                       "(or a default LINE channel in LINE_CHANNEL_ACCESS_TOKEN).", field="line")
    if request.callback_url:
        # No callbacks to loopback, private or metadata addresses (SSRF); every delivery checks again.
        try:
            callback_url_check(request.callback_url)
        except DestinationRefused as exc:
            raise ApiError(400, "invalid_request", str(exc), field="callbackUrl") from None


def _email_address(agent_id: str, email_domain: str | None) -> str:
    if not email_domain:
        return default_email_address(agent_id)
    from channels_app.addresses import normalize_email

    return normalize_email(f"{agent_id}@{email_domain}", field="emailDomain")


def _claim_whatsapp_sender(agent: Agent) -> WhatsAppSender:
    """Take a free sender from the pool; a conditional UPDATE so two provisions never share one."""
    for candidate in WhatsAppSender.objects.filter(agent__isnull=True).order_by("pk").values_list("pk", flat=True)[:5]:
        if WhatsAppSender.objects.filter(pk=candidate, agent__isnull=True).update(agent=agent):
            return WhatsAppSender.objects.get(pk=candidate)
    raise ApiError(409, "whatsapp_sender_unavailable", "No free WhatsApp sender in the pool.",
                   field="capabilities", hint="Add one with POST /admin/api/whatsapp-senders, or provision without "
                   "whatsapp.")


def _demo_whatsapp_sender(number: str | None, country: str) -> None:
    """Demo mode has no real senders: when the pool is empty, a sandbox number (the agent's own when it
    has one) becomes one."""
    if WhatsAppSender.objects.filter(agent__isnull=True).exists():
        return
    if number is None:
        from channels_app.providers.sandbox import sandbox_numbers

        taken = set(WhatsAppSender.objects.values_list("phone_number", flat=True))
        number = next((n for n in sandbox_numbers(country) if n not in taken), None)
    if number:
        WhatsAppSender.objects.get_or_create(phone_number=number, defaults={"sender_sid": "sandbox"})


def agent_provision(*, organization: Organization, request: ProvisionInput) -> dict[str, Any]:
    """Create an agent with the channels asked for; returns the §6.1 provision body (token shown once)."""
    _validate(request)
    if request.agent_id:
        # Before anything is bought, and in the same words whichever organization holds the id.
        agent_id_check_available(agent_id=request.agent_id)
    wants_whatsapp = "whatsapp" in request.capabilities
    if wants_whatsapp and not settings.DEMO_MODE and not WhatsAppSender.objects.filter(agent__isnull=True).exists():
        # Checked before buying a number: a refusal should not cost a purchase and a release.
        raise ApiError(409, "whatsapp_sender_unavailable", "No free WhatsApp sender in the pool.",
                       field="capabilities", hint="Add one with POST /admin/api/whatsapp-senders.")
    from agents.services import validate_identifier

    agent_id = validate_identifier(request.agent_id, field="agentId") if request.agent_id else None
    if agent_id is None:
        import secrets

        agent_id = "agent-" + secrets.token_hex(4)
    wants_phone = any(spec.address_kind == AddressKind.PHONE for spec in _requested(request))
    purchased = _buy_number(agent_id=agent_id, country=request.country.upper()) if wants_phone else None
    try:
        return _create_agent(organization=organization, request=request, agent_id=agent_id, purchased=purchased)
    except BaseException:
        if purchased is not None:
            try:
                _release_number(purchased.sid)
            except Exception:  # the original failure matters more; an operator can release by hand
                logger.exception("Could not release %s after a failed provision of %s", purchased.number, agent_id)
        raise


def _requested(request: ProvisionInput) -> list[ChannelSpec]:
    return [spec for spec in channels() if spec.capability in request.capabilities]


def agent_id_address(*, agent_id: str, request: ProvisionInput) -> str:
    """The address of a channel whose provider knows the agent by our id (LINE): the agent id itself.
    The registry's default address factory."""
    return agent_id


# Address kinds provisioning makes itself: a bought number, a pool sender (claimed once the agent exists),
# an address on the requested domain. Every other kind comes from its channel's address factory.
OWN_ADDRESS_KINDS = frozenset({AddressKind.PHONE, AddressKind.WHATSAPP, AddressKind.EMAIL})


def _entry(spec: ChannelSpec, address: str, status: str) -> dict[str, Any]:
    """A channel's entry in the `channels` object of provision and channel-status."""
    return {spec.address_field: address, "status": status} if spec.address_field else {"status": status}


@transaction.atomic
def _create_agent(
    *, organization: Organization, request: ProvisionInput, agent_id: str, purchased: PurchasedNumber | None
) -> dict[str, Any]:
    requested = _requested(request)
    kinds = {spec.address_kind for spec in requested}
    email = _email_address(agent_id, request.email_domain) if AddressKind.EMAIL in kinds else None
    # One address per kind, from the first requested channel of that kind.
    others: dict[str, str] = {}
    for spec in requested:
        if spec.address_kind not in OWN_ADDRESS_KINDS and spec.address_kind not in others:
            address = resolve(spec.address_factory)(agent_id=agent_id, request=request)
            if address:
                others[spec.address_kind] = address
    agent, issued, callback_secret = agent_create(
        organization=organization,
        display_name=request.display_name.strip(),
        agent_id=agent_id,
        addresses=AgentAddresses(phone=purchased.number if purchased else None, email=email, others=others),
        greeting=request.greeting,
        system_prompt=request.system_prompt,
        voice=request.voice,
        language=request.language,
        callback_url=request.callback_url,
        line_channel_access_token=request.line_credentials().channel_access_token,
        line_channel_secret=request.line_credentials().channel_secret,
    )
    if purchased is not None:
        PhoneNumber.objects.update_or_create(
            number=purchased.number,
            defaults={"agent": agent, "country": purchased.country, "provider_sid": purchased.sid,
                      "is_sandbox": settings.DEMO_MODE},
        )
        ChannelAddress.objects.filter(agent=agent, kind=AddressKind.PHONE).update(provider_sid=purchased.sid)
    addresses = {**others, AddressKind.PHONE: purchased.number if purchased else None, AddressKind.EMAIL: email}
    if AddressKind.WHATSAPP in kinds:
        if settings.DEMO_MODE:
            _demo_whatsapp_sender(purchased.number if purchased else None, request.country.upper())
        sender = _claim_whatsapp_sender(agent)
        addresses[AddressKind.WHATSAPP] = sender.phone_number
        ChannelAddress.objects.create(agent=agent, kind=AddressKind.WHATSAPP, address=sender.phone_number,
                                      provider_sid=sender.sender_sid)
    return {
        "success": True,
        "agentId": agent.pk,
        "orgId": organization.pk,
        "displayName": agent.display_name,
        "securityToken": issued.token,
        "callbackSecret": callback_secret,
        "channels": {
            spec.channels_key: _entry(spec, address, "active")
            if spec in requested and (address := addresses.get(spec.address_kind)) else None
            for spec in channels()
        },
        "webhookUrls": webhook_urls(agent.pk),
    }


def agent_deprovision(*, agent: Agent, release_number: bool = True) -> dict[str, Any]:
    """Release the agent's number (or keep it in the pool), return its WhatsApp sender, revoke its tokens."""
    numbers = list(PhoneNumber.objects.filter(agent=agent))
    released = False
    if release_number:
        for number in numbers:
            if number.provider_sid:
                try:
                    _release_number(number.provider_sid)
                except (ProviderError, ProviderNotConfigured) as exc:
                    # Nothing changed yet: the agent stays provisioned and the caller can retry.
                    raise _provider_error(exc) from None
            released = True
    with transaction.atomic():
        if release_number:
            PhoneNumber.objects.filter(pk__in=[n.pk for n in numbers]).delete()
        else:
            PhoneNumber.objects.filter(agent=agent).update(agent=None)
        WhatsAppSender.objects.filter(agent=agent).update(agent=None)
        ChannelAddress.objects.filter(agent=agent, released_at__isnull=True).update(released_at=timezone.now(),
                                                                                   status="released")
        revoked = agent_deactivate(agent=agent)
    return {"success": True, "agentId": agent.pk, "status": AgentStatus.DEPROVISIONED, "numberReleased": released,
            "revokedTokens": revoked}


def agent_channel_status(*, agent: Agent) -> dict[str, Any]:
    """The §6.1 channel-status body: the agent's addresses, blocks and whether a session is live."""
    addresses = {
        kind: address
        for kind, address in ChannelAddress.objects.filter(agent=agent, released_at__isnull=True)
        .order_by("created_at")
        .values_list("kind", "address")
    }
    deprovisioned = agent.status == AgentStatus.DEPROVISIONED
    state = "deprovisioned" if deprovisioned else "active"
    entries: dict[str, dict[str, Any] | None] = {}
    for spec in channels():
        address = addresses.get(spec.address_kind)
        if address:
            entries[spec.channels_key] = _entry(spec, address, state)
        elif spec.default_address and not deprovisioned:
            # Email works before any address is provisioned: <agentId>@EMAIL_DEFAULT_DOMAIN.
            entries[spec.channels_key] = _entry(spec, resolve(spec.default_address)(agent.pk), "default")
        else:
            entries[spec.channels_key] = None
    return {
        "agentId": agent.pk,
        "displayName": agent.display_name,
        "status": agent.status,
        "blockedChannels": list(agent.blocked_channels or []),
        "channels": entries,
        "connected": False if deprovisioned else agent_connected(agent.pk),
    }


def agent_connected(agent_id: str) -> bool:
    """Whether the agent has a live MCP session in any process (the agent registry's answer)."""
    from orchestrator.agent_registry import is_agent_connected_sync

    try:
        return is_agent_connected_sync(agent_id)
    except Exception:
        logger.warning("Agent registry lookup failed for %s", agent_id, exc_info=True)
        return False
