"""JSON errors for `/api/`, `/admin/api/` and webhook paths, and the 1 MB body cap (contract §1, §3)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from orchestrator.errors import ApiError, json_error

logger = logging.getLogger(__name__)

JSON_PREFIXES = ("/api/", "/admin/api/", "/health", "/webhooks/")


def wants_json_errors(path: str) -> bool:
    return path.startswith(JSON_PREFIXES)


class ApiErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return json_error(
                ApiError(413, "payload_too_large", "Request bodies are limited to 1 MB; send media by URL.")
            )
        response = self.get_response(request)
        if wants_json_errors(request.path) and response.status_code in (404, 405) and not _is_json(response):
            if response.status_code == 404:
                return JsonResponse({"error": "Not found.", "code": "not_found"}, status=404)
            return JsonResponse(
                {"error": f"Method {request.method} is not allowed here.", "code": "method_not_allowed"},
                status=405,
                headers={"Allow": response.get("Allow", "")},
            )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApiError):
            return json_error(exception)
        if wants_json_errors(request.path):
            logger.exception("Unhandled error on %s", request.path)
            return JsonResponse({"error": "Internal server error.", "code": "internal_error"}, status=500)
        return None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")
