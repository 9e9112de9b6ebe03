"""The one ASGI application: Django for HTTP, MCP transports mounted beside it, Channels for sockets.

Served by uvicorn (`make run`: httptools + uvloop) or daphne (`manage.py runserver`, `daphne orchestrator.asgi:application`).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

try:
    settings.SECRET_KEY  # noqa: B018  (Django refuses an empty one only when it is read: fail at start instead)
except ImproperlyConfigured:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: run `manage.py init_secrets` (make run does) or set it in the environment or .env"
    ) from None

from orchestrator.http_handler import get_pooled_asgi_application  # noqa: E402

# Django must be set up before anything imports models (consumers, the MCP server).
django_asgi_app = get_pooled_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from orchestrator import metrics  # noqa: E402, F401  (imported now so uptime counts from server start)
from orchestrator.body_limit import BodyLimit  # noqa: E402
from orchestrator.cpu_placement import keep_server_on_one_cpu  # noqa: E402
from orchestrator.heap import settle_after_startup  # noqa: E402
from orchestrator.lifespan import LifespanApp, on_startup  # noqa: E402
from orchestrator.logging import install_redaction_on_all_handlers  # noqa: E402
from orchestrator.routing import PathDispatcher, http_mounts, static_prefixes, websocket_routes  # noqa: E402

install_redaction_on_all_handlers()
on_startup(keep_server_on_one_cpu)
# Last of the start-up hooks, so what they create is frozen too. Only servers that send the ASGI lifespan
# (uvicorn, `make run`) get it: a test process that imports this module keeps Python's collector as is.
on_startup(settle_after_startup)

application = ProtocolTypeRouter(
    {
        "http": BodyLimit(
            PathDispatcher(mounts=http_mounts(), prefixes=static_prefixes(), default=django_asgi_app),
            max_bytes=settings.MAX_REQUEST_BODY_BYTES,
        ),
        # Twilio (not a browser) opens the voice socket, so no origin validator wraps it;
        # the consumer authenticates the upgrade itself (contract §8).
        "websocket": URLRouter(websocket_routes()),
        "lifespan": LifespanApp(),
    }
)
