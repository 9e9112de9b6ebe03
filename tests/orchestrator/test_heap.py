"""The server's garbage collector after start-up (orchestrator/heap.py): what it was started with is frozen,
the young generation is collected less often, and a process that only imports the application is left alone."""

from __future__ import annotations

from pathlib import Path

from tests.orchestrator.server_start import after_server_start

# What the collector is set to once the server started (or only imported).
COLLECTOR = """
import gc, json
print(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()[0]}))
"""


def _collector_after(tmp_path: Path, mode: str, **environ: str) -> dict[str, int]:
    return after_server_start(tmp_path, mode, COLLECTOR, **environ)


def test_it_freezes_the_startup_heap_and_collects_young_objects_less_often_once_the_server_starts(tmp_path: Path) -> None:
    collector = _collector_after(tmp_path, "lifespan", GC_YOUNG_THRESHOLD="12345")

    assert collector["frozen"] > 10_000  # Django, the MCP SDK and the application, out of the collector's sight
    assert collector["threshold"] == 12345


def test_it_leaves_the_collector_alone_in_a_process_that_only_imports_the_application(tmp_path: Path) -> None:
    collector = _collector_after(tmp_path, "import")

    assert collector == {"frozen": 0, "threshold": 700}
