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

from django_prometheus import middleware

from orchestrator.metrics import labelled


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: str) -> Any:
        return labelled(metric, **labels)
