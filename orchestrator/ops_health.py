"""comms_ping: the /api/v1/health twin, plus who is calling."""

from __future__ import annotations

from typing import Any

from agents.principals import Principal
from orchestrator.health import health_body
from orchestrator.operations import OperationInput, operation


class PingInput(OperationInput):
    pass


@operation(
    path="health",
    method="GET",
    tool="comms_ping",
    input_model=PingInput,
    summary="Check that the server is up and see who you are connected as",
    public=True,
)
def ping(principal: Principal | None, data: PingInput) -> dict[str, Any]:
    body = health_body()
    return {
        "status": body["status"],
        "uptime": body["uptime"],
        "version": body["version"],
        "demoMode": body["demoMode"],
        "identity": principal.describe() if principal else None,
        "agentId": principal.agent_id if principal else None,
    }
