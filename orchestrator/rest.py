"""REST v1 face of the operations: one thin APIView per operation (contract §6.1)."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.authentication import OptionalBearerTokenAuthentication
from agents.principals import Principal
from orchestrator.api_docs import error_responses, query_parameters
from orchestrator.operations import OPERATIONS, Operation, load_operation_modules


class JsonNegotiation(DefaultContentNegotiation):
    """The operations answer JSON only. A request that plainly accepts it (no Accept header, `*/*` or
    `application/json`: what API clients and MCP hosts send) skips DRF's parsing of the Accept header,
    a measurable share of a request's CPU; anything else is negotiated as before (e.g. a client that
    accepts only text/html gets 406)."""

    PLAIN_ACCEPTS = frozenset({"", "*/*", "application/json"})

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        if (
            not format_suffix
            and len(renderers) == 1
            and request.META.get("HTTP_ACCEPT", "") in self.PLAIN_ACCEPTS
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)


def _raw_input(op: Operation, request: Request, kwargs: dict[str, Any]) -> dict[str, Any]:
    if op.method == "GET":
        raw: dict[str, Any] = {key: request.query_params.get(key) for key in request.query_params}
    else:
        data = request.data
        if not isinstance(data, dict):
            from orchestrator.errors import ApiError

            raise ApiError(400, "invalid_request", "The body must be a JSON object.")
        raw = dict(data)
    raw.update(kwargs)
    return raw


def view_for(op: Operation) -> type[APIView]:
    def handle(self: APIView, request: Request, **kwargs: Any) -> Response:
        principal = request.auth if isinstance(request.auth, Principal) else None
        return Response(op.handler(principal, op.parse(_raw_input(op, request, kwargs))))  # type: ignore[arg-type]

    schema_kwargs: dict[str, Any] = {"summary": op.summary, "description": op.description, "operation_id": op.name}
    if op.method == "POST":
        schema_kwargs["request"] = op.input_model
    else:
        schema_kwargs["parameters"] = query_parameters(op)
    schema_kwargs["responses"] = {200: op.output_model or dict, **error_responses(op)}
    attrs: dict[str, Any] = {
        op.method.lower(): extend_schema(**schema_kwargs)(handle),
        "content_negotiation_class": JsonNegotiation,
    }
    if op.public:
        # Anonymous callers are welcome; a token, if sent, is checked and identifies the caller.
        attrs["authentication_classes"] = [OptionalBearerTokenAuthentication]
        attrs["permission_classes"] = [AllowAny]
    return type(f"{op.name.title().replace('_', '')}View", (APIView,), attrs)


def rest_urlpatterns() -> list[URLPattern]:
    load_operation_modules()
    return [path(op.path, view_for(op).as_view(), name=f"api-{op.name}") for op in OPERATIONS.values()]
