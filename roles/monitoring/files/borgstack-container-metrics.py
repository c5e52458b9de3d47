# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by the borgstack.stack.monitoring role: do not edit here (Ansible overwrites it).
"""Container metrics for the node exporter's textfile collector, from the Docker engine's own API.

For every container of one Compose project (running or not): whether it runs, its health status, Docker's restart
count, whether the kernel OOM-killed it last time, its memory in use (without the page cache, as `docker stats`
counts it) and its limit. Written atomically to <dir>/borgstack_containers.prom. cAdvisor would give the same and
much more, but it is one more long-running container of ~100 MB and needs /sys, /var/lib/docker and privileges;
this reads the engine's socket once per timer tick and exits.

Usage: borgstack-container-metrics --project NAME --dir DIR
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List

HEALTH = ("healthy", "unhealthy", "starting", "none")


class DockerSocket(http.client.HTTPConnection):
    """HTTP over the engine's unix socket."""

    def __init__(self, path: str = "/var/run/docker.sock") -> None:
        super().__init__("localhost", timeout=20)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(self.socket_path)


def get(path: str) -> Any:
    conn = DockerSocket()
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"GET {path}: HTTP {response.status} {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def memory_in_use(stats: Dict[str, Any]) -> int:
    """What `docker stats` shows: usage minus the inactive page cache (cgroup v2) or the cache (v1)."""
    mem = stats.get("memory_stats") or {}
    usage = int(mem.get("usage") or 0)
    detail = mem.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    return max(usage - int(cache or 0), 0)


def collect(project: str) -> List[str]:
    filters = urllib.parse.quote(json.dumps({"label": [f"com.docker.compose.project={project}"]}))
    lines = [
        "# HELP borgstack_container_running 1 when the container runs.",
        "# TYPE borgstack_container_running gauge",
    ]
    series: Dict[str, List[str]] = {k: [] for k in ("running", "health", "restarts", "oom", "mem", "limit")}
    for summary in get(f"/containers/json?all=1&filters={filters}"):
        info = get(f"/containers/{summary['Id']}/json")
        name = info["Name"].lstrip("/")
        # Each service has its Compose file in services/<service>/compose.yaml (the compose_service role).
        config = (info["Config"].get("Labels") or {}).get("com.docker.compose.project.config_files", "")
        service = os.path.basename(os.path.dirname(config.split(",")[0])) or name
        labels = f'name="{label(name)}",service="{label(service)}"'
        state = info["State"]
        running = bool(state.get("Running"))
        series["running"].append(f"borgstack_container_running{{{labels}}} {int(running)}")
        status = (state.get("Health") or {}).get("Status") or "none"
        for value in HEALTH:
            series["health"].append(f'borgstack_container_health{{{labels},status="{value}"}} {int(status == value)}')
        series["restarts"].append(f"borgstack_container_restarts_total{{{labels}}} {int(info.get('RestartCount') or 0)}")
        series["oom"].append(f"borgstack_container_oom_killed{{{labels}}} {int(bool(state.get('OOMKilled')))}")
        limit = int((info.get("HostConfig") or {}).get("Memory") or 0)
        series["limit"].append(f"borgstack_container_memory_limit_bytes{{{labels}}} {limit}")
        if running:
            stats = get(f"/containers/{summary['Id']}/stats?stream=false&one-shot=true")
            series["mem"].append(f"borgstack_container_memory_bytes{{{labels}}} {memory_in_use(stats)}")
    lines += series["running"]
    lines += ["# HELP borgstack_container_health 1 for the container's current Docker health status.",
              "# TYPE borgstack_container_health gauge"] + series["health"]
    lines += ["# HELP borgstack_container_restarts_total Restarts by Docker's restart policy since it was created.",
              "# TYPE borgstack_container_restarts_total counter"] + series["restarts"]
    lines += ["# HELP borgstack_container_oom_killed 1 when the kernel OOM-killed the container's last run.",
              "# TYPE borgstack_container_oom_killed gauge"] + series["oom"]
    lines += ["# HELP borgstack_container_memory_bytes Memory in use without the page cache.",
              "# TYPE borgstack_container_memory_bytes gauge"] + series["mem"]
    lines += ["# HELP borgstack_container_memory_limit_bytes The container's memory limit (0 = none).",
              "# TYPE borgstack_container_memory_limit_bytes gauge"] + series["limit"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    try:
        lines = collect(args.project)
    except (OSError, ValueError, KeyError) as exc:
        print(f"borgstack-container-metrics: {exc}", file=sys.stderr)
        return 1
    target = Path(args.dir) / "borgstack_containers.prom"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    tmp.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
