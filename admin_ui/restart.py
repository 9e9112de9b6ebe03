"""`POST /admin/api/deploy`: the server restarts itself in place with the settings saved in `.env`.

How (README, "Deploy"): the deploy view answers first; this module then sends the process SIGTERM,
which uvicorn takes as a graceful shutdown. uvicorn stops listening (the port is free), lets in-flight
requests finish (the deploy answer among them), and sends the ASGI `lifespan.shutdown` event; after the
shutdown hooks have run, the process replaces itself with `os.execv` on the same interpreter and the
same command line (`sys.orig_argv`), so it re-reads the environment and `.env` from scratch, binds the
port again and comes back with a fresh uptime. The process id does not change, so `make run`'s shell,
which waits on it, and the delivery worker it started beside it carry on untouched.

A request that never ends (an open SSE stream) would hold a graceful shutdown for ever, so after
GRACE_SECONDS the process re-executes anyway; sockets are close-on-exec, so nothing leaks into the new
image. Only a server that sent `lifespan.startup` is restarted this way (uvicorn, as `make run` starts
it): under daphne or inside a test process deploy says it cannot restart, and nothing is signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from orchestrator.lifespan import after_shutdown, served_with_lifespan

logger = logging.getLogger(__name__)

GRACE_SECONDS = 10.0

_requested = threading.Event()
_exec_lock = threading.Lock()


def can_restart() -> bool:
    return served_with_lifespan()


def schedule() -> None:
    """Shut the server down gracefully and start it again; returns at once."""
    if _requested.is_set():
        return
    _requested.set()
    after_shutdown(reexec)
    logger.warning("Deploy: restarting with the saved settings")
    threading.Thread(target=_force_after_grace, name="deploy-restart", daemon=True).start()
    os.kill(os.getpid(), signal.SIGTERM)


def _force_after_grace() -> None:
    # Event.wait as a timer: the process image is replaced long before this returns in the normal case.
    threading.Event().wait(GRACE_SECONDS)
    logger.warning("Deploy: graceful shutdown took longer than %.0f s; restarting now", GRACE_SECONDS)
    reexec()


def reexec() -> None:
    """Replace this process with a fresh run of the same command line."""
    with _exec_lock:
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execv(sys.executable, sys.orig_argv)  # noqa: S606 - our own interpreter and command line
        except OSError:
            logger.exception("Deploy: could not restart %s", sys.executable)
            os._exit(1)
