"""Django over ASGI with the whole synchronous request in one hop to the worker pool.

Django's `ASGIHandler` runs an async middleware chain and gives every request a new thread for its
sync parts (views, ORM). On these 2-core machines that cost 10+ ms of CPU per request: a thread
start, a fresh database connection per request, and several thread hops. Our views and middleware
are all synchronous, so this handler loads the chain in sync mode (as Django's WSGI handler does)
and runs request → response in one call on `orchestrator.workers`, whose threads keep their
database connections. Reading the body and writing the response stay on the event loop.

Streaming responses are sent from the loop and closed afterwards; everything else is closed in the
worker (that fires `request_finished`, Django's cue for connection upkeep) before it is sent.

Two middleware chains. Machine-facing paths (`MACHINE_PATH_PREFIXES`: `/api/` with bearer tokens,
`/webhooks/` with provider signatures, `/health*`) run `settings.API_MIDDLEWARE`, without sessions,
Django auth (`request.user`), messages, CSRF and X-Frame-Options: those serve browsers only and were
half of the chain's cost on a webhook (0.47 M of 0.92 M instructions). Everything else, `/admin/` and
the session-authenticated `/admin/api/` included, runs `settings.MIDDLEWARE`, loaded by Django as
before. The chain is chosen per request by `request.path_info` (the path URL resolution sees); URL
resolution, `request_started`, `request_finished` and the connection upkeep around them are the same
for both. Django's test client runs `MIDDLEWARE` on every path;
`tests/orchestrator/test_middleware_chains.py` tests the split over a real socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed, RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpResponseBase
from django.urls import set_script_prefix
from django.utils.module_loading import import_string

from orchestrator.operations import long_running_rest_paths, operations_by_rest_path, runs_on_the_loop
from orchestrator.workers import run_blocking, run_django_request

# Bearer tokens or provider signatures, never a browser session. Not /admin/api/: it takes staff sessions.
MACHINE_PATH_PREFIXES = ("/api/", "/webhooks/", "/health")

# Provider webhooks whose handling waits on nothing but the database, live mode included: Twilio's and
# LINE's carry the whole event (so do Twilio's call status and the call-on-behalf secretary's answers).
# Resend's does not: the email's body is fetched from Resend's API.
LOCAL_WEBHOOKS = frozenset({"sms", "whatsapp", "message-status", "line", "call-status", "secretary"})


class SyncMiddlewareChain(base.BaseHandler):
    """Django's request handling with a sync middleware chain from the given paths.

    `BaseHandler.load_middleware` reads `settings.MIDDLEWARE` only; this is its sync branch for
    sync-capable middleware, over another list. `get_response` and the view machinery are Django's.
    """

    def __init__(self, middleware_paths: Sequence[str]) -> None:
        super().__init__()
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # `_get_response` (URL resolution, view middleware, the view) is missing from django-stubs.
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(middleware_paths):
            middleware = import_string(path)
            if not getattr(middleware, "sync_capable", True):
                raise ImproperlyConfigured(f"Middleware {path} cannot run synchronously.")
            try:
                instance = middleware(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, self.adapt_method_mode(False, instance.process_view))
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(
                    self.adapt_method_mode(False, instance.process_template_response)
                )
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(self.adapt_method_mode(False, instance.process_exception))
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


class PooledASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.machine_handler = SyncMiddlewareChain(settings.API_MIDDLEWARE)
        self.long_paths = long_running_rest_paths()
        self.operations = operations_by_rest_path()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP only, not {scope['type']!r}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            path = scope.get("path", "").rstrip("/")
            response = await run_django_request(
                self._respond, scope, body_file, long=path in self.long_paths, local=self._is_local(path)
            )
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await run_blocking(response.close)
        finally:
            body_file.close()

    def _is_local(self, path: str) -> bool:
        """Whether the request waits on nothing but the database (orchestrator.workers.run_local)."""
        operation = self.operations.get(path)
        if operation is not None:
            return runs_on_the_loop(operation)
        if path == "/health":
            return True
        if not path.startswith("/webhooks/"):
            return False
        # /webhooks/<agentId>/<kind>; in DEMO_MODE every provider is the sandbox, Resend's included.
        parts = path.split("/")
        return len(parts) == 4 and (settings.DEMO_MODE or parts[3] in LOCAL_WEBHOOKS)

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response: HttpResponseBase
        if request is None:
            assert error_response is not None
            response = error_response
        else:
            machine = request.path_info.startswith(MACHINE_PATH_PREFIXES)
            response = (self.machine_handler if machine else self).get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
        if not response.streaming:
            response.close()
        return response


def get_pooled_asgi_application() -> PooledASGIHandler:
    import django

    django.setup(set_prefix=False)
    return PooledASGIHandler()
