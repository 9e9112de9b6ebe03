"""The server's root URL, the first thing a user opens after `make run`."""

from __future__ import annotations

from django.test import Client


def test_it_sends_a_browser_opening_the_root_to_the_admin(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_it_does_not_redirect_other_unknown_paths(client: Client) -> None:
    assert client.get("/nothing-here").status_code == 404
