# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Draining a proxied container before Compose replaces it: it takes no new connection and finishes its requests.

New TCP connections from outside the container are refused with a reset inside its network namespace (``nsenter``
+ ``iptables``; the proxy sees a connection refused, which it retries), then the connections already open are
counted from ``/proc/<pid>/net/tcp{,6}`` (``inbound_connections``) until they are closed or the time is up.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import ComposePart

_TCP_LISTEN, _TCP_ESTABLISHED = "0A", "01"
# The drain: new TCP connections from outside the container answered with a reset (the proxy's "connection refused",
# which it retries); its own healthcheck (loopback) and the connections it opened itself are untouched.
DRAIN_RULE = ["INPUT", "-p", "tcp", "--syn", "!", "-i", "lo", "-j", "REJECT", "--reject-with", "tcp-reset"]


def _loopback(address: str) -> bool:
    """A /proc/net/tcp{,6} address (hex, as the kernel prints it) in 127.0.0.0/8 or ::1 (also as ::ffff:127.x)."""
    if len(address) == 8:  # IPv4, the bytes of one little-endian word: the first octet is the last byte
        return address[6:8] == "7F"
    address = address.upper()
    return address == "00000000000000000000000001000000" or (
        address.startswith("0000000000000000FFFF0000") and address[30:32] == "7F")


def inbound_connections(tables: Sequence[str]) -> int:
    """Open connections clients made to a listening port, from the text of /proc/<pid>/net/tcp and tcp6 (one
    network namespace): established sockets whose local port is a listening one, loopback peers apart (the
    container's own healthcheck). The connections it opened itself (to its database) are not counted."""
    rows = []
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or ":" not in fields[1] or ":" not in fields[2]:
                continue
            local, remote = fields[1].rsplit(":", 1), fields[2].rsplit(":", 1)
            rows.append((local[1], remote[0], fields[3].upper()))
    listening = {port for port, _remote, state in rows if state == _TCP_LISTEN}
    return sum(1 for port, remote, state in rows
               if state == _TCP_ESTABLISHED and port in listening and not _loopback(remote))


def running_pids(names: Sequence[str], inspected: Mapping[str, Mapping[str, Any]]) -> Dict[str, int]:
    """The main process of each of these containers that runs (from ``docker inspect``)."""
    pids = {}
    for name in names:
        state = (inspected.get(name) or {}).get("State") or {}
        if state.get("Running") and state.get("Pid"):
            pids[name] = int(state["Pid"])
    return pids


class ConnectionDrain(ComposePart):
    """Refuses new connections to containers about to be replaced, waits for the open ones, takes the rule back
    from a container that was not replaced after all."""

    def drain(self, names: Sequence[str], inspected: Mapping[str, Mapping[str, Any]]) -> Dict[str, int]:
        """Before ``up`` replaces these running containers: refuse new TCP connections in each one's network namespace
        (a reset, so the proxy sees a connection refused, which it always retries - it holds the request until the
        new container answers) and wait, up to ``drain_timeout`` seconds, until the connections already open are
        closed. The rule goes with the old container's namespace. Where it cannot be applied (no nsenter or
        iptables on the host), the container is replaced without draining and a warning says so.

        Returns the drained containers with the process whose namespace holds the rule."""
        pids = running_pids(names, inspected)
        if not pids or self.params["drain_timeout"] <= 0:
            return {}
        module = self.base.module
        if not module.get_bin_path("nsenter") or not module.get_bin_path("iptables"):
            module.warn(f"{self.name}: nsenter or iptables is missing on this host: {', '.join(sorted(pids))} "
                        "replaced without draining (requests in flight may fail at the proxy)")
            return {}
        drained = {}
        for name, pid in sorted(pids.items()):
            self.base.commands.append(f"nsenter --net iptables: refuse new connections to {name}")
            rc, _out, err = self._rule("-I", pid)
            if rc != 0:
                module.warn(f"{self.name}: {name} replaced without draining: iptables in its network "
                            f"namespace failed: {err.strip()}")
                continue
            drained[name] = pid
        self._wait(drained)
        return drained

    def _wait(self, drained: Mapping[str, int]) -> None:
        """Until no drained container has an open inbound connection, or ``drain_timeout`` is over."""
        deadline = time.monotonic() + self.params["drain_timeout"]
        waiting = sorted(drained)
        while waiting and time.monotonic() < deadline:
            waiting = [name for name in waiting if inbound_connections(self.tcp_tables(drained[name]))]
            if waiting:
                time.sleep(0.1)

    def undrain(self, drained: Mapping[str, int]) -> None:
        """A drained container that ``up`` did not replace (it failed before stopping it) would refuse every new
        connection for good: the rule is taken out again where the same process still runs."""
        if not drained:
            return
        now = self.base.inspect_containers(list(drained))
        for name, pid in sorted(drained.items()):
            state = (now.get(name) or {}).get("State") or {}
            if state.get("Running") and state.get("Pid") == pid:
                self.base.commands.append(
                    f"nsenter --net iptables: accept new connections to {name} again (not replaced)")
                self._rule("-D", pid)

    def _rule(self, action: str, pid: int) -> Tuple[int, str, str]:
        """Insert (``-I``) or delete (``-D``) DRAIN_RULE in the network namespace of process ``pid``."""
        module = self.base.module
        return module.run_command([module.get_bin_path("nsenter"), "--target", str(pid), "--net",
                                   module.get_bin_path("iptables"), "-w", action, *DRAIN_RULE])

    @staticmethod
    def tcp_tables(pid: int) -> List[str]:
        """The text of /proc/<pid>/net/tcp and tcp6 (the TCP sockets of that process's network namespace)."""
        tables = []
        for name in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{pid}/net/{name}", encoding="ascii") as handle:
                    tables.append(handle.read())
            except OSError:  # the process exited, or no IPv6
                continue
        return tables
