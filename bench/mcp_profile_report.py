"""Summarise a py-spy collapsed-stack profile (`--format raw`): where the server's time goes.

    .venv/bin/python bench/mcp_profile_report.py /tmp/profile.txt [--top 30]

Prints the share of samples spent inside (inclusive) each function and grouped by package, so the
SDK's share, ours, Django's and the event loop's can be told apart.
"""

from __future__ import annotations

import argparse
import collections
import re

PACKAGE_PATTERNS = [
    ("ours (orchestrator/agents)", re.compile(r"\((orchestrator|agents|channels_app|voice)/")),
    ("mcp SDK", re.compile(r"\(mcp(_types)?/")),
    ("pydantic", re.compile(r"\(pydantic(_core)?/")),
    ("starlette/sse_starlette", re.compile(r"\((starlette|sse_starlette)/")),
    ("anyio", re.compile(r"\(anyio/")),
    ("uvicorn/h11", re.compile(r"\((uvicorn|h11)/")),
    ("daphne/twisted", re.compile(r"\((daphne|twisted|autobahn)/")),
    ("asgiref (sync_to_async)", re.compile(r"\(asgiref/")),
    ("django", re.compile(r"\(django/")),
    ("opentelemetry", re.compile(r"\(opentelemetry/")),
    ("asyncio", re.compile(r"\(asyncio/")),
    ("threads/futures", re.compile(r"\((threading|concurrent/futures/[a-z_]+)\.py")),
    ("json", re.compile(r"\(json/")),
]
IDLE_LEAVES = re.compile(r"(select \(selectors\.py|_worker \(concurrent/futures/thread\.py:81\)|wait \(threading\.py)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    leaf_package: collections.Counter[str] = collections.Counter()
    total = 0
    idle = 0
    for line in open(args.profile):
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        if IDLE_LEAVES.search(leaf):
            idle += count
            continue
        for frame in set(frames):
            inclusive[frame] += count
        leaf_package[next((name for name, pattern in PACKAGE_PATTERNS if pattern.search(leaf)), "other")] += count
    busy = total - idle
    print(f"{total} samples, {idle} idle in the selector, {busy} busy")
    print("\nself time by package (share of busy samples):")
    for name, count in leaf_package.most_common():
        print(f"  {count / max(busy, 1) * 100:5.1f}%  {name}")
    print(f"\ntop {args.top} functions by inclusive share of busy samples:")
    for frame, count in inclusive.most_common(args.top):
        print(f"  {count / max(busy, 1) * 100:5.1f}%  {frame[:150]}")


if __name__ == "__main__":
    main()
