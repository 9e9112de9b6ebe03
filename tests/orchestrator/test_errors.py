"""The error format of contract §3 on every API path: Django's refusals, DRF's, ours, and crashes."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import include, path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator.errors import ApiError

pytestmark = [pytest.mark.urls("tests.orchestrator.test_errors"), pytest.mark.django_db]


class EchoInput(serializers.Serializer[dict[str, Any]]):
    to = serializers.CharField()
    count = serializers.IntegerField(min_value=1)


class EchoView(APIView):
    """A tiny test-only endpoint that parses JSON and validates it with a serializer."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        data = EchoInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data)


class RefuseView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise ApiError(429, "rate_limited", "Slow down.", retry_after=17, limitType="per_minute")


class CrashView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug")


def plain_crash(request: object) -> None:
    raise RuntimeError("a bug outside DRF")


urlpatterns = [
    path("api/test/echo", EchoView.as_view()),
    path("api/test/refuse", RefuseView.as_view()),
    path("api/test/crash", CrashView.as_view()),
    path("api/test/plain-crash", plain_crash),
    path("admin/api/test/plain-crash", plain_crash),
    path("", include("orchestrator.urls")),
]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    return body


def test_it_answers_an_unknown_api_path_with_json_404(client: Client) -> None:
    assert_error(client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_it_answers_a_wrong_method_on_an_operation_with_json_405(client: Client) -> None:
    body = assert_error(client.post("/api/v1/health", {}, content_type="application/json"), 405, "method_not_allowed")
    assert "POST" in body["error"]


def test_it_answers_a_wrong_method_on_a_plain_django_view_with_json_405() -> None:
    # Enforce CSRF as a real server does: the check must not turn this into an HTML 403.
    response = Client(enforce_csrf_checks=True).post("/health")
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_it_refuses_a_body_over_one_megabyte_with_413(client: Client) -> None:
    body = b'{"to": "' + b"x" * (1024 * 1024) + b'"}'
    assert_error(client.post("/api/test/echo", body, content_type="application/json"), 413, "payload_too_large")


def test_it_accepts_a_body_just_under_the_limit(client: Client) -> None:
    body = b'{"to": "' + b"x" * (1024 * 1024 - 64) + b'", "count": 1}'
    assert client.post("/api/test/echo", body, content_type="application/json").status_code == 200


def test_it_answers_malformed_json_with_invalid_request(client: Client) -> None:
    assert_error(client.post("/api/test/echo", "{not json", content_type="application/json"), 400, "invalid_request")


def test_it_names_the_field_of_a_validation_error(client: Client) -> None:
    response = client.post("/api/test/echo", {"to": "+14155550100", "count": 0}, content_type="application/json")
    body = assert_error(response, 400, "invalid_request")
    assert body["field"] == "count"


def test_it_never_rejects_normal_text_for_its_characters(client: Client) -> None:
    text = "Tom & cat; a; b\r\n😀 日本語 <b>"
    response = client.post("/api/test/echo", {"to": text, "count": 1}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["to"] == text


def test_it_carries_retry_after_in_body_and_header(client: Client) -> None:
    response = client.get("/api/test/refuse")
    body = assert_error(response, 429, "rate_limited")
    assert body["retryAfter"] == 17
    assert body["limitType"] == "per_minute"
    assert response["Retry-After"] == "17"


def test_it_turns_a_crash_in_an_api_view_into_json_500(client: Client) -> None:
    client.raise_request_exception = False
    assert_error(client.get("/api/test/crash"), 500, "internal_error")


def test_it_turns_a_crash_in_a_plain_view_under_api_into_json_500(client: Client) -> None:
    client.raise_request_exception = False
    assert_error(client.get("/api/test/plain-crash"), 500, "internal_error")


def test_it_answers_a_csrf_refusal_on_an_api_path_with_json_403() -> None:
    client = Client(enforce_csrf_checks=True)
    # A plain Django POST view under /admin/api/ (session-authenticated, so CSRF-checked) that is not
    # csrf-exempt: Django's HTML 403 becomes §3 JSON. Bearer-token paths (/api/) run no CSRF check.
    response = client.post("/admin/api/test/plain-crash")
    assert_error(response, 403, "forbidden")


def test_it_leaves_html_404_pages_outside_the_api_alone(client: Client) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
