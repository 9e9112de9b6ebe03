"""The one ASGI application: Django for HTTP, MCP transports mounted beside it, Channels for sockets.

Served by uvicorn (`make run`: httptools + uvloop) or daphne (`manage.py runserver`, `daphne orchestrator.asgi:application`).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

from orchestrator.http_handler import get_pooled_asgi_application  # noqa: E402

# Django must be set up before anything imports models (consumers, the MCP server).
django_asgi_app = get_pooled_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from orchestrator import metrics  # noqa: E402, F401  (imported now so uptime counts from server start)
from orchestrator.lifespan import LifespanApp  # noqa: E402
from orchestrator.logging import install_redaction_on_all_handlers  # noqa: E402
from orchestrator.routing import PathDispatcher, http_mounts, static_prefixes, websocket_urlpatterns  # noqa: E402

install_redaction_on_all_handlers()

application = ProtocolTypeRouter(
    {
        "http": PathDispatcher(mounts=http_mounts(), prefixes=static_prefixes(), default=django_asgi_app),
        # Twilio (not a browser) opens the voice socket, so no origin validator wraps it;
        # the consumer authenticates the upgrade itself (contract §8).
        "websocket": URLRouter(websocket_urlpatterns()),
        "lifespan": LifespanApp(),
    }
)
