# SPDX-License-Identifier: GPL-3.0-or-later
"""Table-driven tests of the firewall filters: firewall_state, ufw_rules, firewall_in_place, managed_block_in_place."""
from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.firewall import (
    MARKER,
    firewall_in_place,
    firewall_state,
    managed_block_in_place,
    ufw_rules,
)

BLOCK = ("*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n"
         "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN\n"
         "-A DOCKER-USER -j DROP\nCOMMIT\n")
AFTER = f"# rules.input-after\n*filter\nCOMMIT\n# BEGIN {MARKER}\n{BLOCK}# END {MARKER}\n"
RULES = ["ufw limit 22/tcp comment 'SSH'", "ufw allow 443/tcp comment 'HTTPS'"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def read_output(**over: str) -> str:
    sections = {
        "packages": "ufw ii \niptables ii ",
        "status": ("Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), deny (routed)\n"
                   "New profiles: skip\n\nTo                         Action      From\n"),
        "added": "Added user rules (see 'ufw status' for running firewall):\n" + "\n".join(RULES),
        "boot": "enabled",
        "v4": ("-N DOCKER-USER\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n"
               "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN\n"
               "-A DOCKER-USER -j DROP\n-A DOCKER-USER -j RETURN"),
        "v6": "-N DOCKER-USER\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n"
              "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 --ctdir ORIGINAL -j RETURN\n"
              "-A DOCKER-USER -j DROP",
        "after": b64(AFTER),
        "after6": b64(AFTER),
    }
    sections.update(over)
    return "".join(f"#{name}\n{text}\n" for name, text in sections.items())


def test_firewall_state_parses_every_section():
    state = firewall_state(read_output())
    assert state["packages"] == {"ufw": "ii", "iptables": "ii"}
    assert state["boot"] == "enabled" and "Status: active" in state["status"] and "" not in state["status"]
    assert state["added"][1:] == RULES
    assert state["v4"][-1] == "-A DOCKER-USER -j RETURN" and state["after"] == AFTER


def test_firewall_state_of_a_fresh_host():
    state = firewall_state("#packages\n#status\n#added\n#boot\n#v4\n#v6\n#after\n\n#after6\n\n")
    assert state == {"packages": {}, "status": [], "added": [], "boot": "", "v4": [], "v6": [], "after": "",
                     "after6": ""}


@pytest.mark.parametrize("bad", [None, 3, ["#status"]])
def test_firewall_state_refuses_what_is_not_text(bad):
    with pytest.raises(AnsibleFilterError, match="firewall_state"):
        firewall_state(bad)


def test_firewall_state_refuses_a_broken_file_section():
    with pytest.raises(AnsibleFilterError, match="after"):
        firewall_state(read_output(after="not base64!"))


@pytest.mark.parametrize(("ports", "limit", "public", "extra", "wanted"), [
    ([22], True, [], [], ["ufw limit 22/tcp comment 'SSH'"]),
    ([22, 2222], False, [], [], ["ufw allow 22/tcp comment 'SSH'", "ufw allow 2222/tcp comment 'SSH'"]),
    ([], True, [{"port": 443, "comment": "HTTPS"}, {"port": 443, "proto": "udp"}], [],
     ["ufw allow 443/tcp comment 'HTTPS'", "ufw allow 443/udp"]),
    ([], True, [], [{"port": 9100}], ["ufw allow 9100"]),
    ([], True, [], [{"port": 9100, "proto": "tcp", "from": "10.0.0.0/8", "comment": "metrics"}],
     ["ufw allow from 10.0.0.0/8 to any port 9100 proto tcp comment 'metrics'"]),
    ([], True, [], [{"port": 53, "from": "2001:db8::/32"}], ["ufw allow from 2001:db8::/32 to any port 53"]),
    ([], True, [], [{"port": 8080, "from": "any", "proto": "any"}], ["ufw allow 8080"]),
])
def test_ufw_rules(ports, limit, public, extra, wanted):
    assert ufw_rules(ports, limit, public, extra) == wanted


@pytest.mark.parametrize("args", [("22", True, [], []), ([22], True, [{"proto": "tcp"}], []), ([22], True, [], None)])
def test_ufw_rules_refuses_bad_input(args):
    with pytest.raises(AnsibleFilterError, match="ufw_rules"):
        ufw_rules(*args)


CHAINS = {"v4": BLOCK, "v6": BLOCK}


@pytest.mark.parametrize(("over", "logging", "chains", "wanted"), [
    ({}, "low", CHAINS, True),
    ({}, "low", None, True),
    ({}, "medium", CHAINS, False),                                            # another logging level
    ({"status": "Status: inactive"}, "low", CHAINS, False),
    ({"status": "Status: active\nLogging: off\nDefault: deny (incoming), allow (outgoing)"}, "off", None, True),
    ({"status": "Status: active\nLogging: on (low)\nDefault: allow (incoming), allow (outgoing)"}, "low", None, False),
    ({"added": RULES[0]}, "low", CHAINS, False),                               # a rule deleted by hand
    ({"boot": "disabled"}, "low", CHAINS, False),
    ({"v4": "-N DOCKER-USER\n-A DOCKER-USER -j RETURN"}, "low", CHAINS, False),  # chain flushed by Docker's restart
    ({"v4": "-N DOCKER-USER\n-A DOCKER-USER -j RETURN"}, "low", None, True),
    ({"v6": ""}, "low", CHAINS, False),
])
def test_firewall_in_place(over, logging, chains, wanted):
    assert firewall_in_place(firewall_state(read_output(**over)), RULES, logging, chains) is wanted


def test_firewall_in_place_refuses_what_is_not_the_parsed_state():
    with pytest.raises(AnsibleFilterError, match="firewall_state"):
        firewall_in_place({"status": []}, RULES, "low")


@pytest.mark.parametrize(("text", "block", "wanted"), [
    (AFTER, BLOCK, True),
    (AFTER, BLOCK.replace("443", "8443"), False),                     # the settings changed
    (AFTER.replace("-j DROP\n", ""), BLOCK, False),                   # a line deleted by hand
    ("*filter\nCOMMIT\n", BLOCK, False),                              # no block yet
    ("", BLOCK, False),                                               # no file
    ("*filter\nCOMMIT\n", None, True),                                # chain off, nothing to remove
    (AFTER, None, False),                                             # chain off, block still there
])
def test_managed_block_in_place(text, block, wanted):
    assert managed_block_in_place(text, block) is wanted


def test_managed_block_in_place_refuses_bad_input():
    with pytest.raises(AnsibleFilterError, match="managed_block_in_place"):
        managed_block_in_place(None, BLOCK)
    with pytest.raises(AnsibleFilterError, match="managed_block_in_place"):
        managed_block_in_place(AFTER, 3)


def test_stale_cluster_rules_lists_only_the_swarm_rules_of_former_peers():
    from ansible_collections.borgstack.stack.plugins.filter.firewall import stale_cluster_rules
    added = ["ufw limit 22/tcp comment 'SSH'",
             "ufw allow from 10.0.0.2 to any port 2377 proto tcp comment 'Docker Swarm peer'",
             "ufw allow from 10.0.0.4 to any port 2377 proto tcp comment 'Docker Swarm peer'",
             "ufw allow from 10.0.0.4 to any port 7946 proto udp comment 'Docker Swarm peer'",
             # The operator's own rule from the same address: not the cluster's, kept.
             "ufw allow from 10.0.0.4 to any port 5432 proto tcp comment 'replica'",
             "ufw allow from 10.0.0.4 to any port 4789 proto udp"]
    assert stale_cluster_rules(added, ["10.0.0.2", "10.0.0.3"]) == [
        {"port": 2377, "proto": "tcp", "from": "10.0.0.4"}, {"port": 7946, "proto": "udp", "from": "10.0.0.4"}]
    assert stale_cluster_rules(added, ["10.0.0.2", "10.0.0.4"]) == []
    with pytest.raises(AnsibleFilterError):
        stale_cluster_rules("text", [])
