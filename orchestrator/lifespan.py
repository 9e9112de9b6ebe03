"""ASGI lifespan: run start-up and shut-down hooks when the server sends lifespan events.

Daphne sends none, so every hook must also be safe to start lazily on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

ShutdownHook = Callable[[], Awaitable[None]]
StartupHook = Callable[[], None]
_shutdown_hooks: list[ShutdownHook] = []
# Run after every shutdown hook, in order; a hook may not return (admin_ui.restart re-executes the process).
_final_hooks: list[Callable[[], None]] = []
_started = False


def served_with_lifespan() -> bool:
    """Whether this process's server sent `lifespan.startup` (uvicorn does; daphne and the tests' servers do
    not), so that it will also send `lifespan.shutdown` when it stops."""
    return _started


def _mark_started() -> None:
    global _started
    _started = True


def after_shutdown(hook: Callable[[], None]) -> None:
    _final_hooks.append(hook)
_startup_hooks: list[StartupHook] = []


def on_startup(hook: StartupHook) -> None:
    """Run `hook` on the server's event loop when it starts (uvicorn). Daphne sends no lifespan events,
    so a hook must also be started lazily by whatever needs it."""
    if hook not in _startup_hooks:
        _startup_hooks.append(hook)


def run_startup_hooks() -> None:
    for hook in list(_startup_hooks):
        try:
            hook()
        except Exception:
            logger.exception("Startup hook failed")


def on_shutdown(hook: ShutdownHook) -> None:
    _shutdown_hooks.append(hook)


async def run_shutdown_hooks() -> None:
    while _shutdown_hooks:
        hook = _shutdown_hooks.pop()
        try:
            await hook()
        except Exception:
            logger.exception("Shutdown hook failed")


class LifespanApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _mark_started()
                run_startup_hooks()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await run_shutdown_hooks()
                for final_hook in list(_final_hooks):
                    final_hook()
                await send({"type": "lifespan.shutdown.complete"})
                return
