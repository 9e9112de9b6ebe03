"""The one error type of the API layer and its JSON shape (contract §3)."""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal a client can act on: HTTP status, snake_case code, human sentence, extra fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
        hint: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.hint = hint
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after
        if self.hint is not None:
            body["hint"] = self.hint
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def json_error(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for key, value in error.headers().items():
        response[key] = value
    return response


def _first_validation_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            field = f"{prefix}.{name}" if prefix and name else (name or prefix)
            return _first_validation_error(value, field)
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    return (prefix or None), str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every refusal leaves as `{error, code, ...}`."""
    if isinstance(exc, ApiError):
        return Response(exc.body(), status=exc.status, headers=exc.headers())
    if isinstance(exc, Http404):
        return Response({"error": "Not found.", "code": "not_found"}, status=404)
    if isinstance(exc, drf_exceptions.ValidationError):
        field, message = _first_validation_error(exc.detail)
        body = {"error": message if not field else f"{field}: {message}", "code": "invalid_request"}
        if field:
            body["field"] = field
        return Response(body, status=400)
    if isinstance(exc, drf_exceptions.ParseError):
        return Response({"error": "The request body is not valid JSON.", "code": "invalid_request"}, status=400)
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return Response(
            {"error": "Send the body as application/json.", "code": "invalid_request"}, status=415
        )
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return Response({"error": "Send Authorization: Bearer <token>.", "code": "missing_token"}, status=401)
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        return Response({"error": "The token is not valid.", "code": "invalid_token"}, status=401)
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return Response({"error": "This token may not do that.", "code": "forbidden"}, status=403)
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        method = context["request"].method
        return Response({"error": f"Method {method} is not allowed here.", "code": "method_not_allowed"}, status=405)
    if isinstance(exc, drf_exceptions.Throttled):
        # DRF sets `wait` on Throttled at runtime; the stubs do not declare it.
        wait = int(getattr(exc, "wait", None) or 1)
        return Response(
            {"error": "Too many requests.", "code": "rate_limited", "retryAfter": wait},
            status=429,
            headers={"Retry-After": str(wait)},
        )
    if isinstance(exc, drf_exceptions.APIException):
        return Response({"error": str(exc.detail), "code": exc.default_code}, status=exc.status_code)
    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "view")
    return Response({"error": "Internal server error.", "code": "internal_error"}, status=500)
