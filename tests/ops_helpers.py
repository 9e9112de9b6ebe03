"""Helpers for the operation tests: a REST client that speaks Bearer JSON, and agents with numbers."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from agents.models import AddressKind, Agent, ChannelAddress, Organization
from agents.services import AgentAddresses, agent_create


class Api:
    """POST/GET /api/v1/<path> with a bearer token; returns (status, json body)."""

    def __init__(self, token: str | None = None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self, token: str | None) -> dict[str, str]:
        chosen = token if token is not None else self.token
        return {"HTTP_AUTHORIZATION": f"Bearer {chosen}"} if chosen else {}

    def post(self, path: str, body: dict[str, Any] | None = None, *, token: str | None = None) -> tuple[int, Any]:
        response = self.client.post(
            f"/api/v1/{path}", data=json.dumps(body or {}), content_type="application/json", **self._headers(token)
        )
        return response.status_code, _json(response)

    def get(self, path: str, params: dict[str, Any] | None = None, *, token: str | None = None) -> tuple[int, Any]:
        response = self.client.get(f"/api/v1/{path}", data=params or {}, **self._headers(token))
        return response.status_code, _json(response)


def _json(response: Any) -> Any:
    if response.get("Content-Type", "").startswith("application/json"):
        return response.json()
    return response.content.decode()


def agent_with_numbers(
    agent_id: str,
    organization: Organization,
    *,
    phone: str | None = "+14155550100",
    whatsapp: str | None = None,
    line: bool = False,
    **kwargs: Any,
) -> tuple[Agent, str]:
    agent, issued, _secret = agent_create(
        organization=organization,
        display_name=agent_id.title(),
        agent_id=agent_id,
        addresses=AgentAddresses(phone=phone, whatsapp=whatsapp, email=f"{agent_id}@agents.example.com", line=line),
        **kwargs,
    )
    return agent, issued.token


def address_of(agent: Agent, kind: str = AddressKind.PHONE) -> str | None:
    return ChannelAddress.objects.filter(agent=agent, kind=kind, released_at__isnull=True).values_list(
        "address", flat=True
    ).first()
