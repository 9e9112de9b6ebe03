"""Server CPU per request for one path: N sequential keep-alive GETs against a running server.

    .venv/bin/python bench/request_cpu.py --pid <server pid> --port 3100 --path /health [--requests 1000] [--token …]

CPU is the server process's utime + stime from /proc/<pid>/stat, so the figure does not move with the
client's cost or the machine's load as much as a wall-clock rate does.
"""

from __future__ import annotations

import argparse
import http.client
import os
import time


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--port", type=int, default=3100)
    parser.add_argument("--path", default="/health")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    connection = http.client.HTTPConnection("127.0.0.1", args.port)
    for _ in range(50):  # warm up
        connection.request("GET", args.path, headers=headers)
        connection.getresponse().read()
    cpu_before, wall_before = process_cpu_seconds(args.pid), time.monotonic()
    status = 0
    for _ in range(args.requests):
        connection.request("GET", args.path, headers=headers)
        response = connection.getresponse()
        response.read()
        status = response.status
    cpu = process_cpu_seconds(args.pid) - cpu_before
    wall = time.monotonic() - wall_before
    print(
        f"{args.path} → {status}: {args.requests / wall:.0f} requests/s wall, "
        f"{args.requests / cpu:.0f} per server CPU-second, {1000 * cpu / args.requests:.2f} ms server CPU per request"
    )


if __name__ == "__main__":
    main()
