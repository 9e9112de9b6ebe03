"""The request metrics django-prometheus defines are still counted, per label set, with cached series."""

from __future__ import annotations

import pytest
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
