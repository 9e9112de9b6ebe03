"""tools/check_private_access.py (run by `make lint` and CI): what it reports, and what it lets through."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools import check_private_access as checker

ROOT = Path(__file__).resolve().parents[2]


def findings(source: str) -> list[str]:
    modules = {
        "orchestrator.health": ast.parse("from django.db import connection\ndef database_check(): ..."),
        "agents.authentication": ast.parse("import time\nNOT_THROTTLED_SECONDS = 1.0"),
    }
    tree = ast.parse(textwrap.dedent(source))
    path = ROOT / "tests" / "example.py"
    return [finding.message for finding in checker.check(path, tree, set(), checker.load_allowlist(), modules)]


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio\nasyncio.events._set_running_loop(None)\n",
        "from mcp.server._otel import OpenTelemetryMiddleware\n",
        "from django.db import connections\ndef t(monkeypatch):\n    monkeypatch.setattr(type(connections['default']), 'is_usable', len)\n",
        "from agents import authentication\ndef t(monkeypatch):\n    monkeypatch.setattr(authentication.time, 'monotonic', len)\n",
        "from unittest import mock\nwith mock.patch('orchestrator.health.connection.cursor', side_effect=RuntimeError):\n    pass\n",
        "import django\ndjango.setup = len\n",
    ],
)
def test_it_reports_private_access_and_monkeypatches_of_libraries(source: str) -> None:
    assert findings(source)


@pytest.mark.parametrize(
    "source",
    [
        "from agents import authentication\ndef t(monkeypatch):\n    monkeypatch.setattr(authentication, 'NOT_THROTTLED_SECONDS', 0.1)\n",
        "from unittest import mock\nwith mock.patch('orchestrator.health.database_check', return_value='error'):\n    pass\n",
        "from django.db import connection\nwith connection.execute_wrapper(print):\n    pass\n",
        "from channels_app.models import Message\nMessage._meta.get_field('body')\n",
    ],
)
def test_it_lets_through_public_apis_and_our_own_code(source: str) -> None:
    assert findings(source) == []


def test_the_repository_has_no_private_access_outside_the_allowlist() -> None:
    result = subprocess.run([sys.executable, "tools/check_private_access.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
