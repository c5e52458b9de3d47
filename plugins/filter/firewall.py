# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The firewall role's comparison of what the host runs with what the settings ask, as pure functions over the
output of its one read (a shell that prints ``#section`` headers before dpkg-query, ``ufw status verbose``,
``ufw show added``, ``systemctl is-enabled ufw``, ``iptables -S DOCKER-USER``/``ip6tables -S DOCKER-USER`` and
after.rules/after6.rules in base64)."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

SECTIONS = ("packages", "status", "added", "boot", "v4", "v6", "after", "after6")
MARKER = "BORGSTACK DOCKER-USER (managed by borgstack.stack.firewall)"


def firewall_state(output: Any) -> dict[str, Any]:
    """The read's stdout -> {packages: {name: status}, status, added, boot, v4, v6: [lines], after, after6: text}.
    A section that printed nothing is empty; lines before the first header are ignored."""
    if not isinstance(output, str):
        raise AnsibleFilterError(f"firewall_state: expected the read's stdout (a string), got {type(output).__name__}")
    lines: dict[str, list[str]] = {name: [] for name in SECTIONS}
    section = None
    for raw in output.splitlines():
        if raw.startswith("#") and raw[1:].strip() in SECTIONS:
            section = raw[1:].strip()
        elif section is not None and raw.strip():
            lines[section].append(raw.strip())
    state: dict[str, Any] = {name: lines[name] for name in ("status", "added", "v4", "v6")}
    state["packages"] = {}
    for line in lines["packages"]:
        fields = line.split()
        if len(fields) >= 2:
            state["packages"][fields[0]] = fields[1]
    state["boot"] = lines["boot"][0] if lines["boot"] else ""
    for name in ("after", "after6"):
        try:
            state[name] = base64.b64decode("".join(lines[name]), validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as error:
            raise AnsibleFilterError(f"firewall_state: the {name} section is not base64 text: {error}") from None
    return state


def _rule_list(value: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) and "port" in item for item in value):
        raise AnsibleFilterError(f"ufw_rules: {name} must be a list of dicts with a port")
    return value


def ufw_rules(ssh_ports: Any, ssh_limit: Any, public_ports: Any, extra_rules: Any) -> list[str]:
    """The rules as ``ufw show added`` lists them (one line per rule, IPv4 and IPv6 together)."""
    if not isinstance(ssh_ports, list):
        raise AnsibleFilterError("ufw_rules: ssh_ports must be a list of port numbers")
    rules = [f"ufw {'limit' if ssh_limit else 'allow'} {int(port)}/tcp comment 'SSH'" for port in ssh_ports]
    wanted = [dict(item, public=True) for item in _rule_list(public_ports, "public_ports")]
    wanted += _rule_list(extra_rules, "extra_rules")
    for rule in wanted:
        proto = rule.get("proto") or ("tcp" if rule.get("public") else "any")
        comment = f" comment '{rule['comment']}'" if rule.get("comment") else ""
        source = rule.get("from") or "any"
        if source == "any":
            rules.append(f"ufw allow {rule['port']}{'' if proto == 'any' else '/' + proto}{comment}")
        else:
            rules.append(f"ufw allow from {source} to any port {rule['port']}"
                         f"{'' if proto == 'any' else ' proto ' + proto}{comment}")
    return rules


_PEER_RULE = re.compile(r"^ufw allow from (?P<from>\S+) to any port (?P<port>[0-9]+) proto (?P<proto>tcp|udp) "
                        r"comment 'Docker Swarm peer'$")


def stale_cluster_rules(added: Any, peers: Any) -> list[dict[str, Any]]:
    """The swarm-port rules (``ufw show added`` lines with the comment ``Docker Swarm peer``, which only the
    cluster's rules carry) whose source is not one of ``peers`` any more - a host that left the cluster - as
    ``{port, proto, from}`` to delete. Every other rule is left alone."""
    if not isinstance(added, list) or not all(isinstance(line, str) for line in added):
        raise AnsibleFilterError("stale_cluster_rules: expects the lines of `ufw show added`")
    if not isinstance(peers, list):
        raise AnsibleFilterError(f"stale_cluster_rules: expects the list of peer addresses, found {peers!r}")
    keep = {str(peer) for peer in peers}
    stale = []
    for line in added:
        match = _PEER_RULE.match(line.strip())
        if match and match.group("from") not in keep:
            stale.append({"port": int(match.group("port")), "proto": match.group("proto"),
                          "from": match.group("from")})
    return stale


def _chain_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("-A DOCKER-USER ")]


def firewall_in_place(state: Any, rules: Any, logging: Any, chains: Any = None) -> bool:
    """True when UFW is active with deny-in/allow-out defaults, the logging level, every rule, enabled at boot,
    and (``chains``: {'v4': block text, 'v6': block text}, or None when the chain is off) each live DOCKER-USER
    chain begins with the block's rules (Docker may append its own RETURN after them)."""
    if not isinstance(state, dict) or not all(key in state for key in ("status", "added", "boot", "v4", "v6")):
        raise AnsibleFilterError("firewall_in_place: give the result of the firewall_state filter")
    status = state["status"]
    wanted_logging = "Logging: " + ("off" if logging == "off" else f"on ({logging})")
    defaults = [line for line in status if line.startswith("Default: deny (incoming), allow (outgoing)")]
    if ("Status: active" not in status or wanted_logging not in status or len(defaults) != 1
            or any(rule not in state["added"] for rule in rules) or state["boot"] != "enabled"):
        return False
    for family, block in (chains or {}).items():
        want = _chain_lines(block)
        have = _chain_lines("\n".join(state[family]))
        if have[:len(want)] != want:
            return False
    return True


def managed_block_in_place(text: Any, block: Any, marker: str = MARKER) -> bool:
    """Whether ``text`` (a file) holds ``block`` between blockinfile's BEGIN/END markers exactly - or, with block
    None (the block is to be removed), holds no BEGIN marker at all."""
    if not isinstance(text, str):
        raise AnsibleFilterError("managed_block_in_place: the file's text must be a string")
    have = text.splitlines()
    begin = f"# BEGIN {marker}"
    if block is None:
        return begin not in have
    if not isinstance(block, str):
        raise AnsibleFilterError("managed_block_in_place: the block must be a string or None")
    want = [begin, *block.splitlines(), f"# END {marker}"]
    return any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


class FilterModule(NamedFilters):
    """Firewall state filters."""

    FILTERS = (firewall_state, ufw_rules, firewall_in_place, managed_block_in_place, stale_cluster_rules)
