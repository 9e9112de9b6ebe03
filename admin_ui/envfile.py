"""Atomic updates of the `.env` file the settings read (contract §9 `save`).

The file is replaced, never rewritten in place: a temporary file in the same directory (mode 0600,
as `ensure_generated_secrets` makes it) is written, fsynced and renamed over the original with
`os.replace`, so a reader or a crash sees either the old file or the new one, never half of each.
Lines for other keys, comments and blank lines are kept as they were; a key that already has a line
gets its value replaced there (every line of it, should it appear twice), a new key is appended.
Writers on this host serialise on an advisory lock of the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

_KEY_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_QUOTES = "'\""


def format_value(value: str) -> str:
    """The value as `orchestrator.env.parse_env_file` will read it back unchanged.

    That parser strips surrounding whitespace and one pair of matching quotes, so a value that would
    lose either is wrapped in double quotes (the parser removes exactly that pair again).
    """
    needs_quotes = value != value.strip() or (len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES)
    return f'"{value}"' if needs_quotes else value


def render(existing: str, changes: Mapping[str, str]) -> str:
    """The new file text: `existing` with `changes` applied."""
    lines = existing.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        if match and match.group(1) in changes:
            key = match.group(1)
            lines[index] = f"{key}={format_value(changes[key])}\n"
            seen.add(key)
    lines.extend(f"{key}={format_value(value)}\n" for key, value in changes.items() if key not in seen)
    return "".join(lines)


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[int]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def env_file_update(path: Path, changes: Mapping[str, str]) -> None:
    """Apply `changes` (already validated: no CR, LF or NUL) to the file at `path`, atomically."""
    for key, value in changes.items():
        if any(char in value for char in "\r\n\0"):
            raise ValueError(f"{key}: values cannot contain line breaks or NUL")
    target = path.resolve()
    directory = target.parent
    with _directory_lock(directory) as directory_fd:
        existing = target.read_text(encoding="utf-8") if target.exists() else ""
        text = render(existing, changes)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        # The rename itself is durable only once the directory entry is on disk.
        os.fsync(directory_fd)
