"""django-prometheus's request metrics, with each labelled series looked up once instead of per request.

The contract promises django-prometheus's request metrics (§4). Its middleware pair labels about ten
series on every request through `metric.labels(**labels)`, which validates the label names, builds a
key and takes the metric's lock each time: a measurable share of a webhook's CPU. The series a
server sees are few (views × methods × statuses), so the child of each label combination is kept after its
first lookup (orchestrator.metrics.labelled). The metrics, names and values are django-prometheus's own; its
PrometheusBeforeMiddleware labels nothing and is used as it is.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django_prometheus import middleware
from django_prometheus.utils import Time

from orchestrator.metrics import labelled

# The methods django-prometheus labels by name (any other is "<invalid method>").
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"})


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: str) -> Any:
        return labelled(metric, **labels)

    def process_request(self, request: HttpRequest) -> None:
        """django-prometheus (2.5)'s process_request, the same series counted, reading its two headers from
        request.META: request.headers builds a mapping of every header for them (93 k instructions of a
        webhook's 2.49 M). Compared with the library's in tests/orchestrator/test_request_metrics.py."""
        method = request.method if request.method in _METHODS else "<invalid method>"
        labelled(self.metrics.requests_by_method, method=method).inc()
        labelled(self.metrics.requests_by_transport, transport="https" if request.is_secure() else "http").inc()
        if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            self.metrics.requests_ajax.inc()
        self.metrics.requests_body_bytes.observe(int(request.META.get("CONTENT_LENGTH") or 0))
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]
