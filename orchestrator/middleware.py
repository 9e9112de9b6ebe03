"""JSON errors for `/api/`, `/admin/api/` and webhook paths, the 1 MB body cap (contract §1, §3), and the
browser-only middleware kept off machine-facing paths."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    ImproperlyConfigured,
    MiddlewareNotUsed,
    PermissionDenied,
    SuspiciousOperation,
)
from django.core.handlers.exception import convert_exception_to_response
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string

from orchestrator.errors import ApiError, json_error

logger = logging.getLogger(__name__)

DJANGO_ANSWERS = (BadRequest, SuspiciousOperation, PermissionDenied, Http404)
# Paths machines call: their errors are always §3 JSON. /mcp, /sse and /messages are the MCP gate's
# (orchestrator.mcp_transport); a near miss such as /mcp/x or /sse/ reaches Django and answers JSON too.
JSON_PREFIXES = ("/api/", "/admin/api/", "/health", "/webhooks/", "/mcp", "/sse", "/messages")


def wants_json_errors(path: str) -> bool:
    return path.startswith(JSON_PREFIXES)


# Bearer tokens or provider signatures, never a browser session. Not /admin/api/: it takes staff sessions.
MACHINE_PATH_PREFIXES = ("/api/", "/webhooks/", "/health")


class BrowserOnlyMiddleware:
    """`settings.BROWSER_MIDDLEWARE` (sessions, CSRF, `request.user`, messages, X-Frame-Options), run
    for every path except the machine-facing ones (`MACHINE_PATH_PREFIXES`).

    Those serve browsers only, and were half of the middleware's cost on a webhook (0.47 M of 0.92 M
    instructions). A machine path gets no session, no user, no CSRF check (every view there is
    csrf_exempt) and no X-Frame-Options; everything else, `/admin/` and the session-authenticated
    `/admin/api/` included, runs them in order, as if they stood here in MIDDLEWARE. The chain is
    picked by `request.path_info`, the path URL resolution sees. Built from the documented middleware
    protocol only: each inner middleware is constructed as Django constructs it, and its process_view
    (CSRF's) runs from this middleware's own.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        handler: Callable[[HttpRequest], Any] = get_response
        self.view_hooks: list[Callable[..., HttpResponse | None]] = []
        for path in reversed(settings.BROWSER_MIDDLEWARE):
            factory = import_string(path)
            if not getattr(factory, "sync_capable", True):
                raise ImproperlyConfigured(f"Middleware {path} cannot run synchronously.")
            try:
                instance = factory(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(instance, "process_exception") or hasattr(instance, "process_template_response"):
                raise ImproperlyConfigured(f"{path} has hooks BrowserOnlyMiddleware does not run; list it in MIDDLEWARE.")
            if hasattr(instance, "process_view"):
                self.view_hooks.insert(0, instance.process_view)
            handler = convert_exception_to_response(instance)
        self.browser_chain = handler

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(MACHINE_PATH_PREFIXES):
            return self.get_response(request)
        response: HttpResponse = self.browser_chain(request)
        return response

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        if request.path_info.startswith(MACHINE_PATH_PREFIXES):
            return None
        for hook in self.view_hooks:
            response = hook(request, view, args, kwargs)
            if response is not None:
                return response
        return None


class ApiErrorMiddleware:
    """Sync-only and last in MIDDLEWARE, on purpose: Django then runs every middleware outside it in
    sync mode inside one worker-thread hop. Both-capable middleware (MiddlewareMixin) in async mode
    hop to a thread for each process_request/process_response, which cost ~9 ms of CPU per request."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return json_error(
                ApiError(413, "payload_too_large", "Request bodies are limited to 1 MB; send media by URL.")
            )
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApiError):
            return json_error(exception)
        if isinstance(exception, DJANGO_ANSWERS):
            # A malformed request (too many form fields, a bad charset), a denial or a 404: Django answers
            # it with its 400/403/404 page, which __call__ turns into the §3 JSON body. Not a 500.
            return None
        if wants_json_errors(request.path):
            logger.exception("Unhandled error on %s", request.path)
            return JsonResponse({"error": "Internal server error.", "code": "internal_error"}, status=500)
        return None


class JsonErrorPagesMiddleware:
    """First in MIDDLEWARE: any HTML error page on a machine path leaves as §3 JSON, whatever DEBUG is.

    Django renders refusals raised before the inner middleware sees the request (a Host header not in
    ALLOWED_HOSTS, raised by CommonMiddleware) or that no view handles (the URL resolver, require_POST,
    the CSRF check) as HTML, and with DEBUG as its technical page, which lists settings. Only an
    outermost middleware sees every one of those responses."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if wants_json_errors(request.path) and _is_django_error_page(response):
            return _json_twin(request, response)
        return response


# Django's own refusals (URL resolver, require_GET, the CSRF check) render HTML; API clients get §3 JSON.
_DJANGO_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "The request is not valid."),
    403: ("forbidden", "This request is not allowed."),
    404: ("not_found", "Not found."),
    413: ("payload_too_large", "Request bodies are limited to 1 MB; send media by URL."),
    500: ("internal_error", "Internal server error."),
}


def _is_django_error_page(response: HttpResponse) -> bool:
    # Only HTML (or empty) bodies: a webhook's deliberate TwiML or plain-text answer is left alone.
    content_type = response.get("Content-Type", "")
    return (response.status_code in _DJANGO_ERRORS or response.status_code == 405) and (
        content_type.startswith("text/html") or not content_type
    )


def _json_twin(request: HttpRequest, response: HttpResponse) -> JsonResponse:
    if response.status_code == 405:
        return JsonResponse(
            {"error": f"Method {request.method} is not allowed here.", "code": "method_not_allowed"},
            status=405,
            headers={"Allow": response.get("Allow", "")},
        )
    code, message = _DJANGO_ERRORS[response.status_code]
    return JsonResponse({"error": message, "code": code}, status=response.status_code)
