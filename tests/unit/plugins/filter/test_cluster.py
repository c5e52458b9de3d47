"""Table-driven tests of the cluster filters: the inventory decides whether a swarm forms, its managers, labels and
firewall peers, and bad cluster descriptions are refused naming the host or variable and the fix."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import cluster
from ansible_collections.borgstack.stack.plugins.filter.cluster import (cluster_backup_host, cluster_errors,
                                                                        cluster_firewall_rules, cluster_nodes,
                                                                        cluster_placement_errors, cluster_plan,
                                                                        cluster_ram_plan, swarm_departures,
                                                                        swarm_first_start, swarm_hosts,
                                                                        swarm_image_updates, swarm_objects,
                                                                        swarm_stack, swarm_stale_labels)

sys.path.insert(0, str(Path(__file__).parent))
from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error,wrong-import-position  # noqa: E402

STATEFUL = ["postgresql", "redis", "mongodb", "seaweedfs"]
FILTER_DIR = Path(__file__).resolve().parents[4] / "plugins" / "filter"


def node(address, data=(), edge=False):
    return {"address": address, "data": list(data), "edge": edge}


THREE = {"n1": node("10.0.0.1", ["postgresql", "redis"]), "n2": node("10.0.0.2", edge=True),
         "n3": node("10.0.0.3", ["seaweedfs"])}


def test_one_host_is_no_cluster_whatever_it_says():
    single = {"solo": node("not-an-ip", ["nonsense"], edge="maybe")}
    assert cluster_errors(single, 2, STATEFUL, ["evolution_api"], {"evolution_api": 3}) == []
    assert cluster_plan(single) == {"enabled": False, "first_manager": None, "managers": [], "workers": [],
                                    "nodes": {}, "peers": {}}


def test_three_hosts_make_three_managers_with_labels_and_peers():
    assert cluster_errors(THREE, 0, STATEFUL, ["evolution_api"], {}) == []
    plan = cluster_plan(THREE)
    assert plan["enabled"] and plan["first_manager"] == "n1"
    assert plan["managers"] == ["n1", "n2", "n3"] and plan["workers"] == []
    assert plan["nodes"]["n1"] == {"address": "10.0.0.1", "role": "manager",
                                   "labels": {"borgstack.data": "true", "borgstack.edge": "false",
                                              "borgstack.data.postgresql": "true", "borgstack.data.redis": "true"}}
    assert plan["nodes"]["n2"]["labels"] == {"borgstack.data": "false", "borgstack.edge": "true"}
    assert plan["peers"] == {"n1": ["10.0.0.2", "10.0.0.3"], "n2": ["10.0.0.1", "10.0.0.3"],
                             "n3": ["10.0.0.1", "10.0.0.2"]}


@pytest.mark.parametrize(("count", "managers", "workers"), [
    (2, 0, ["h0"]), (3, 0, ["h0", "h1", "h2"]), (5, 0, ["h0", "h1", "h2"]), (5, 5, ["h0", "h1", "h2", "h3", "h4"]),
    (4, 1, ["h0"]),
])
def test_managers_are_the_first_hosts_three_from_three_on(count, managers, workers):
    nodes = {f"h{i}": node(f"10.0.0.{i + 1}", ["postgresql"] if i == 0 else [], edge=i == 0) for i in range(count)}
    assert cluster_errors(nodes, managers, STATEFUL) == []
    plan = cluster_plan(nodes, managers)
    assert plan["managers"] == workers
    assert plan["workers"] == [h for h in nodes if h not in workers]
    assert all(plan["nodes"][h]["role"] == ("manager" if h in workers else "worker") for h in nodes)


BAD = [
    ("no data label", {"a": node("10.0.0.1", edge=True), "b": node("10.0.0.2")}, {},
     "no host of the 2-host cluster carries data: set borgstack_node_data (e.g. [postgresql, redis, mongodb, "
     "seaweedfs]) on the host whose disk holds the databases"),
    ("same stateful service twice", {"a": node("10.0.0.1", ["postgresql"], True), "b": node("10.0.0.2", ["postgresql"])},
     {}, "postgresql is claimed by hosts a, b in borgstack_node_data: a stateful service keeps its data on exactly "
     "one host; keep it on one of them"),
    ("even managers", THREE, {"managers": 2},
     "swarm_managers is 2: an even number of managers tolerates no more losses than one fewer (Raft needs a "
     "majority); set it to 1 or 3, or 0 for automatic"),
    ("more managers than hosts", THREE, {"managers": 5},
     "swarm_managers is 5 but the group has 3 hosts: set it to at most 3, or 0 for automatic"),
    ("negative managers", THREE, {"managers": -1}, "swarm_managers must be 0 (automatic) or a positive odd number, "
     "found -1"),
    ("evolution twice", THREE, {"replicas": {"evolution_api": 2}},
     "swarm_replicas.evolution_api is 2: evolution_api must run exactly once (two processes on one WhatsApp session "
     "corrupt it); set it to 1 or remove it"),
    ("address not an IP", {**THREE, "n2": node("n2.example.com", edge=True)}, {},
     "host n2: borgstack_node_address must be the IP address the other hosts reach it at (its private network "
     "address where it has one), found 'n2.example.com': set it in the inventory for this host"),
    ("shared address", {**THREE, "n3": node("10.0.0.1")}, {},
     "hosts n1 and n3 share the address 10.0.0.1: give each host its own borgstack_node_address"),
    ("unknown data service", {**THREE, "n3": node("10.0.0.3", ["postgres"])}, {},
     "host n3: borgstack_node_data names 'postgres', which is not a stateful service (one of: postgresql, redis, "
     "mongodb, seaweedfs): remove it or fix the spelling"),
    ("data not a list", {**THREE, "n3": node("10.0.0.3") | {"data": "seaweedfs"}}, {},
     "host n3: borgstack_node_data must be a list of service names, found 'seaweedfs'"),
    ("no edge", {**THREE, "n2": node("10.0.0.2")}, {},
     "no host is a public edge: set borgstack_node_edge: true on the host(s) your DNS names point to (Caddy "
     "publishes 80/443 there)"),
    ("edge not a bool", {**THREE, "n3": node("10.0.0.3", edge="yes")}, {},
     "host n3: borgstack_node_edge must be true or false, found 'yes'"),
]


@pytest.mark.parametrize(("case", "nodes", "options", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_clusters_are_refused_naming_host_or_variable_and_fix(case, nodes, options, message):
    errors = cluster_errors(nodes, options.get("managers", 0), STATEFUL, ["evolution_api"], options.get("replicas"))
    assert errors == [message], case


def test_one_replica_of_a_single_instance_service_is_fine_and_others_may_scale():
    assert cluster_errors(THREE, 0, STATEFUL, ["evolution_api"], {"evolution_api": 1, "n8n": 4}) == []


def test_firewall_rules_open_the_swarm_ports_to_each_peer_only():
    rules = cluster_firewall_rules(["10.0.0.2", "10.0.0.3"])
    assert [(r["from"], r["port"], r["proto"]) for r in rules] == [
        (peer, port, proto) for peer in ["10.0.0.2", "10.0.0.3"]
        for port, proto in [(2377, "tcp"), (7946, "tcp"), (7946, "udp"), (4789, "udp")]]
    assert cluster_firewall_rules([]) == []
    with pytest.raises(AnsibleFilterError):
        cluster_firewall_rules("10.0.0.2")


def test_nodes_read_the_inventory_with_defaults():
    hostvars = {"a": {"ansible_host": "10.0.0.1", "borgstack_node_data": ["redis"], "borgstack_node_edge": True},
                "b": {"ansible_host": "b.example", "borgstack_node_address": "10.0.0.2"}}
    assert cluster_nodes(["a", "b"], hostvars) == {"a": node("10.0.0.1", ["redis"], True), "b": node("10.0.0.2")}
    with pytest.raises(AnsibleFilterError):
        cluster_nodes(["c"], hostvars)
    with pytest.raises(AnsibleFilterError):
        cluster_plan(["a"])


@pytest.mark.parametrize("name", ["cluster_nodes", "cluster_errors", "cluster_placement_errors", "cluster_plan",
                                  "cluster_firewall_rules",
                                  "swarm_hosts", "swarm_stack", "cluster_ram_plan", "swarm_departures",
                                  "swarm_stale_labels", "swarm_objects", "swarm_step_containers",
                                  "swarm_step_hosts", "cluster_backup_host"])
def test_sidecar_docs(name):
    check_sidecar_doc(getattr(cluster, name), FILTER_DIR / f"{name}.yml")


# --- Services placed on the swarm ---------------------------------------------------------------------------------
SETTINGS = {"network": "borgstack_cluster", "replicas": {"directus": 2}, "stateful": STATEFUL, "edge": ["caddy"],
            "single": ["evolution_api"], "stop_first": ["n8n"]}
PG_COMPOSE = """
services:
  postgresql:
    image: postgres:17
    container_name: borgstack-postgresql
    restart: unless-stopped
    volumes: [borgstack_postgresql_data:/var/lib/postgresql]
    networks: [borgstack_internal]
    shm_size: 256m
    mem_limit: 512m
    depends_on: {redis: {condition: service_healthy}}
    healthcheck: {test: [CMD, pg_isready]}
networks:
  borgstack_internal: {external: true}
volumes:
  borgstack_postgresql_data: {name: borgstack_postgresql_data}
"""


def test_swarm_hosts_follow_the_labels():
    plan = cluster_plan(THREE)
    assert swarm_hosts(plan, "postgresql", STATEFUL, ["caddy"]) == ["n1"]
    assert swarm_hosts(plan, "seaweedfs", STATEFUL, ["caddy"]) == ["n3"]
    assert swarm_hosts(plan, "caddy", STATEFUL, ["caddy"]) == ["n2"]
    assert swarm_hosts(plan, "n8n", STATEFUL, ["caddy"]) == ["n1", "n2", "n3"]
    assert swarm_hosts(cluster_plan({"solo": node("10.0.0.1")}), "n8n", STATEFUL, ["caddy"]) == []


def test_a_stateful_service_is_pinned_to_its_data_node_and_stops_first():
    stack = swarm_stack(PG_COMPOSE, "postgresql", SETTINGS)
    pg = stack["services"]["postgresql"]
    assert not {"container_name", "restart", "depends_on", "mem_limit", "shm_size"} & set(pg)
    assert pg["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-postgresql"]}}
    assert pg["deploy"]["placement"] == {"constraints": ["node.labels.borgstack.data.postgresql == true"]}
    assert pg["deploy"]["replicas"] == 1 and pg["deploy"]["endpoint_mode"] == "dnsrr"
    assert pg["deploy"]["resources"] == {"limits": {"memory": "512m"}}
    assert pg["deploy"]["update_config"]["order"] == "stop-first"
    assert pg["deploy"]["update_config"]["failure_action"] == "rollback"
    assert pg["volumes"][-1] == {"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": 256 * 1024 ** 2}}
    assert pg["healthcheck"] == {"test": ["CMD", "pg_isready"]}
    assert stack["networks"] == {"borgstack_cluster": {"external": True}}
    assert stack["volumes"] == {"borgstack_postgresql_data": {"name": "borgstack_postgresql_data"}}


def test_caddy_runs_on_each_edge_node_with_host_mode_ports():
    compose = {"services": {"caddy": {"image": "caddy", "container_name": "borgstack-caddy",
                                      "ports": ["80:80/tcp", "443:443/tcp", "443:443/udp"],
                                      "networks": ["borgstack_internal", "borgstack_external"]}}}
    caddy = swarm_stack(compose, "caddy", SETTINGS)["services"]["caddy"]
    assert caddy["deploy"]["mode"] == "global" and "replicas" not in caddy["deploy"]
    assert caddy["deploy"]["placement"] == {"constraints": ["node.labels.borgstack.edge == true",
                                                            "node.labels.borgstack.edge.ready == true"]}
    assert caddy["ports"] == [{"target": 80, "published": 80, "protocol": "tcp", "mode": "host"},
                              {"target": 443, "published": 443, "protocol": "tcp", "mode": "host"},
                              {"target": 443, "published": 443, "protocol": "udp", "mode": "host"}]
    assert caddy["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-caddy"]}}


@pytest.mark.parametrize(("service", "key", "replicas", "order"), [
    ("directus", "directus", 2, "start-first"), ("n8n", "n8n", 1, "stop-first"),
    ("n8n", "n8n-worker-1", 1, "start-first"), ("evolution_api", "evolution-api", 1, "stop-first"),
])
def test_the_app_tier_spreads_with_rolling_updates(service, key, replicas, order):
    app = swarm_stack({"services": {key: {"image": "x"}}}, service, SETTINGS)["services"][key]
    assert app["deploy"]["replicas"] == replicas and "placement" not in app["deploy"]
    assert app["deploy"]["update_config"]["order"] == order
    assert app["deploy"]["rollback_config"]["order"] == order
    assert app["networks"] == ["borgstack_cluster"]


@pytest.mark.parametrize(("compose", "service", "settings", "message"), [
    ("services: [", "n8n", SETTINGS, "n8n's Compose file is not YAML"),
    ({"volumes": {}}, "n8n", SETTINGS, "n8n's Compose file has no services"),
    ({"services": {"n8n": {}}}, "n8n", {}, "settings.network"),
    ({"services": {"caddy": {"ports": ["127.0.0.1:80:80"]}}}, "caddy", SETTINGS, "caddy.ports '127.0.0.1:80:80'"),
    ({"services": {"redis": {}}}, "redis", dict(SETTINGS, replicas={"redis": 2}), "swarm_replicas.redis is 2"),
    ({"services": {"evolution-api": {}}}, "evolution_api", dict(SETTINGS, replicas={"evolution-api": 3}),
     "swarm_replicas.evolution-api is 3"),
    ({"services": {"n8n": {}}}, "n8n", dict(SETTINGS, replicas={"n8n": 0}), "swarm_replicas.n8n must be"),
    ({"services": {"postgresql": {"shm_size": "lots"}}}, "postgresql", SETTINGS, "shm_size 'lots' is not a size"),
])
def test_bad_stack_input_is_refused_naming_it(compose, service, settings, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        swarm_stack(compose, service, settings)


# --- n8n's workers and the RAM plan per node --------------------------------------------------------------------
def test_the_compose_files_own_replicas_count_unless_swarm_replicas_says():
    compose = {"services": {"n8n-worker": {"image": "x", "deploy": {"replicas": 3}}}}
    assert swarm_stack(compose, "n8n", SETTINGS)["services"]["n8n-worker"]["deploy"]["replicas"] == 3
    asked = dict(SETTINGS, replicas={"n8n-worker": 4})
    assert swarm_stack(compose, "n8n", asked)["services"]["n8n-worker"]["deploy"]["replicas"] == 4
    with pytest.raises(AnsibleFilterError, match=re.escape("swarm_replicas.n8n-worker must be a whole number")):
        swarm_stack({"services": {"n8n-worker": {"deploy": {"replicas": 0}}}}, "n8n", SETTINGS)


def _registry(workers=2):
    return {
        "postgresql": {"enabled": True, "layer": "data",
                       "containers": {"postgresql": {"kind": "web", "memory": {"weight": 30, "min_mb": 1024}}}},
        "caddy": {"enabled": True, "layer": "proxy",
                  "containers": {"caddy": {"kind": "web", "memory": {"weight": 2, "min_mb": 128}}}},
        "n8n": {"enabled": True, "layer": "apps", "containers": {
            "n8n": {"kind": "web", "memory": {"weight": 10, "min_mb": 1024}},
            "n8n-worker": {"kind": "worker", "replicas": workers, "memory": {"weight": 6, "min_mb": 768}}}},
        "directus": {"enabled": False, "layer": "apps",
                     "containers": {"directus": {"kind": "web", "memory": {"weight": 6, "min_mb": 512}}}},
    }


def test_each_node_plans_only_what_may_run_there_and_each_limit_is_the_smallest():
    nodes = {"n1": node("10.0.0.1", ["postgresql"]), "n2": node("10.0.0.2", edge=True), "n3": node("10.0.0.3")}
    plan = cluster_ram_plan(cluster_plan(nodes), {"n1": 16384, "n2": 8192, "n3": 16384}, _registry())
    per_node = plan["nodes"]
    assert set(per_node["n1"]["services"]) == {"postgresql", "n8n", "n8n-worker"}
    assert set(per_node["n2"]["services"]) == {"caddy", "n8n", "n8n-worker"}
    assert set(per_node["n3"]["services"]) == {"n8n", "n8n-worker"}
    # Two workers over three nodes: one on a node at most; the plan keeps their total.
    assert {p["services"]["n8n-worker"]["count"] for p in per_node.values()} == {1}
    assert plan["services"]["n8n-worker"]["count"] == 2
    for key in ("n8n", "n8n-worker"):
        limits = [p["services"][key]["limit_mb"] for p in per_node.values()]
        assert plan["services"][key]["limit_mb"] == min(limits) < max(limits)
    # The data node's own plan sizes PostgreSQL; the edge's, Caddy.
    assert plan["services"]["postgresql"] == per_node["n1"]["services"]["postgresql"] | {"count": 1}
    assert plan["postgresql"] == per_node["n1"]["postgresql"]
    assert plan["services"]["caddy"]["limit_mb"] == per_node["n2"]["services"]["caddy"]["limit_mb"]
    assert "directus" not in plan["services"]
    assert plan["total_mb"] == 16384 + 8192 + 16384


def test_a_node_too_small_for_what_may_run_there_is_named():
    nodes = {"n1": node("10.0.0.1", ["postgresql"]), "n2": node("10.0.0.2", edge=True)}
    with pytest.raises(AnsibleFilterError, match="host n2: ram_budget: the minimums"):
        cluster_ram_plan(cluster_plan(nodes), {"n1": 16384, "n2": 2048}, _registry())
    with pytest.raises(AnsibleFilterError, match="no RAM size for host n2"):
        cluster_ram_plan(cluster_plan(nodes), {"n1": 16384}, _registry())
    with pytest.raises(AnsibleFilterError, match="enabled cluster_plan"):
        cluster_ram_plan(cluster_plan({"solo": node("10.0.0.9")}), {"solo": 4096}, _registry())


def test_a_health_check_with_a_start_period_checks_often_while_the_task_starts():
    """A swarm task joins its service's DNS only once healthy: during the start period the check runs every
    SWARM_START_INTERVAL, not at the app's own pace; a check without a start period, or with its own start interval,
    is kept as written."""
    compose = {"services": {
        "n8n": {"image": "n8n", "healthcheck": {"test": ["CMD", "true"], "interval": "15s", "start_period": "300s"}},
        "own": {"image": "x", "healthcheck": {"test": ["CMD", "true"], "start_period": "9s", "start_interval": "5s"}},
        "plain": {"image": "y", "healthcheck": {"test": ["CMD", "true"], "interval": "15s"}}}}
    services = swarm_stack(compose, "n8n", SETTINGS)["services"]
    assert services["n8n"]["healthcheck"] == {"test": ["CMD", "true"], "interval": "15s", "start_period": "300s",
                                              "start_interval": "2s"}
    assert services["own"]["healthcheck"]["start_interval"] == "5s"
    assert "start_interval" not in services["plain"]["healthcheck"]
    assert compose["services"]["n8n"]["healthcheck"] == {"test": ["CMD", "true"], "interval": "15s",
                                                         "start_period": "300s"}  # the input is not changed


# --- Nodes the inventory no longer has ------------------------------------------------------------------------
def seen_node(node_id, address, hostname=None, role="worker", state="ready", labels=None, manager_addr=None):
    """One entry of `docker node inspect`, the parts the filters read."""
    entry = {"ID": node_id, "Description": {"Hostname": hostname or node_id},
             "Spec": {"Role": role, "Availability": "active", "Labels": labels or {}},
             "Status": {"State": state, "Addr": address}}
    if manager_addr:
        entry["ManagerStatus"] = {"Addr": manager_addr, "Reachability": "reachable"}
    return entry


SEEN = [seen_node("id1", "10.0.0.1", "n1", "manager", labels={"borgstack.data": "true", "borgstack.edge": "false",
                                                              "borgstack.data.postgresql": "true",
                                                              "borgstack.data.redis": "true"}),
        seen_node("id2", "0.0.0.0", "n2", "manager", manager_addr="10.0.0.2:2377",
                  labels={"borgstack.data": "false", "borgstack.edge": "true", "team": "web"}),
        seen_node("id3", "10.0.0.3", "n3", "manager", labels={"borgstack.data.seaweedfs": "true"}),
        seen_node("id4", "10.0.0.4", "n4", labels={"borgstack.data": "false", "borgstack.edge": "false"})]


def test_a_node_whose_address_left_the_inventory_departs():
    assert swarm_departures(SEEN[:3], THREE) == []
    gone = swarm_departures(SEEN, THREE)
    assert [(n["id"], n["hostname"], n["address"], n["role"]) for n in gone] == [("id4", "n4", "10.0.0.4", "worker")]
    # A manager listening on every interface is matched by its ManagerStatus address: n2 stays.
    assert "id2" not in {n["id"] for n in gone}


def test_a_down_duplicate_of_a_live_address_departs_too():
    seen = SEEN[:3] + [seen_node("old3", "10.0.0.3", "n3", state="down")]
    assert [n["id"] for n in swarm_departures(seen, THREE)] == ["old3"]
    # A down node alone at its address is still the inventory's (a stopped host): it stays.
    seen = SEEN[:2] + [seen_node("id3", "10.0.0.3", "n3", state="down")]
    assert swarm_departures(seen, THREE) == []


def test_leaving_a_node_that_holds_data_no_other_host_takes_is_refused_naming_node_and_service():
    pinned = SEEN[:3] + [seen_node("id4", "10.0.0.4", "n4", labels={"borgstack.data.mongodb": "true",
                                                                    "borgstack.data.redis": "true"})]
    errors = cluster_errors(THREE, 0, STATEFUL, [], {}, pinned)
    assert errors == ["swarm node n4 (10.0.0.4) is no longer in the inventory but holds the data of mongodb (node "
                      "label borgstack.data.mongodb), and no host of the inventory takes mongodb over: taking the "
                      "node out would strand that data. Put n4 back in the inventory, or move mongodb's data to "
                      "another host and give it mongodb in borgstack_node_data"]
    # Redis is n1's now (the inventory moved it): not refused. A data-free node leaves freely.
    assert cluster_errors(THREE, 0, STATEFUL, [], {}, SEEN) == []
    assert cluster_errors(THREE, 0, STATEFUL, [], {}, []) == []
    with pytest.raises(AnsibleFilterError, match="docker node inspect"):
        cluster_errors(THREE, 0, STATEFUL, [], {}, [{"no": "id"}])


def test_stale_borgstack_labels_are_listed_the_operators_are_not():
    plan = cluster_plan(THREE)
    stale = swarm_stale_labels(SEEN, plan)
    # n3 carries only seaweedfs' data label, the plan adds data/edge (merged by the role) and removes nothing else;
    # n2's "team" label is the operator's; n4 is not the plan's (swarm_departures takes it out).
    assert stale == {}
    seen = [seen_node("id1", "10.0.0.1", "n1", labels={"borgstack.data": "true", "borgstack.edge": "true",
                                                       "borgstack.data.postgresql": "true",
                                                       "borgstack.data.mongodb": "true", "borgstack": "x",
                                                       "borgstackish": "y"})]
    assert swarm_stale_labels(seen, plan) == {"id1": ["borgstack", "borgstack.data.mongodb"]}
    with pytest.raises(AnsibleFilterError):
        swarm_stale_labels(seen, {"enabled": False})


# --- The other apps on a cluster: pinned apps, the migration job, the placement checks ---------------------------
PINNED = [*STATEFUL, "lowcoder", "fileflows", "evolution_api", "duplicati"]
APPS = dict(SETTINGS, replicas={"chatwoot": 2}, stateful=PINNED)
CHATWOOT = {"services": {
    "chatwoot": {"image": "c", "container_name": "borgstack-chatwoot", "restart": "unless-stopped",
                 "depends_on": {"chatwoot-migrate": {"condition": "service_completed_successfully"}}},
    "chatwoot-sidekiq": {"image": "c", "deploy": {"replicas": 3}},
    "chatwoot-migrate": {"image": "c", "container_name": "borgstack-chatwoot-migrate", "restart": "no",
                         "labels": {"org.borgstack.job": "true"}, "mem_limit": "512m",
                         "volumes": ["borgstack_chatwoot_migrations:/borgstack-migrations"]}}}


@pytest.mark.parametrize(("service", "key"), [("evolution_api", "evolution-api"), ("fileflows", "fileflows"),
                                              ("lowcoder", "lowcoder"), ("duplicati", "duplicati"),
                                              ("mongodb", "mongodb")])
def test_an_app_with_its_own_data_is_pinned_to_its_node_once_and_stops_first(service, key):
    app = swarm_stack({"services": {key: {"image": "x", "container_name": f"borgstack-{key}"}}}, service,
                      APPS)["services"][key]
    assert app["deploy"]["placement"] == {"constraints": [f"node.labels.borgstack.data.{service} == true"]}
    assert app["deploy"]["replicas"] == 1
    assert app["deploy"]["update_config"]["order"] == app["deploy"]["rollback_config"]["order"] == "stop-first"
    assert app["networks"] == {"borgstack_cluster": {"aliases": [f"borgstack-{key}"]}}
    with pytest.raises(AnsibleFilterError, match=re.escape(f"swarm_replicas.{key} is 2")):
        swarm_stack({"services": {key: {"image": "x"}}}, service, dict(APPS, replicas={key: 2}))


def test_chatwoot_spreads_its_web_and_workers_and_migrates_in_one_job():
    stack = swarm_stack(CHATWOOT, "chatwoot", APPS)["services"]
    web, workers, job = stack["chatwoot"], stack["chatwoot-sidekiq"], stack["chatwoot-migrate"]
    assert web["deploy"]["replicas"] == 2 and workers["deploy"]["replicas"] == 3
    for spread in (web, workers):
        assert "placement" not in spread["deploy"] and spread["deploy"]["update_config"]["order"] == "start-first"
    assert "depends_on" not in web
    # The migration: one task run to completion (a swarm job), retried on failure a few times, never restarted once
    # done, on a node holding data (where its marker volume stays); no rolling update, no name on the network.
    assert job["deploy"] == {"mode": "replicated-job", "replicas": 1,
                             "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 3},
                             "placement": {"constraints": ["node.labels.borgstack.data == true"]},
                             "resources": {"limits": {"memory": "512m"}}}
    assert job["networks"] == ["borgstack_cluster"] and "restart" not in job and "container_name" not in job
    assert job["labels"] == {"org.borgstack.job": "true"}
    with pytest.raises(AnsibleFilterError, match=re.escape("swarm_replicas.chatwoot-migrate is 2")):
        swarm_stack(CHATWOOT, "chatwoot", dict(APPS, replicas={"chatwoot-migrate": 2}))


def test_a_pinned_services_job_runs_on_its_own_node_and_a_list_label_marks_a_job():
    compose = {"services": {"app-migrate": {"image": "x", "labels": ["org.borgstack.job=true"]}}}
    job = swarm_stack(compose, "fileflows", APPS)["services"]["app-migrate"]
    assert job["deploy"]["mode"] == "replicated-job"
    assert job["deploy"]["placement"] == {"constraints": ["node.labels.borgstack.data.fileflows == true"]}


@pytest.mark.parametrize(("part", "keys"), [("all", ["chatwoot", "chatwoot-sidekiq", "chatwoot-migrate"]),
                                            ("jobs", ["chatwoot-migrate"]),
                                            ("services", ["chatwoot", "chatwoot-sidekiq"])])
def test_the_jobs_and_the_services_are_deployed_apart(part, keys):
    stack = swarm_stack(CHATWOOT, "chatwoot", APPS, part)
    assert list(stack["services"]) == keys
    assert stack["networks"] == {"borgstack_cluster": {"external": True}}


def test_a_file_without_jobs_has_an_empty_jobs_part_and_an_unknown_part_is_refused():
    assert swarm_stack(PG_COMPOSE, "postgresql", SETTINGS, "jobs")["services"] == {}
    with pytest.raises(AnsibleFilterError, match="part must be all, jobs or services"):
        swarm_stack(PG_COMPOSE, "postgresql", SETTINGS, "some")


def _apps_registry(**enabled):
    def svc(layer, containers, volumes=None, placement=None, on=True):
        out = {"enabled": on, "layer": layer, "containers": {c: {"kind": "web"} for c in containers},
               "volumes": volumes or {}}
        if placement:
            out["placement"] = placement
        return out
    return {
        "postgresql": svc("data", ["postgresql"], {"data": {"backup": "dump"}}),
        "seaweedfs": svc("data", ["seaweedfs"], {"data": {"backup": "files"}}),
        "mongodb": svc("data", ["mongodb"], {"data": {"backup": "dump"}}, on=enabled.get("mongodb", False)),
        "n8n": svc("apps", ["n8n"], {"data": {"backup": "files"}}),
        "chatwoot": svc("apps", ["chatwoot", "chatwoot-sidekiq"], {"migrations": {"backup": "none"}}),
        "evolution_api": svc("apps", ["evolution-api"], {"instances": {"backup": "files"}}, "node",
                             on=enabled.get("evolution_api", True)),
        "fileflows": svc("apps", ["fileflows"], {"data": {"backup": "files"}, "temp": {"backup": "none"}}, "node",
                         on=enabled.get("fileflows", True)),
        "duplicati": svc("apps", ["duplicati"], {"data": {"backup": "none"}}, "node",
                         on=enabled.get("duplicati", False)),
    }


APP_NODES = {"n1": node("10.0.0.1", ["postgresql", "seaweedfs", "evolution_api", "fileflows"]),
             "n2": node("10.0.0.2", edge=True)}


@pytest.mark.parametrize(("nodes", "registry", "replicas", "expected"), [
    (APP_NODES, _apps_registry(), {"chatwoot": 3, "chatwoot-sidekiq": 2}, []),
    # A single host: nothing here applies.
    ({"solo": node("10.0.0.1")}, _apps_registry(), {"evolution-api": 2}, []),
    ({"n1": node("10.0.0.1", ["postgresql", "seaweedfs", "evolution_api"]), "n2": node("10.0.0.2", edge=True)},
     _apps_registry(), {},
     ["fileflows is enabled and, on a cluster, runs on the one host that keeps its data, but no host lists it in "
      "borgstack_node_data: add fileflows to borgstack_node_data of the host whose disk keeps its volumes"]),
    # A disabled pinned app needs no host.
    ({"n1": node("10.0.0.1", ["postgresql", "seaweedfs"]), "n2": node("10.0.0.2", edge=True)},
     _apps_registry(evolution_api=False, fileflows=False), {}, []),
    (APP_NODES, _apps_registry(), {"fileflows": 2, "seaweedfs": 2},
     ["swarm_replicas.seaweedfs is 2: seaweedfs runs once, on the host that keeps its data (two processes on one "
      "data directory corrupt it); set it to 1 or remove it",
      "swarm_replicas.fileflows is 2: fileflows runs once, on the host that keeps its data (two processes on one "
      "data directory corrupt it); set it to 1 or remove it"]),
    # Evolution API's replicas are cluster_errors' business (single instance): not reported twice.
    (APP_NODES, _apps_registry(), {"evolution-api": 2}, []),
    # Duplicati reads the volumes it backs up on its own node: with them, or refused naming both.
    ({"n1": node("10.0.0.1", ["postgresql", "seaweedfs", "evolution_api", "fileflows", "duplicati"]),
      "n2": node("10.0.0.2", edge=True)}, _apps_registry(duplicati=True), {}, []),
    ({"n1": node("10.0.0.1", ["postgresql", "seaweedfs", "evolution_api"]),
      "n2": node("10.0.0.2", ["fileflows", "duplicati"], edge=True)}, _apps_registry(duplicati=True), {},
     ["duplicati (host n2) backs up the volumes of seaweedfs, which are on host n1: a volume is read on its own node "
      "only; list duplicati and seaweedfs in borgstack_node_data of the same host",
      "duplicati (host n2) backs up the volumes of evolution_api, which are on host n1: a volume is read on its own "
      "node only; list duplicati and evolution_api in borgstack_node_data of the same host"]),
])
def test_the_placement_of_the_enabled_services_is_checked(nodes, registry, replicas, expected):
    assert cluster_placement_errors(nodes, registry, replicas, ["evolution_api"]) == expected


def test_the_placement_check_needs_the_registry():
    with pytest.raises(AnsibleFilterError, match="expects the service registry"):
        cluster_placement_errors(APP_NODES, None)


@pytest.mark.parametrize("key", ["evolution_api", "evolution-api"])
def test_evolution_api_asked_twice_is_refused_by_either_name(key):
    errors = cluster_errors(APP_NODES, 0, PINNED, ["evolution_api"], {key: 2})
    assert errors == [f"swarm_replicas.{key} is 2: evolution_api must run exactly once (two processes on one "
                      f"WhatsApp session corrupt it); set it to 1 or remove it"]


def test_a_pinned_app_is_counted_on_its_node_only_in_the_ram_plan():
    registry = {
        "postgresql": {"enabled": True, "layer": "data",
                       "containers": {"postgresql": {"kind": "web", "memory": {"weight": 30, "min_mb": 1024}}}},
        "fileflows": {"enabled": True, "layer": "apps", "placement": "node",
                      "containers": {"fileflows": {"kind": "web", "memory": {"weight": 8, "min_mb": 512}}}},
        "n8n": {"enabled": True, "layer": "apps",
                "containers": {"n8n": {"kind": "web", "memory": {"weight": 8, "min_mb": 512}}}},
    }
    plan = cluster_plan({"n1": node("10.0.0.1", ["postgresql"]), "n2": node("10.0.0.2", ["fileflows"], edge=True)})
    ram = cluster_ram_plan(plan, {"n1": 8192, "n2": 8192}, registry)
    assert sorted(ram["nodes"]["n1"]["services"]) == ["n8n", "postgresql"]
    assert sorted(ram["nodes"]["n2"]["services"]) == ["fileflows", "n8n"]


# --- A new service with replicas starts alone first (Directus' bootstrap has no lock) --------------------------------
def test_a_new_service_with_replicas_starts_at_one_replica_first():
    stack = {"version": "3.8", "services": {
        "directus": {"image": "d:11", "deploy": {"replicas": 2, "endpoint_mode": "dnsrr"}},
        "n8n": {"image": "n:1", "deploy": {"replicas": 1}},
        "n8n-worker": {"image": "n:1", "deploy": {"replicas": 3}},
        "caddy": {"image": "c:2", "deploy": {"mode": "global"}}}}
    first = swarm_first_start(stack, "borgstack", ["borgstack_n8n-worker n:1"])
    # Directus is new with two replicas: one first, the rest of its deploy settings kept.
    assert first["services"]["directus"]["deploy"] == {"replicas": 1, "endpoint_mode": "dnsrr"}
    # Deployed already (the swarm adds replicas to an installed database), one replica, or global: as they are.
    assert first["services"]["n8n-worker"] == stack["services"]["n8n-worker"]
    assert first["services"]["n8n"] == stack["services"]["n8n"]
    assert first["services"]["caddy"] == stack["services"]["caddy"]
    assert first["version"] == "3.8"
    # The stack file given is not changed.
    assert stack["services"]["directus"]["deploy"]["replicas"] == 2
    # Once every service exists there is nothing to start first: the stack itself.
    everything = ["borgstack_directus d:11", "borgstack_n8n n:1", "borgstack_n8n-worker n:1", "borgstack_caddy c:2"]
    assert swarm_first_start(stack, "borgstack", everything) == stack
    # Another stack's service of the same key is not this one.
    assert swarm_first_start(stack, "other", everything)["services"]["directus"]["deploy"]["replicas"] == 1
    with pytest.raises(AnsibleFilterError, match="expects a stack file"):
        swarm_first_start("nope", "borgstack", [])
    with pytest.raises(AnsibleFilterError, match="docker service inspect"):
        swarm_first_start(stack, "borgstack", "borgstack_directus d:11")


# --- The update a stack deploy is about to make (the pre-update dump runs before it) -----------------------------------
def test_an_update_is_an_existing_service_getting_another_image():
    stack = {"services": {"n8n": {"image": "n8nio/n8n:1.113.4"}, "n8n-worker": {"image": "n8nio/n8n:1.113.4"},
                          "n8n-webhook": {"image": "n8nio/n8n:1.113.4"}}}
    running = ["borgstack_n8n n8nio/n8n:1.113.3", "borgstack_n8n-worker n8nio/n8n:1.113.4"]
    # The main changes; the worker runs the image already; the processors are new (a first deploy, no update).
    assert swarm_image_updates(stack, "borgstack", running) == {
        "borgstack_n8n": {"from": "n8nio/n8n:1.113.3", "to": "n8nio/n8n:1.113.4"}}
    assert swarm_image_updates(stack, "borgstack", []) == {}
    same = ["borgstack_n8n n8nio/n8n:1.113.4", "borgstack_n8n-worker n8nio/n8n:1.113.4"]
    assert swarm_image_updates(stack, "borgstack", same) == {}
    # Another stack's service of the same key is not this one.
    assert swarm_image_updates(stack, "other", running) == {}
    with pytest.raises(AnsibleFilterError, match="expects a stack file"):
        swarm_image_updates("nope", "borgstack", [])
    with pytest.raises(AnsibleFilterError, match="expects the lines"):
        swarm_image_updates(stack, "borgstack", "borgstack_n8n x")


def test_the_edge_ready_label_stays_on_an_edge_and_leaves_with_the_edge():
    plan = cluster_plan(THREE)
    ready = {"borgstack.edge.ready": "true"}
    seen = [seen_node("id1", "10.0.0.1", "n1", labels={"borgstack.edge": "true", **ready}),
            seen_node("id2", "10.0.0.2", "n2", labels={"borgstack.edge": "true", **ready})]
    # n2 is still the edge: its ready label stays; n1 stopped being one: it goes (its Caddy stops there).
    assert swarm_stale_labels(seen, plan) == {"id1": ["borgstack.edge.ready"]}


# --- Secrets and configs as swarm objects ---------------------------------------------------------------------------
DIR = "/opt/borgstack/services/directus"
DIRECTUS_COMPOSE = {"services": {"directus": {
    "image": "directus", "container_name": "borgstack-directus",
    "volumes": ["borgstack_directus_extensions:/directus/extensions",
                f"{DIR}/db-password:/run/secrets/directus-db-password:ro",
                f"{DIR}/secret:/run/secrets/directus-secret:ro"]}}}
DIRECTUS_SECRETS = [
    {"path": "db-password", "content": "s3cr3t-db-password-value", "owner": "1000", "group": "1000", "mode": "0400"},
    {"path": "secret", "content": "another-secret-value-123", "owner": "1000", "group": "1000", "mode": "0400"},
    {"path": "owner-password", "content": "never-mounted-password", "mode": "0600"},
]


def test_mounted_secret_files_become_versioned_secrets_without_their_content():
    objects = swarm_objects(DIRECTUS_SECRETS, DIRECTUS_COMPOSE, "directus", DIR, "borgstack")
    # owner-password is mounted nowhere: it stays a file (for the operator).
    assert [o["path"] for o in objects] == ["db-password", "secret"]
    db = objects[0]
    assert re.fullmatch(r"borgstack_directus_db-password_[0-9a-f]{12}", db["name"]), db["name"]
    assert db == {"path": "db-password", "name": db["name"], "source": f"{DIR}/db-password", "uid": "1000",
                  "gid": "1000", "mode": 0o400}
    text = repr(objects)
    assert not any(item["content"] in text for item in DIRECTUS_SECRETS)
    # Same content, same name (a rerun changes nothing); a new content, a new name (the service is updated).
    assert swarm_objects(DIRECTUS_SECRETS, DIRECTUS_COMPOSE, "directus", DIR, "borgstack") == objects
    rotated = [dict(DIRECTUS_SECRETS[0], content="rotated-db-password-value")] + DIRECTUS_SECRETS[1:]
    again = swarm_objects(rotated, DIRECTUS_COMPOSE, "directus", DIR, "borgstack")
    assert again[0]["name"] != db["name"] and again[0]["name"].startswith("borgstack_directus_db-password_")
    assert again[1] == objects[1]
    # A secret and a config of the same content are different objects.
    config = swarm_objects(DIRECTUS_SECRETS[:1], DIRECTUS_COMPOSE, "directus", DIR, "borgstack", "config")
    assert config[0]["name"] != db["name"] and config[0]["mode"] == 0o400


def test_the_stack_mounts_the_secrets_at_the_same_paths_and_declares_them_external():
    objects = swarm_objects(DIRECTUS_SECRETS, DIRECTUS_COMPOSE, "directus", DIR, "borgstack")
    stack = swarm_stack(DIRECTUS_COMPOSE, "directus", dict(SETTINGS, secrets=objects))
    directus = stack["services"]["directus"]
    assert directus["volumes"] == ["borgstack_directus_extensions:/directus/extensions"]
    assert directus["secrets"] == [
        {"source": objects[0]["name"], "target": "/run/secrets/directus-db-password", "uid": "1000", "gid": "1000",
         "mode": 0o400},
        {"source": objects[1]["name"], "target": "/run/secrets/directus-secret", "uid": "1000", "gid": "1000",
         "mode": 0o400}]
    assert stack["secrets"] == {objects[0]["name"]: {"external": True}, objects[1]["name"]: {"external": True}}
    assert "configs" not in stack and "configs" not in directus
    # Without objects (as before): the bind mounts stay.
    assert swarm_stack(DIRECTUS_COMPOSE, "directus", SETTINGS)["services"]["directus"]["volumes"] == \
        DIRECTUS_COMPOSE["services"]["directus"]["volumes"]


def test_a_file_in_a_mounted_directory_becomes_a_config_in_the_same_place():
    caddy_dir = "/opt/borgstack/services/caddy"
    compose = {"services": {"caddy": {"image": "caddy", "volumes": [
        "borgstack_caddy_data:/data", f"{caddy_dir}/config:/etc/caddy:ro"]}}}
    files = [{"path": "config/Caddyfile", "content": "a.example {\n}\n", "mode": "0644"}]
    configs = swarm_objects(files, compose, "caddy", caddy_dir, "borgstack", "config")
    assert configs[0]["source"] == f"{caddy_dir}/config/Caddyfile" and configs[0]["uid"] == "0"
    stack = swarm_stack(compose, "caddy", dict(SETTINGS, configs=configs))
    caddy = stack["services"]["caddy"]
    assert caddy["volumes"] == ["borgstack_caddy_data:/data"]
    assert caddy["configs"] == [{"source": configs[0]["name"], "target": "/etc/caddy/Caddyfile", "uid": "0",
                                 "gid": "0", "mode": 0o644}]
    assert stack["configs"] == {configs[0]["name"]: {"external": True}}
    changed = swarm_objects([dict(files[0], content="b.example {\n}\n")], compose, "caddy", caddy_dir, "borgstack",
                            "config")
    assert changed[0]["name"] != configs[0]["name"]


def test_n8n_main_and_workers_share_one_secret_per_file():
    n8n_dir = "/opt/borgstack/services/n8n"
    mount = f"{n8n_dir}/db-password:/run/secrets/n8n-db-password:ro"
    compose = {"services": {"n8n": {"image": "n8n", "volumes": [mount]},
                            "n8n-worker": {"image": "n8n", "volumes": [mount]}}}
    secrets = swarm_objects([{"path": "db-password", "content": "n8n-db-password-value", "owner": "1000",
                              "group": "1000", "mode": "0400"}], compose, "n8n", n8n_dir, "borgstack")
    stack = swarm_stack(compose, "n8n", dict(SETTINGS, secrets=secrets))
    assert stack["services"]["n8n"]["secrets"] == stack["services"]["n8n-worker"]["secrets"]
    assert list(stack["secrets"]) == [secrets[0]["name"]]
    assert "volumes" not in stack["services"]["n8n"]


@pytest.mark.parametrize(("files", "kind", "message"), [
    ([{"path": "db-password", "content": "x" * 20, "owner": "node"}], "secret", "owner must be a numeric uid/gid"),
    ([{"path": "db-password", "content": "x" * 20, "mode": "rw"}], "secret", "mode 'rw' is not an octal mode"),
    ([{"path": "db-password", "content": None}], "secret", "db-password has no text content"),
    ([{"path": "db-password", "content": "x" * 20}], "vault", "kind must be one of secret, config"),
    ([{"content": "x"}], "secret", "a list of {path, content}"),
])
def test_bad_secret_files_are_refused_naming_them(files, kind, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        swarm_objects(files, DIRECTUS_COMPOSE, "directus", DIR, "borgstack", kind)


def test_a_name_too_long_for_docker_is_refused():
    long = "a-very-long-secret-file-name-that-goes-on-and-on"
    compose = {"services": {"x": {"volumes": [f"{DIR}/{long}:/run/secrets/x"]}}}
    with pytest.raises(AnsibleFilterError, match="Docker allows 64"):
        swarm_objects([{"path": long, "content": "x" * 20}], compose, "directus", DIR, "borgstack")


# --- The steps after a deployment, once per swarm service ------------------------------------------------------------
STEP_HOSTS = {
    # node-1 runs PostgreSQL and one Directus replica, node-2 the n8n main, a worker and the other Directus replica.
    "node-1": {"postgresql": "borgstack_postgresql.1.aaa", "directus": "borgstack_directus.1.bbb"},
    "node-2": {"n8n": "borgstack_n8n.1.ccc", "n8n-worker": "borgstack_n8n-worker.2.ddd",
               "directus": "borgstack_directus.2.eee"},
    # Nothing of the stack here (or check mode: nothing read).
    "node-3": {},
}


@pytest.mark.parametrize(("host", "expected"), [
    ("node-1", {"postgresql": "borgstack_postgresql.1.aaa", "directus": "borgstack_directus.1.bbb"}),
    # Directus' second replica: its steps already run on node-1.
    ("node-2", {"n8n": "borgstack_n8n.1.ccc", "n8n-worker": "borgstack_n8n-worker.2.ddd"}),
    ("node-3", {}),
])
def test_each_service_gets_its_steps_on_the_first_host_that_runs_it(host, expected):
    assert cluster.swarm_step_containers(STEP_HOSTS, host) == expected


def test_the_steps_follow_the_play_order_and_skip_hosts_without_facts():
    reordered = {"node-2": STEP_HOSTS["node-2"], "node-1": STEP_HOSTS["node-1"], "node-4": None}
    assert cluster.swarm_step_containers(reordered, "node-1") == {"postgresql": "borgstack_postgresql.1.aaa"}
    assert cluster.swarm_step_containers(reordered, "node-2")["directus"] == "borgstack_directus.2.eee"
    assert cluster.swarm_step_containers(reordered, "node-4") == {}
    # Every service has exactly one host, whichever the order.
    for hosts in (STEP_HOSTS, reordered):
        owners = [service for host in hosts for service in cluster.swarm_step_containers(hosts, host)]
        assert sorted(owners) == sorted({"postgresql", "directus", "n8n", "n8n-worker"})


@pytest.mark.parametrize(("hosts", "host", "message"), [
    ([], "node-1", "expects {host: {service: container}}"),
    (STEP_HOSTS, "node-9", "host 'node-9' is not one of the hosts given (node-1, node-2, node-3)"),
    ({"node-1": ["borgstack_n8n.1.ccc"]}, "node-1", "the containers of host node-1 are not a mapping"),
])
def test_bad_step_input_is_refused_naming_it(hosts, host, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        cluster.swarm_step_containers(hosts, host)


@pytest.mark.parametrize(("hosts", "expected"), [
    (STEP_HOSTS, {"postgresql": "node-1", "directus": "node-1", "n8n": "node-2", "n8n-worker": "node-2"}),
    # The play order decides: Directus' steps move to node-2 when it comes first; a host without facts owns nothing.
    ({"node-2": STEP_HOSTS["node-2"], "node-1": STEP_HOSTS["node-1"], "node-4": None},
     {"n8n": "node-2", "n8n-worker": "node-2", "directus": "node-2", "postgresql": "node-1"}),
    ({"node-1": {}, "node-2": {"mongodb": ""}}, {}),
])
def test_each_service_has_one_step_host_the_one_given_its_container(hosts, expected):
    assert cluster.swarm_step_hosts(hosts) == expected
    for service, host in expected.items():
        assert service in cluster.swarm_step_containers(hosts, host)
        assert not [other for other in hosts if other != host and service in cluster.swarm_step_containers(hosts, other)]


@pytest.mark.parametrize(("hosts", "message"), [
    ([], "swarm_step_hosts expects {host: {service: container}}"),
    ({"node-1": ["borgstack_n8n.1.ccc"]}, "swarm_step_hosts: the containers of host node-1 are not a mapping"),
])
def test_bad_step_host_input_is_refused_naming_it(hosts, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        cluster.swarm_step_hosts(hosts)


def test_links_are_dropped_and_a_listed_service_also_answers_as_its_name_dot_internal():
    """Evolution API's global webhook refuses a host without a top-level domain: on one host a Compose link gives it
    borgstack-n8n.internal; a swarm has no links (dropped), so the webhook processors listed in internal_aliases
    answer on the overlay as borgstack-n8n-webhook.internal too. Every other service keeps its one alias (no spec
    change, no rolling update of it)."""
    compose = {"services": {
        "evolution-api": {"image": "e", "container_name": "borgstack-evolution-api",
                          "external_links": ["borgstack-n8n-webhook:borgstack-n8n-webhook.internal"],
                          "links": ["x:y"]},
        "n8n-webhook": {"image": "n", "container_name": "borgstack-n8n-webhook", "deploy": {"replicas": 2}},
        "n8n": {"image": "n", "container_name": "borgstack-n8n"}}}
    settings = dict(SETTINGS, internal_aliases=["n8n-webhook"])
    services = swarm_stack(compose, "n8n", settings)["services"]
    assert services["n8n-webhook"]["networks"] == {
        "borgstack_cluster": {"aliases": ["borgstack-n8n-webhook", "borgstack-n8n-webhook.internal"]}}
    assert services["n8n"]["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-n8n"]}}
    assert services["evolution-api"]["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-evolution-api"]}}
    assert not {"external_links", "links"} & set(services["evolution-api"])
    # Without the setting (or without a container name to build the name from): one alias, or none.
    assert swarm_stack(compose, "n8n", SETTINGS)["services"]["n8n-webhook"]["networks"] == {
        "borgstack_cluster": {"aliases": ["borgstack-n8n-webhook"]}}
    bare = {"services": {"n8n-webhook": {"image": "n"}}}
    assert swarm_stack(bare, "n8n", settings)["services"]["n8n-webhook"]["networks"] == ["borgstack_cluster"]


# --- Where the backup job runs -------------------------------------------------------------------------------------
def test_the_backup_job_goes_to_the_node_holding_the_databases_it_dumps():
    plan = cluster_plan(THREE)
    assert cluster_backup_host(plan, ["postgresql", "redis", "n8n", "seaweedfs"]) == {
        "host": "n1", "services": ["postgresql", "redis"], "errors": []}
    # Without PostgreSQL the job follows the next dumped service (MongoDB, then Redis).
    assert cluster_backup_host(plan, ["redis", "n8n"])["host"] == "n1"
    moved = cluster_plan({"n1": node("10.0.0.1", ["seaweedfs"]), "n2": node("10.0.0.2", ["mongodb"], edge=True),
                          "n3": node("10.0.0.3", ["postgresql", "redis"])})
    assert cluster_backup_host(moved, ["postgresql", "redis", "mongodb"])["errors"]
    assert cluster_backup_host(moved, ["mongodb"])["host"] == "n2"
    assert cluster_backup_host(moved, ["postgresql", "redis"])["host"] == "n3"


def test_one_host_or_nothing_to_dump_gives_no_backup_node():
    assert cluster_backup_host(cluster_plan({"solo": node("10.0.0.1")}), ["postgresql"]) == {
        "host": None, "services": [], "errors": []}
    nothing = cluster_backup_host(cluster_plan(THREE), ["n8n", "seaweedfs"])
    assert nothing == {"host": None, "services": [], "errors": []}


def test_a_dumped_database_on_another_node_is_refused_naming_both_hosts_and_the_fix():
    split = cluster_plan({"n1": node("10.0.0.1", ["postgresql"]), "n2": node("10.0.0.2", ["redis"], edge=True)})
    result = cluster_backup_host(split, ["postgresql", "redis", "n8n"])
    assert result["host"] is None
    assert len(result["errors"]) == 1
    assert re.search(r"redis is held by n2 but postgresql by n1 .*Hold redis on n1 too.*backup_enabled: false",
                     result["errors"][0])
    # Nobody holding a dumped service is named too.
    unheld = cluster_backup_host(cluster_plan(THREE), ["postgresql", "mongodb"])
    assert unheld["host"] is None and re.search(r"no host lists mongodb in borgstack_node_data", unheld["errors"][0])
    with pytest.raises(AnsibleFilterError, match="cluster_backup_host: expects the list"):
        cluster_backup_host(cluster_plan(THREE), "postgresql")
