"""One operation, two faces: each operation has one input schema and one service call, and is
exposed both as a REST v1 endpoint and as an MCP tool, so the two can never disagree.

An operation module declares:

    class SendMessageInput(OperationInput):
        to: str
        ...

    @operation(path="send-message", method="POST", tool="comms_send_message", input_model=SendMessageInput,
               summary="Send an SMS, email, WhatsApp or LINE message")
    def send_message(principal: Principal, data: SendMessageInput) -> dict[str, Any]:
        return message_send(...)          # one service call, output shaped as contract §6.1

REST views are built by `rest_urlpatterns()`; MCP tools by `orchestrator.mcp_server` from `OPERATIONS`.
Handlers are synchronous (they use the ORM); async callers run them on `orchestrator.workers`' pools.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from agents.principals import Principal
from orchestrator.errors import ApiError


class OperationInput(BaseModel):
    """Base of every operation's input: camelCase on the wire, unknown fields ignored (contract §3)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class OneOf:
    """A text field whose allowed values a function gives, read when a value is checked and when a
    schema is made: the wire's choice is `Literal`'s (same `enum` in every schema, same refusal), but
    the list may grow after import (a channel registered by channels_app.channel_registry.register)."""

    def __init__(self, values: Callable[[], tuple[str, ...]]) -> None:
        self.values = values

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "enum": list(self.values())}

    def check(self, value: str) -> str:
        allowed = self.values()
        if value not in allowed:
            quoted = [repr(item) for item in allowed]
            expected = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value


def one_of(values: Callable[[], tuple[str, ...]]) -> Any:
    """`str` limited to `values()` (see OneOf); for mypy it is a plain str."""
    return Annotated[str, OneOf(values)]


InputT = TypeVar("InputT", bound=OperationInput)
Handler = Callable[[Principal, Any], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    name: str
    path: str
    method: Literal["GET", "POST"]
    tool: str | None
    input_model: type[OperationInput]
    handler: Handler
    summary: str
    description: str
    public: bool = False
    # Path parameters (e.g. "agentId" in agents/<agentId>/regenerate-token) are merged into the input.
    path_params: tuple[str, ...] = ()
    output_model: type[BaseModel] | None = None
    # Holds its thread for seconds (a long poll): runs on the long-call pool so that waiting callers
    # cannot take every worker thread from ordinary requests (orchestrator.workers).
    long_running: bool = False
    # May call a provider's API (live mode): the OpenAPI document lists 502/503 for it. Where the call runs
    # does not depend on it: every operation runs on the worker pool (orchestrator.workers).
    calls_providers: bool = False
    # Refusal statuses beyond those every operation of its kind answers (orchestrator.api_docs.error_statuses),
    # for the OpenAPI document: e.g. 409 for provision (agent_exists) and send-message (WhatsApp window).
    error_statuses: tuple[int, ...] = ()

    def parse(self, raw: dict[str, Any]) -> OperationInput:
        return parse_input(self.input_model, raw)

    def run(self, principal: Principal, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate raw wire input and call the service; raises ApiError on refusal."""
        return self.handler(principal, self.parse(raw))


OPERATIONS: dict[str, Operation] = {}


def operation(
    *,
    path: str,
    method: Literal["GET", "POST"],
    tool: str | None,
    input_model: type[InputT],
    summary: str,
    description: str = "",
    public: bool = False,
    path_params: tuple[str, ...] = (),
    output_model: type[BaseModel] | None = None,
    long_running: bool = False,
    calls_providers: bool = False,
    error_statuses: tuple[int, ...] = (),
) -> Callable[[Callable[[Principal, InputT], dict[str, Any]]], Callable[[Principal, InputT], dict[str, Any]]]:
    def register(
        handler: Callable[[Principal, InputT], dict[str, Any]],
    ) -> Callable[[Principal, InputT], dict[str, Any]]:
        name = handler.__name__
        if name in OPERATIONS:
            raise RuntimeError(f"operation {name} registered twice")
        OPERATIONS[name] = Operation(
            name=name,
            path=path,
            method=method,
            tool=tool,
            input_model=input_model,
            handler=handler,
            summary=summary,
            description=description or (handler.__doc__ or summary).strip(),
            public=public,
            path_params=path_params,
            output_model=output_model,
            long_running=long_running,
            calls_providers=calls_providers,
            error_statuses=error_statuses,
        )
        return handler

    return register


def long_running_rest_paths() -> frozenset[str]:
    """The REST paths whose requests run on the long-call pool."""
    load_operation_modules()
    return frozenset(f"/api/v1/{op.path}" for op in OPERATIONS.values() if op.long_running)


def operations_by_tool() -> dict[str, Operation]:
    load_operation_modules()
    return {op.tool: op for op in OPERATIONS.values() if op.tool}


def _field_with_nul(value: Any, location: str = "") -> str | None:
    """The first field whose text holds a NUL character, if any (keys count too)."""
    if isinstance(value, str):
        return location if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{location}.{key}" if location else str(key)
            if "\x00" in str(key):
                return where
            found = _field_with_nul(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _field_with_nul(item, f"{location}.{index}" if location else str(index))
            if found is not None:
                return found
    return None


def parse_input(model: type[InputT], raw: dict[str, Any]) -> InputT:
    # NUL is no text anyone writes, and PostgreSQL's text columns refuse it (a 500 after validation).
    field = _field_with_nul(raw)
    if field is not None:
        raise ApiError(400, "invalid_request", f"{field}: text must not contain NUL characters", field=field)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first.get("loc", ()))
        message = first.get("msg", "invalid value")
        if first.get("type") == "missing":
            message = f"{location} is required"
        elif location:
            message = f"{location}: {message}"
        raise ApiError(400, "invalid_request", message, field=location or None) from None


def render_text(result: dict[str, Any]) -> str:
    """The text rendering of a tool result, beside its structuredContent: indented JSON, non-ASCII as is.

    pydantic-core's encoder writes what `json.dumps(result, ensure_ascii=False, default=str, indent=2)`
    writes for JSON values (floats may read 1e-7 for 1e-07; a datetime reads as ISO 8601), in a tenth
    of the time: with an indent, `json.dumps` runs its pure-Python encoder (1.4 % of a tool call)."""
    return pydantic_core.to_json(result, indent=2, fallback=str).decode()


# Modules that declare operations; imported once so OPERATIONS is complete before URLs or tools are built.
OPERATION_MODULES: list[str] = [
    "orchestrator.ops_health",
    "channels_app.ops_messaging",
    "agents.ops_agents",
    "channels_app.ops_inbound",
    "voice.ops_calls",
    "voice.ops_live",
]


def load_operation_modules() -> None:
    import importlib

    for module in OPERATION_MODULES:
        importlib.import_module(module)
