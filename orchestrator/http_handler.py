"""Django over ASGI with the whole synchronous request in one hop to the worker pool.

Django's `ASGIHandler` runs an async middleware chain and gives every request a new thread for its
sync parts (views, ORM). On these 2-core machines that cost 10+ ms of CPU per request: a thread
start, a fresh database connection per request, and several thread hops. Our views and middleware
are all synchronous, so this handler loads the chain in sync mode (`load_middleware(is_async=False)`,
as Django's WSGI handler does) and runs request → response (`get_response`) in one call on
`orchestrator.workers`, whose threads keep their database connections. Reading the body and writing
the response stay on the event loop, which does nothing else for a request.

Streaming responses are sent from the loop and closed afterwards in the pool; everything else is
closed in the worker (that fires `request_finished`, Django's cue for connection upkeep) before it is
sent. Browser-only middleware is skipped on machine-facing paths by `BrowserOnlyMiddleware`
(orchestrator.middleware), inside the one chain.
"""

from __future__ import annotations

from typing import Any

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from orchestrator.operations import long_running_rest_paths
from orchestrator.workers import run_blocking, run_django_request


class PooledASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.long_paths = long_running_rest_paths()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP only, not {scope['type']!r}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            long = scope.get("path", "").rstrip("/") in self.long_paths
            response = await run_django_request(self.respond, scope, body_file, long=long)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await run_blocking(response.close)
        finally:
            body_file.close()

    def respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """The whole request, in a worker thread: its signals, the middleware chain, the view."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response: HttpResponseBase
        if request is None:
            assert error_response is not None
            response = error_response
        else:
            response = self.get_response(request)
        if not response.streaming:
            response.close()
        return response


def get_pooled_asgi_application() -> PooledASGIHandler:
    import django

    django.setup(set_prefix=False)
    return PooledASGIHandler()
