"""Who is calling, and the tenant checks every endpoint goes through (contract §2)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.errors import ApiError


class Role(StrEnum):
    SUPER_ADMIN = "super_admin"
    ORG_ADMIN = "org_admin"
    AGENT = "agent"


@dataclass(frozen=True)
class Principal:
    role: Role
    org_id: str | None = None
    agent_id: str | None = None
    token_id: int | None = None

    @property
    def is_super_admin(self) -> bool:
        return self.role is Role.SUPER_ADMIN

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.SUPER_ADMIN, Role.ORG_ADMIN)

    @property
    def key(self) -> str:
        """A stable identity, used to pin MCP sessions to the principal that opened them."""
        return f"{self.role.value}:{self.org_id or '*'}:{self.agent_id or '*'}"

    def describe(self) -> dict[str, str | None]:
        return {"role": self.role.value, "orgId": self.org_id, "agentId": self.agent_id}

    # Django REST framework treats request.user as authenticated when this is true.
    is_authenticated = True


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "This operation needs an org or orchestrator token.")


def resolve_agent_id(principal: Principal, agent_id: str | None) -> str:
    """The agent an operation acts on: taken from an agent token, named explicitly by admins."""
    if principal.role is Role.AGENT:
        if agent_id and agent_id != principal.agent_id:
            raise ApiError(403, "forbidden", "An agent token acts only on its own agent.", field="agentId")
        assert principal.agent_id is not None
        return principal.agent_id
    if not agent_id:
        raise ApiError(400, "missing_agent_id", "Name the agent with agentId.", field="agentId")
    return agent_id
