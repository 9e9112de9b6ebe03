"""django-prometheus's request metrics, with each labelled series looked up once instead of per request.

The contract promises django-prometheus's request metrics (§4). Its middleware pair labels about ten
series on every request through `metric.labels(**labels)`, which validates the label names, builds a
key and takes the metric's lock each time: a measurable share of a webhook's CPU. The series a
server sees are few (views × methods × statuses), so the child of each label combination is kept in a
dict after its first lookup. The metrics, names and values are django-prometheus's own; its
PrometheusBeforeMiddleware labels nothing and is used as it is.
"""

from __future__ import annotations

from typing import Any

from django_prometheus import middleware

# Bounded: label values that come from the request (the raw method of the latency histogram) could
# otherwise grow it without end; prometheus_client keeps the series themselves either way.
_MAX_CACHED_SERIES = 10_000
_series: dict[tuple[Any, ...], Any] = {}


def _labelled(metric: Any, labels: dict[str, str]) -> Any:
    if not labels:
        return metric
    key = (id(metric), *labels.items())
    child = _series.get(key)
    if child is None:
        if len(_series) >= _MAX_CACHED_SERIES:
            _series.clear()
        child = _series[key] = metric.labels(**labels)
    return child


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: str) -> Any:
        return _labelled(metric, labels)
