from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from admin_ui.views_pages import favicon
from orchestrator import health
from orchestrator.api_docs import OpenApiView, integration_guide
from orchestrator.rest import rest_urlpatterns
from voice.webhooks import voice_audio

urlpatterns = [
    # First: the busiest route (every provider webhook) is resolved without trying the others' patterns
    # (ten fewer patterns tried per webhook: 62 k of its 2.55 M instructions). No other pattern begins with "webhooks/".
    path("webhooks/", include("channels_app.urls")),
    # `make run` ends with "Uvicorn running on http://127.0.0.1:3100": a browser opening it lands on
    # the operator admin, not on a Not Found page.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="root"),
    path("favicon.ico", favicon, name="favicon"),
    path("health", health.health, name="health"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", health.metrics_view, name="metrics"),
    path("api/v1/openapi.json", OpenApiView.as_view(), name="openapi"),
    path("api/v1/integration-guide", integration_guide, name="integration-guide"),
    path("api/v1/", include(rest_urlpatterns())),
    # Before admin.site.urls, whose catch-all would answer these with a login redirect.
    path("admin/api/", include("admin_ui.urls")),
    path("admin/", admin.site.urls),
    re_path(r"^media/voice/(?P<token>[A-Za-z0-9_-]{20,64})\.(?P<extension>mp3|wav)$", voice_audio, name="voice-audio"),
]

# DEBUG only (it returns nothing otherwise): daphne, unlike runserver, serves no static files, and
# the admin of a `make run` checkout should not come up unstyled. Without DEBUG the collected files are
# served ahead of Django (orchestrator.routing.static_prefixes).
urlpatterns += staticfiles_urlpatterns()
