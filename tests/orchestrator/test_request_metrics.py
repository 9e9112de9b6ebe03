"""The request metrics django-prometheus defines are still counted, per label set, with cached series."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.http import HttpRequest
from django.test import RequestFactory
from prometheus_client import REGISTRY

pytestmark = pytest.mark.django_db


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_it_counts_each_response_under_its_own_status_and_view(client) -> None:
    ok_before = _sample("django_http_responses_total_by_status_view_method_total",
                        status="200", view="health", method="GET")
    missing_before = _sample("django_http_responses_total_by_status_total", status="404")

    for _ in range(3):
        assert client.get("/health").status_code == 200
    assert client.get("/no-such-page").status_code == 404

    assert _sample("django_http_responses_total_by_status_view_method_total",
                   status="200", view="health", method="GET") == ok_before + 3
    assert _sample("django_http_responses_total_by_status_total", status="404") == missing_before + 1


def _request_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the request-side series django-prometheus's PrometheusAfterMiddleware counts."""
    wanted = ("django_http_requests_total_by_method", "django_http_requests_total_by_transport",
              "django_http_ajax_requests", "django_http_requests_body_total_bytes")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in REGISTRY.collect() if family.name.startswith(wanted)
        for sample in family.samples if not sample.name.endswith("_created")  # when a series first appeared
    }


def _counted_by(process_request: Callable[[HttpRequest], None], request: HttpRequest) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    before = _request_samples()
    process_request(request)
    after = _request_samples()
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}


@pytest.mark.parametrize("method, headers", [
    ("POST", {"content_type": "application/x-www-form-urlencoded", "HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}),
    ("GET", {"secure": True}),
    ("BREW", {}),
])
def test_a_request_counts_the_same_series_as_django_prometheus_own_middleware_counts(
    method: str, headers: dict[str, Any], rf: RequestFactory
) -> None:
    from django.http import HttpResponse
    from django_prometheus.middleware import PrometheusAfterMiddleware as Theirs

    from orchestrator.request_metrics import PrometheusAfterMiddleware as Ours

    def request() -> HttpRequest:
        return rf.generic(method, "/webhooks/agent-a/sms", data=b"Body=hi" if method == "POST" else b"", **headers)

    ours = _counted_by(Ours(lambda r: HttpResponse()).process_request, request())
    theirs = _counted_by(Theirs(lambda r: HttpResponse()).process_request, request())

    assert ours == theirs and ours
