# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster the inventory describes: which hosts form a Docker Swarm, which of them are managers, the node labels
placement will read, and the firewall peers of each host - and everything wrong with that description.

One host in the group: no cluster (``enabled`` false, no peers, no labels): today's single-server deployment.
Two or more: a swarm. Each host's inventory variables say what it is:

- ``borgstack_node_address``: the address the other hosts reach it at (advertise address); defaults to ansible_host.
- ``borgstack_node_data``: the stateful services whose data lives on it (e.g. [postgresql, redis]).
- ``borgstack_node_edge``: true on the public edge host(s), where Caddy will publish 80/443.
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from typing import Any, Dict, List, Mapping

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.registry import memory_specs, pinned_services
from ansible_collections.borgstack.stack.plugins.filter.sizing import ram_budget
from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

# The label prefix every BorgStack node label carries (placement constraints read node.labels.<prefix>.…).
LABEL_PREFIX = "borgstack"
# Swarm's own ports (Docker docs, "Use overlay networks"): cluster management, node gossip, VXLAN data path.
SWARM_PORTS = ({"port": 2377, "proto": "tcp"}, {"port": 7946, "proto": "tcp"}, {"port": 7946, "proto": "udp"},
               {"port": 4789, "proto": "udp"})


def cluster_nodes(hosts: Any, hostvars: Any) -> Dict[str, Dict[str, Any]]:
    """{host: {address, data, edge}} for the hosts of the group, read from their inventory variables."""
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise AnsibleFilterError("cluster_nodes: expects the list of the group's host names (groups['borgstack'])")
    nodes = {}
    for host in hosts:
        try:
            hv = hostvars[host]
        except KeyError as exc:
            raise AnsibleFilterError(f"cluster_nodes: no variables for host {host!r}") from exc
        address = hv.get("borgstack_node_address") or hv.get("ansible_host") or host
        nodes[host] = {"address": address, "data": hv.get("borgstack_node_data", []),
                       "edge": hv.get("borgstack_node_edge", False)}
    return nodes


def _nodes(filter_name: str, nodes: Any) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(nodes, Mapping) or not all(isinstance(v, Mapping) for v in nodes.values()):
        raise AnsibleFilterError(f"{filter_name}: expects {{host: {{address, data, edge}}}} (filter cluster_nodes)")
    return nodes


def _manager_count(nodes: Mapping[str, Any], managers: Any) -> int:
    """0 = automatic: three managers from three hosts on (one loss tolerated), one below."""
    if managers in (0, None, ""):
        return 3 if len(nodes) >= 3 else 1
    return managers


def cluster_errors(nodes: Any, managers: Any = 0, stateful: Any = None, single_instance: Any = None,
                   replicas: Any = None, seen: Any = None) -> List[str]:
    """Everything wrong with the cluster the inventory describes, one message per problem naming the host or the
    variable and the fix. Empty for a single host (no cluster: nothing here applies).

    ``managers``: swarm_managers (0 = automatic); ``stateful``: the services whose data pins them to one host;
    ``single_instance``: services that must never run twice; ``replicas``: {service: replicas asked for};
    ``seen``: ``docker node inspect`` of the swarm's nodes as the first manager sees them (empty before the swarm
    exists) - a node the inventory no longer has that holds a stateful service's data (its
    ``borgstack.data.<service>`` label) no host of the inventory takes over is refused: leaving would strand it."""
    nodes = _nodes("cluster_errors", nodes)
    if len(nodes) < 2:
        return []
    errors = []
    if not isinstance(managers, int) or isinstance(managers, bool) or managers < 0:
        return [f"swarm_managers must be 0 (automatic) or a positive odd number, found {managers!r}"]
    count = _manager_count(nodes, managers)
    if count % 2 == 0:
        errors.append(f"swarm_managers is {count}: an even number of managers tolerates no more losses than one "
                      f"fewer (Raft needs a majority); set it to {count - 1} or {count + 1}, or 0 for automatic")
    elif count > len(nodes):
        errors.append(f"swarm_managers is {count} but the group has {len(nodes)} hosts: set it to at most "
                      f"{len(nodes) if len(nodes) % 2 else len(nodes) - 1}, or 0 for automatic")
    stateful = list(stateful or [])
    owners: Dict[str, List[str]] = {}
    seen_addresses: Dict[str, str] = {}
    for host, node in nodes.items():
        address = node.get("address")
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            errors.append(f"host {host}: borgstack_node_address must be the IP address the other hosts reach it at "
                          f"(its private network address where it has one), found {address!r}: set it in the "
                          f"inventory for this host")
        else:
            if address in seen_addresses:
                errors.append(f"hosts {seen_addresses[address]} and {host} share the address {address}: give each "
                              f"host its own borgstack_node_address")
            seen_addresses[str(address)] = host
        data = node.get("data")
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            errors.append(f"host {host}: borgstack_node_data must be a list of service names, found {data!r}")
            continue
        for service in data:
            if service not in stateful:
                errors.append(f"host {host}: borgstack_node_data names {service!r}, which is not a stateful service "
                              f"(one of: {', '.join(stateful)}): remove it or fix the spelling")
            owners.setdefault(service, []).append(host)
        if not isinstance(node.get("edge"), bool):
            errors.append(f"host {host}: borgstack_node_edge must be true or false, found {node.get('edge')!r}")
    if not any(isinstance(n.get("data"), list) and n.get("data") for n in nodes.values()):
        errors.append(f"no host of the {len(nodes)}-host cluster carries data: set borgstack_node_data (e.g. "
                      f"[{', '.join(stateful) or 'postgresql'}]) on the host whose disk holds the databases")
    for service, hosts in owners.items():
        if len(hosts) > 1:
            errors.append(f"{service} is claimed by hosts {', '.join(hosts)} in borgstack_node_data: a stateful "
                          f"service keeps its data on exactly one host; keep it on one of them")
    if not any(n.get("edge") is True for n in nodes.values()):
        errors.append("no host is a public edge: set borgstack_node_edge: true on the host(s) your DNS names point "
                      "to (Caddy publishes 80/443 there)")
    replicas = replicas or {}
    if not isinstance(replicas, Mapping):
        errors.append(f"swarm_replicas must be a dict {{service: replicas}}, found {replicas!r}")
        replicas = {}
    for service in single_instance or []:
        # swarm_replicas is read by Compose service (evolution-api) by swarm_stack: both spellings are refused.
        for key in dict.fromkeys((service, service.replace("_", "-"))):
            asked = replicas.get(key, 1)
            if asked != 1:
                errors.append(f"swarm_replicas.{key} is {asked!r}: {service} must run exactly once (two processes "
                              f"on one WhatsApp session corrupt it); set it to 1 or remove it")
    for node in swarm_departures(seen or [], nodes):
        pinned = [key[len(DATA_LABEL):] for key, value in node["labels"].items()
                  if key.startswith(DATA_LABEL) and str(value).lower() == "true"]
        for service in pinned:
            if service not in owners:
                errors.append(f"swarm node {node['hostname']} ({node['address']}) is no longer in the inventory but "
                              f"holds the data of {service} (node label {DATA_LABEL}{service}), and no host of the "
                              f"inventory takes {service} over: taking the node out would strand that data. Put "
                              f"{node['hostname']} back in the inventory, or move {service}'s data to another host "
                              f"and give it {service} in borgstack_node_data")
    return errors


def cluster_placement_errors(nodes: Any, registry: Any, replicas: Any = None, single_instance: Any = None,
                             backup: Any = "duplicati") -> List[str]:
    """What the enabled services need of the cluster's placement, one message per problem naming the variable and
    the fix (empty for a single host). A pinned service (filter pinned_services: the data services and the apps with
    ``placement: node``) that is enabled needs a host listing it in ``borgstack_node_data`` (else its tasks would
    wait for a node that never comes) and runs once (``swarm_replicas`` of its Compose services other than 1 is
    refused; the ``single_instance`` services are cluster_errors' business). The ``backup`` app reads the volumes it
    backs up on its own node: it must be listed on the host of every enabled pinned service with a ``backup: files``
    volume."""
    nodes = _nodes("cluster_placement_errors", nodes)
    if len(nodes) < 2:
        return []
    if not isinstance(registry, Mapping):
        raise AnsibleFilterError("cluster_placement_errors: expects the service registry")
    replicas = replicas if isinstance(replicas, Mapping) else {}
    pinned = pinned_services(registry)
    enabled = [name for name, svc in registry.items() if isinstance(svc, Mapping) and svc.get("enabled") is True]
    holder: Dict[str, str] = {}
    for host, node in nodes.items():
        data = node.get("data")
        for service in data if isinstance(data, list) else []:
            holder.setdefault(str(service), host)
    errors = []
    for service in pinned:
        if service not in enabled:
            continue
        if service not in holder:
            errors.append(f"{service} is enabled and, on a cluster, runs on the one host that keeps its data, but no "
                          f"host lists it in borgstack_node_data: add {service} to borgstack_node_data of the host "
                          f"whose disk keeps its volumes")
        if service in (single_instance or []):
            continue
        keys = [service, *(registry[service].get("containers") or {})]
        for key in dict.fromkeys(str(k) for k in keys):
            asked = replicas.get(key, 1)
            if asked != 1:
                errors.append(f"swarm_replicas.{key} is {asked!r}: {service} runs once, on the host that keeps its "
                              f"data (two processes on one data directory corrupt it); set it to 1 or remove it")
    if backup in enabled and backup in holder:
        for service in pinned:
            volumes = registry[service].get("volumes") or {}
            backed_up = any(isinstance(v, Mapping) and v.get("backup") == "files" for v in volumes.values())
            if service == backup or service not in enabled or not backed_up or service not in holder:
                continue
            if holder[service] != holder[backup]:
                errors.append(f"{backup} (host {holder[backup]}) backs up the volumes of {service}, which are on "
                              f"host {holder[service]}: a volume is read on its own node only; list {backup} and "
                              f"{service} in borgstack_node_data of the same host")
    return errors


# --- Nodes the inventory no longer has, labels it no longer gives ------------------------------------------------
DATA_LABEL = f"{LABEL_PREFIX}.data."
# Set by the caddy role on an edge node once its certificates volume holds the edge's certificates, CA and ACME
# account (copied from another edge node, or none to copy): Caddy runs only where it is set, so a node that becomes an
# edge never starts an empty Caddy that would ask the CA again. Kept while the node stays an edge.
EDGE_READY_LABEL = f"{LABEL_PREFIX}.edge.ready"


def _seen(filter_name: str, seen: Any) -> List[Mapping[str, Any]]:
    if not isinstance(seen, list) or not all(isinstance(n, Mapping) and n.get("ID") for n in seen):
        raise AnsibleFilterError(f"{filter_name}: expects the list `docker node inspect` prints (each with an ID), "
                                 f"found {seen!r}")
    return seen


def _seen_node(node: Mapping[str, Any]) -> Dict[str, Any]:
    """The parts of one ``docker node inspect`` entry the play uses. The address is the one the node advertises
    (Status.Addr; a manager that listens on every interface shows 0.0.0.0 there, its ManagerStatus has it)."""
    spec = node.get("Spec") or {}
    status = node.get("Status") or {}
    address = str(status.get("Addr") or "")
    if address in ("", "0.0.0.0"):
        address = str((node.get("ManagerStatus") or {}).get("Addr") or "").rsplit(":", 1)[0]
    return {"id": str(node["ID"]), "hostname": str((node.get("Description") or {}).get("Hostname") or node["ID"]),
            "address": address, "role": str(spec.get("Role") or "worker"),
            "availability": str(spec.get("Availability") or "active"), "state": str(status.get("State") or ""),
            "labels": dict(spec.get("Labels") or {})}


def swarm_departures(seen: Any, nodes: Any) -> List[Dict[str, Any]]:
    """The swarm's nodes the inventory no longer has - ``{id, hostname, address, role, availability, state,
    labels}`` each, in the order ``seen`` lists them: a node whose address no host of ``nodes`` (filter
    cluster_nodes) has, and a ``down`` node whose address a live node of the swarm has taken (the host left and
    joined again: its old entry stays behind until a manager removes it)."""
    seen = [_seen_node(node) for node in _seen("swarm_departures", seen)]
    addresses = {str(node.get("address")) for node in _nodes("swarm_departures", nodes).values()}
    live = {node["address"] for node in seen if node["state"] != "down"}
    return [node for node in seen
            if node["address"] not in addresses or (node["state"] == "down" and node["address"] in live)]


def swarm_stale_labels(seen: Any, plan: Any) -> Dict[str, List[str]]:
    """{node ID: [label keys]} - the ``borgstack.*`` labels a node of the plan (filter cluster_plan) carries that the
    plan no longer gives it (a host that stopped holding a service's data, stopped being an edge - its
    ``borgstack.edge.ready`` too, which the caddy role sets on an edge). Other labels are the operator's and stay.
    Nodes the plan does not have are swarm_departures' business."""
    if not isinstance(plan, Mapping) or not isinstance(plan.get("nodes"), Mapping):
        raise AnsibleFilterError("swarm_stale_labels: expects the cluster_plan")
    by_address = {str(node["address"]): node for node in plan["nodes"].values()}
    stale: Dict[str, List[str]] = {}
    for node in (_seen_node(n) for n in _seen("swarm_stale_labels", seen)):
        wanted = by_address.get(node["address"])
        if wanted is None or node["state"] == "down":
            continue
        kept = set(wanted["labels"])
        if _labels_true(wanted["labels"], f"{LABEL_PREFIX}.edge"):
            kept.add(EDGE_READY_LABEL)
        keys = sorted(key for key in node["labels"]
                      if (key == LABEL_PREFIX or key.startswith(LABEL_PREFIX + ".")) and key not in kept)
        if keys:
            stale[node["id"]] = keys
    return stale


def cluster_plan(nodes: Any, managers: Any = 0) -> Dict[str, Any]:
    """The swarm the inventory describes (call after cluster_errors found nothing):
    ``enabled``, ``first_manager`` (initialises the swarm), ``managers``, ``workers`` (inventory order),
    ``nodes.<host>.{address, role, labels}`` and ``peers.<host>`` (the other members' addresses, the only sources
    the firewall lets reach the swarm ports). A single host: enabled false, nothing else."""
    nodes = _nodes("cluster_plan", nodes)
    if len(nodes) < 2:
        return {"enabled": False, "first_manager": None, "managers": [], "workers": [], "nodes": {}, "peers": {}}
    hosts = list(nodes)
    count = _manager_count(nodes, managers)
    managers_list, workers = hosts[:count], hosts[count:]
    plan_nodes = {}
    for host in hosts:
        node = nodes[host]
        data = node.get("data") or []
        labels = {f"{LABEL_PREFIX}.data": str(bool(data)).lower(),
                  f"{LABEL_PREFIX}.edge": str(node.get("edge") is True).lower()}
        labels.update({f"{LABEL_PREFIX}.data.{service}": "true" for service in data})
        plan_nodes[host] = {"address": str(node["address"]),
                            "role": "manager" if host in managers_list else "worker", "labels": labels}
    peers = {host: [plan_nodes[other]["address"] for other in hosts if other != host] for host in hosts}
    return {"enabled": True, "first_manager": hosts[0], "managers": managers_list, "workers": workers,
            "nodes": plan_nodes, "peers": peers}


def cluster_firewall_rules(peers: Any, ports: Any = None) -> List[Dict[str, Any]]:
    """The firewall rules that let the other cluster members (and only them) reach the swarm ports:
    one {port, proto, from, comment} per peer address and port."""
    if not isinstance(peers, list):
        raise AnsibleFilterError(f"cluster_firewall_rules: expects a list of peer addresses, found {peers!r}")
    return [{"port": p["port"], "proto": p["proto"], "from": str(peer), "comment": "Docker Swarm peer"}
            for peer in peers for p in (ports or SWARM_PORTS)]


# --- Services placed on the swarm ------------------------------------------------------------------------------
# Compose keys `docker stack deploy` ignores or refuses, dropped from a service's Compose file (their swarm forms are
# written in its deploy section): the container's name (a task's name is the swarm's; the name stays reachable as
# a network alias), the restart policy, the start order (a stack has none: the playbook orders the services), the
# memory limit, the shared memory size (a tmpfs on /dev/shm instead) and the links to other containers (a swarm has
# none: a name a service needs is an alias on the overlay, settings.internal_aliases).
_SWARM_DROPPED = ("container_name", "restart", "depends_on", "mem_limit", "shm_size", "external_links", "links")
# The suffix of the second alias of the services in settings.internal_aliases: <container name>.internal, a name with
# a top-level domain for a client that refuses a bare host name (Evolution API's global webhook), as the Compose link
# gives it on one host.
INTERNAL_ALIAS_SUFFIX = ".internal"
_PORT = re.compile(r"^(?P<published>[0-9]+):(?P<target>[0-9]+)(?:/(?P<protocol>tcp|udp))?$")
_SIZE = re.compile(r"^(?P<number>[0-9]+)(?P<unit>[bkmg]?)$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
# The Compose file format the rendered stacks declare (every key written below exists in it; healthcheck
# start_interval needs 3.12, which the Docker CLI 25 and later read).
SWARM_STACK_VERSION = "3.12"
# How often a new task's health check runs during its start period. A swarm task enters the service's DNS (the
# name Caddy dials) only once healthy: with the app's own interval (n8n: 15 s) a ready app would wait that long
# unseen, while Caddy holds the requests of a stop-first update.
SWARM_START_INTERVAL = "2s"
# The label of a one-off job in a Compose file (compose_deploy's JOB_LABEL): on a swarm, a replicated-job service.
JOB_LABEL = "org.borgstack.job"
# How many times the swarm runs a failing job before it gives up (the play then fails naming it).
JOB_MAX_ATTEMPTS = 3


def _labels_true(labels: Mapping[str, Any], key: str) -> bool:
    return str(labels.get(key, "")).lower() == "true"


def swarm_hosts(plan: Any, service: Any, stateful: Any = None, edge: Any = None) -> List[str]:
    """The hosts that may run ``service``'s tasks, by the labels ``cluster_plan`` gives them: the host holding its
    data for a stateful service, the edge hosts for an edge service (Caddy), every host otherwise. The service's
    files (configuration, passwords) are written there only. A single host (no cluster): []."""
    if not isinstance(plan, Mapping) or not plan.get("enabled"):
        return []
    nodes = plan.get("nodes") or {}
    if service in (stateful or []):
        return [host for host, node in nodes.items()
                if _labels_true(node.get("labels") or {}, f"{LABEL_PREFIX}.data.{service}")]
    if service in (edge or []):
        return [host for host, node in nodes.items() if _labels_true(node.get("labels") or {}, f"{LABEL_PREFIX}.edge")]
    return list(nodes)


def swarm_step_containers(containers_by_host: Any, host: Any) -> Dict[str, str]:
    """The containers on ``host`` in which the roles' steps after a deployment run (an owner account, a tenant,
    workflows, a first administrator): ``{<Compose service>: <container>}`` for each swarm service whose task runs on
    ``host`` and on no host before it. ``containers_by_host``: ``{host: {<Compose service>: <container>}}`` in play
    order - each host's ``compose_service_swarm_containers`` (the tasks running there). A service with replicas on
    several nodes (Directus) gets its steps once, on the first of them; a service with no task running anywhere, on
    none (the role skips the step)."""
    if not isinstance(containers_by_host, Mapping):
        raise AnsibleFilterError(f"swarm_step_containers expects {{host: {{service: container}}}}, got "
                                 f"{type(containers_by_host).__name__}")
    if not isinstance(host, str) or host not in containers_by_host:
        raise AnsibleFilterError(f"swarm_step_containers: host {host!r} is not one of the hosts given "
                                 f"({', '.join(map(str, containers_by_host)) or 'none'})")
    owners = _step_owners("swarm_step_containers", containers_by_host)
    return {service: container for service, (owner, container) in owners.items() if owner == host}


def _step_owners(filter_name: str, containers_by_host: Mapping[str, Any]) -> Dict[str, tuple]:
    """{<Compose service>: (host, container)}: the first host, in the order given, that runs one of its tasks."""
    owners: Dict[str, tuple] = {}
    for name, containers in containers_by_host.items():
        if containers is None:
            containers = {}
        if not isinstance(containers, Mapping):
            raise AnsibleFilterError(f"{filter_name}: the containers of host {name} are not a mapping: "
                                     f"{containers!r}")
        for service, container in containers.items():
            if container and str(service) not in owners:
                owners[str(service)] = (str(name), str(container))
    return owners


def swarm_step_hosts(containers_by_host: Any) -> Dict[str, str]:
    """``{<Compose service>: host}``: the host that runs each swarm service's steps after a deployment - the one
    ``swarm_step_containers`` gives the service's container to (the first, in the order given, that runs one of its
    tasks). For a step whose result every host needs (Lowcoder asks MongoDB, before its own deployment, whether its
    administrator exists: the first manager renders the stack file from the answer), the other hosts read it from
    that host's variables. A service whose task runs nowhere is not a key."""
    if not isinstance(containers_by_host, Mapping):
        raise AnsibleFilterError(f"swarm_step_hosts expects {{host: {{service: container}}}}, got "
                                 f"{type(containers_by_host).__name__}")
    owners = _step_owners("swarm_step_hosts", containers_by_host)
    return {service: owner for service, (owner, _container) in owners.items()}


# --- Files a service reads, as Docker secrets and configs --------------------------------------------------------
# Docker's limit on a secret's or a config's name, and the characters it allows.
SWARM_OBJECT_NAME_MAX = 64
_OBJECT_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
# Hex digits of the content's SHA-256 in a versioned name: enough to tell versions apart, never the content.
SWARM_OBJECT_DIGEST = 12
SWARM_OBJECT_KINDS = ("secret", "config")


def _bind_mounts(compose: Mapping[str, Any]) -> List[str]:
    """The host paths the Compose file bind-mounts (short-form volumes whose source is an absolute path)."""
    sources = []
    for spec in (compose.get("services") or {}).values():
        for volume in (spec or {}).get("volumes") or []:
            if isinstance(volume, str) and volume.startswith("/"):
                sources.append(volume.split(":", 1)[0])
    return sources


def _ident(value: Any, where: str) -> str:
    """A numeric uid/gid as a string (what a swarm secret or config reference takes); root by name is 0."""
    text = str(value if value is not None else "0")
    if text == "root":
        return "0"
    if not text.isdigit():
        raise AnsibleFilterError(f"swarm_objects: {where} must be a numeric uid/gid (a swarm secret or config is owned "
                                 f"by number), found {value!r}")
    return text


def swarm_objects(files: Any, compose: Any, service: Any, service_dir: Any, project: Any,
                  kind: Any = "secret") -> List[Dict[str, Any]]:
    """The files of ``files`` (``compose_service_secret_files`` for ``kind`` secret, the configuration files for
    ``kind`` config: ``{path, content, owner, group, mode}``, paths under ``service_dir``) that the service's Compose
    file bind-mounts - the file itself, or a directory holding it - as swarm objects: ``[{path, name, source, uid,
    gid, mode}]`` in the order of ``files``. ``name`` is versioned: ``<project>_<service>_<path>_<first 12 hex digits
    of the SHA-256 of kind and content>`` - a new content is a new name (the service is updated to it), the same
    content the same name on every run (nothing changes). The result never holds the content. A file no container
    mounts (a password kept for the operator) is left out: it stays a file on the host."""
    if kind not in SWARM_OBJECT_KINDS:
        raise AnsibleFilterError(f"swarm_objects: kind must be one of {', '.join(SWARM_OBJECT_KINDS)}, found {kind!r}")
    if isinstance(compose, str):
        try:
            compose = yaml.safe_load(compose)
        except yaml.YAMLError as exc:
            raise AnsibleFilterError(f"swarm_objects: {service}'s Compose file is not YAML: {exc}") from exc
    if not isinstance(compose, Mapping):
        raise AnsibleFilterError(f"swarm_objects: {service}'s Compose file has no services")
    if not isinstance(files, list) or not all(isinstance(f, Mapping) and f.get("path") for f in files):
        raise AnsibleFilterError(f"swarm_objects: expects the {kind} files of {service}, a list of {{path, content}}")
    mounts = _bind_mounts(compose)
    base = str(service_dir).rstrip("/")
    out = []
    for item in files:
        path = str(item["path"]).strip("/")
        source = f"{base}/{path}"
        if not any(source == mount or source.startswith(mount.rstrip("/") + "/") for mount in mounts):
            continue
        where = f"{service}'s {kind} file {path}"
        content = item.get("content")
        if not isinstance(content, str):
            raise AnsibleFilterError(f"swarm_objects: {where} has no text content")
        digest = hashlib.sha256(f"{kind}\0{content}".encode()).hexdigest()[:SWARM_OBJECT_DIGEST]
        name = f"{project}_{service}_{_OBJECT_NAME_BAD.sub('-', path)}_{digest}"
        if len(name) > SWARM_OBJECT_NAME_MAX:
            raise AnsibleFilterError(f"swarm_objects: the {kind} name for {where} would be {len(name)} characters "
                                     f"(Docker allows {SWARM_OBJECT_NAME_MAX}): shorten the file's name")
        mode = item.get("mode", "0600" if kind == "secret" else "0644")
        try:
            mode_int = int(str(mode), 8)
        except ValueError as exc:
            raise AnsibleFilterError(f"swarm_objects: {where}: mode {mode!r} is not an octal mode") from exc
        out.append({"path": path, "name": name, "source": source, "uid": _ident(item.get("owner"), f"{where} owner"),
                    "gid": _ident(item.get("group"), f"{where} group"), "mode": mode_int})
    return out


def _objects_for(volume: Any, objects: List[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The references (``{source, target, uid, gid, mode}``) that replace one bind mount: the objects whose source is
    the mounted file, or lies in the mounted directory (at the same place under the target)."""
    if not isinstance(volume, str) or not volume.startswith("/"):
        return []
    parts = volume.split(":")
    if len(parts) < 2:
        return []
    mount, target = parts[0].rstrip("/"), parts[1].rstrip("/")
    refs = []
    for obj in objects:
        source = str(obj["source"])
        if source == mount:
            path = target
        elif source.startswith(mount + "/"):
            path = target + source[len(mount):]
        else:
            continue
        refs.append({"source": obj["name"], "target": path, "uid": obj["uid"], "gid": obj["gid"],
                     "mode": obj["mode"]})
    return refs


def _bytes(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value).strip().lower())
    if not match:
        raise AnsibleFilterError(f"swarm_stack: {where} {value!r} is not a size (e.g. 256m)")
    return int(match["number"]) * _UNITS[match["unit"]]


def _host_ports(ports: Any, where: str) -> List[Dict[str, Any]]:
    """Published ports in the long form, mode host (the routing mesh needs IPVS; a host-mode port answers on the
    node that runs the task, which is where the edge's DNS points)."""
    out = []
    for port in ports or []:
        match = _PORT.match(str(port))
        if not match:
            raise AnsibleFilterError(f"swarm_stack: {where}.ports {port!r}: only <published>:<target>[/tcp|udp] can be "
                                     f"placed on a swarm (a host address cannot be bound by a swarm service)")
        out.append({"target": int(match["target"]), "published": int(match["published"]),
                    "protocol": match["protocol"] or "tcp", "mode": "host"})
    return out


def _is_job(spec: Mapping[str, Any]) -> bool:
    """A one-off job of the Compose file (a migration): labelled org.borgstack.job (what compose_deploy reads)."""
    labels = spec.get("labels")
    if isinstance(labels, Mapping):
        return str(labels.get(JOB_LABEL, "")).lower() == "true"
    return f"{JOB_LABEL}=true" in [str(label) for label in labels or []]


def _swarm_job(key: str, spec: Mapping[str, Any], service: str, settings: Mapping[str, Any]) -> Dict[str, Any]:
    """A one-off job as a swarm job (mode replicated-job): one task run to completion, retried on failure (at most
    JOB_MAX_ATTEMPTS times), never restarted once done; every ``docker stack deploy`` of it runs it again (its own
    marker makes that a no-op when nothing changed). A job has no rolling update and no name on the network."""
    replicas = (settings.get("replicas") or {}).get(key, 1)
    if replicas != 1:
        raise AnsibleFilterError(f"swarm_stack: swarm_replicas.{key} is {replicas!r}: {service}'s {key} is a one-off "
                                 f"job that runs once per deployment; remove it")
    out = {k: v for k, v in spec.items() if k not in _SWARM_DROPPED}
    out["networks"] = [settings["network"]]
    deploy: Dict[str, Any] = {"mode": "replicated-job", "replicas": 1,
                              "restart_policy": {"condition": "on-failure", "delay": "5s",
                                                 "max_attempts": JOB_MAX_ATTEMPTS}}
    # Its volume (a marker: the work is done once per image) stays on one node: the service's own for a pinned
    # service, a node holding data otherwise (the database it migrates is there).
    label = f"data.{service}" if service in (settings.get("stateful") or []) else "data"
    deploy["placement"] = {"constraints": [f"node.labels.{LABEL_PREFIX}.{label} == true"]}
    if spec.get("mem_limit"):
        deploy["resources"] = {"limits": {"memory": str(spec["mem_limit"])}}
    out["deploy"] = deploy
    return out


def _swarm_service(key: str, spec: Mapping[str, Any], service: str, settings: Mapping[str, Any]) -> Dict[str, Any]:
    if _is_job(spec):
        return _swarm_job(key, spec, service, settings)
    where = f"{service}'s Compose service {key}"
    stateful = service in (settings.get("stateful") or [])
    edge = service in (settings.get("edge") or [])
    # The Compose file may say how many (n8n's workers: deploy.replicas, from the registry); swarm_replicas wins.
    own = spec.get("deploy") if isinstance(spec.get("deploy"), Mapping) else {}
    replicas = (settings.get("replicas") or {}).get(key, own.get("replicas", 1))
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise AnsibleFilterError(f"swarm_stack: swarm_replicas.{key} must be a whole number from 1 (found {replicas!r})")
    single = bool({key, service} & set(settings.get("single") or []))
    if replicas != 1 and (stateful or edge or single):
        raise AnsibleFilterError(f"swarm_stack: swarm_replicas.{key} is {replicas}: {service} runs once per node "
                                 f"that holds it (its data, or the edge's ports); set it to 1 or remove it")
    out = {k: v for k, v in spec.items() if k not in _SWARM_DROPPED}
    network = settings["network"]
    alias = spec.get("container_name")
    aliases = [alias] if alias else []
    if alias and key in (settings.get("internal_aliases") or []):
        aliases.append(f"{alias}{INTERNAL_ALIAS_SUFFIX}")
    out["networks"] = {network: {"aliases": aliases}} if aliases else [network]
    if spec.get("ports"):
        out["ports"] = _host_ports(spec["ports"], where)
    volumes = list(out.get("volumes") or [])
    # A bind-mounted file that is a swarm secret or config (filter swarm_objects) is mounted from the swarm at the
    # same path instead: the node needs no copy of it, and a new version updates the service.
    for kind in ("secrets", "configs"):
        objects = list(settings.get(kind) or [])
        refs = []
        for volume in list(volumes):
            found = _objects_for(volume, objects)
            if found:
                volumes.remove(volume)
                refs.extend(found)
        if refs:
            out[kind] = refs
    if spec.get("shm_size"):
        volumes.append({"type": "tmpfs", "target": "/dev/shm",
                        "tmpfs": {"size": _bytes(spec["shm_size"], f"{where}.shm_size")}})
    if volumes:
        out["volumes"] = volumes
    else:
        out.pop("volumes", None)
    health = spec.get("healthcheck")
    if isinstance(health, Mapping) and health.get("start_period") and "start_interval" not in health:
        out["healthcheck"] = {**health, "start_interval": SWARM_START_INTERVAL}
    # Two processes on one data directory (or on one n8n's triggers, one WhatsApp session, one host port) must
    # never overlap: those stop first; the rest start the new task before stopping the old one.
    order = "stop-first" if (stateful or edge or single or key in (settings.get("stop_first") or [])) else "start-first"
    deploy: Dict[str, Any] = {
        "endpoint_mode": "dnsrr",
        "restart_policy": {"condition": "any", "delay": "5s"},
        "update_config": {"parallelism": 1, "order": order, "failure_action": "rollback", "monitor": "30s"},
        "rollback_config": {"parallelism": 1, "order": order},
    }
    if edge:
        # One Caddy on each edge node: each answers 80/443 on its own address.
        deploy["mode"] = "global"
        # ... once the caddy role has given the node the edge's certificates (EDGE_READY_LABEL).
        deploy["placement"] = {"constraints": [f"node.labels.{LABEL_PREFIX}.edge == true",
                                               f"node.labels.{EDGE_READY_LABEL} == true"]}
    else:
        deploy["replicas"] = replicas
        if stateful:
            deploy["placement"] = {"constraints": [f"node.labels.{LABEL_PREFIX}.data.{service} == true"]}
    if spec.get("mem_limit"):
        deploy["resources"] = {"limits": {"memory": str(spec["mem_limit"])}}
    out["deploy"] = deploy
    return out


def swarm_stack(compose: Any, service: Any, settings: Any, part: Any = "all") -> Dict[str, Any]:
    """A service's stack file for ``docker stack deploy``, derived from the Compose file its role rendered (the one
    place that describes the service): every Compose service placed by the node labels - a stateful service
    (``settings.stateful``) pinned to the node holding its data, an edge service (``settings.edge``, Caddy) once on
    each edge node with host-mode ports, the others at ``settings.replicas.<key>`` (default 1) anywhere - with
    ``endpoint_mode: dnsrr`` (no IPVS needed), its memory limit, a rolling update that rolls back on failure
    (``start-first`` unless stateful, edge, single-instance or in ``settings.stop_first``), its container name as an
    alias on the overlay network ``settings.network`` (every address the contracts give still answers; for a
    Compose service in ``settings.internal_aliases`` also ``<container name>.internal``, the name a Compose link
    gives on one host: no links on a swarm, dropped with the other keys it ignores), and every
    network it named replaced by that overlay. A one-off job (label org.borgstack.job: a migration) becomes a swarm
    job (``replicated-job``): one task run to completion, on a node holding data (its marker volume stays there).
    ``part``: ``all``, ``jobs`` (the jobs alone: the play deploys them and waits until they complete, a stack has no
    depends_on) or ``services`` (all but the jobs: each ``docker stack deploy`` of a job runs it again)."""
    if isinstance(compose, str):
        try:
            compose = yaml.safe_load(compose)
        except yaml.YAMLError as exc:
            raise AnsibleFilterError(f"swarm_stack: {service}'s Compose file is not YAML: {exc}") from exc
    if not isinstance(compose, Mapping) or not isinstance(compose.get("services"), Mapping):
        raise AnsibleFilterError(f"swarm_stack: {service}'s Compose file has no services")
    if not isinstance(settings, Mapping) or not settings.get("network"):
        raise AnsibleFilterError("swarm_stack: settings.network (the overlay network) is required")
    if part not in ("all", "jobs", "services"):
        raise AnsibleFilterError(f"swarm_stack: part must be all, jobs or services, found {part!r}")
    stack: Dict[str, Any] = {"version": SWARM_STACK_VERSION, "services": {
        key: _swarm_service(str(key), spec or {}, str(service), settings) for key, spec in compose["services"].items()
        if part == "all" or (part == "jobs") == _is_job(spec or {})}}
    stack["networks"] = {settings["network"]: {"external": True}}
    if compose.get("volumes"):
        stack["volumes"] = compose["volumes"]
    # The secrets and configs the services mount exist already (the first manager created them): external.
    for kind in ("secrets", "configs"):
        names = sorted({ref["source"] for spec in stack["services"].values() for ref in spec.get(kind) or []})
        if names:
            stack[kind] = {name: {"external": True} for name in names}
    return stack


def swarm_image_updates(stack: Any, project: Any, running: Any) -> Dict[str, Dict[str, str]]:
    """The swarm services of a stack file (filter swarm_stack) that exist and will get another image: an update, as
    compose_deploy's ``image_updates`` on one host - {<project>_<key>: {from, to}}. ``running``: the lines ``docker
    service inspect --format '{{.Spec.Name}} {{.Spec.TaskTemplate.ContainerSpec.Image}}'`` printed (a service not
    deployed yet has none: a first deploy is no update). The image a stack deploy gives a service is the reference
    written (resolve_image never)."""
    if not isinstance(stack, Mapping) or not isinstance(stack.get("services"), Mapping):
        raise AnsibleFilterError("swarm_image_updates: expects a stack file (filter swarm_stack)")
    if not isinstance(running, list):
        raise AnsibleFilterError(f"swarm_image_updates: expects the lines of docker service inspect, found {running!r}")
    current = dict(str(line).split(" ", 1) for line in running if " " in str(line).strip())
    updates = {}
    for key, spec in stack["services"].items():
        name = f"{project}_{key}"
        wanted = str((spec or {}).get("image") or "")
        if name in current and wanted and current[name].strip() != wanted:
            updates[name] = {"from": current[name].strip(), "to": wanted}
    return updates


def swarm_first_start(stack: Any, project: Any, running: Any) -> Dict[str, Any]:
    """The stack file to deploy first when a service with replicas is not deployed yet: that service at one replica,
    the others as they are. An app's first task installs its empty database (Directus' bootstrap seeds its tables,
    runs its migrations and creates the first administrator, with no lock): two replicas started together on an
    empty database race each other, and one that fails between the tables and the administrator leaves a database
    that says it is installed and has no administrator. The play deploys this stack, waits until the one task runs,
    then deploys the whole one (the swarm adds the other replicas to an installed database). ``running``: the lines
    ``docker service inspect --format '{{.Spec.Name}} ...'`` printed (the services deployed already). The stack
    itself when nothing is new with replicas: no first start to make."""
    if not isinstance(stack, Mapping) or not isinstance(stack.get("services"), Mapping):
        raise AnsibleFilterError("swarm_first_start: expects a stack file (filter swarm_stack)")
    if not isinstance(running, list):
        raise AnsibleFilterError(f"swarm_first_start: expects the lines of docker service inspect, found {running!r}")
    deployed = {str(line).split(" ", 1)[0] for line in running if str(line).strip()}
    services = {}
    for key, spec in stack["services"].items():
        deploy = (spec or {}).get("deploy") or {}
        replicas = deploy.get("replicas", 1) if deploy.get("mode", "replicated") == "replicated" else 1
        if f"{project}_{key}" not in deployed and isinstance(replicas, int) and replicas > 1:
            spec = {**spec, "deploy": {**deploy, "replicas": 1}}
        services[key] = spec
    return {**stack, "services": services}


def cluster_ram_plan(plan: Any, ram_by_host: Any, registry: Any) -> Dict[str, Any]:
    """The RAM plan of a cluster, node by node. Each node's RAM (``ram_by_host``: {host: MiB}) is split by
    ``ram_budget`` among the containers that may run there: a stateful service's (the registry's data layer, and the
    apps with ``placement: node``) on the node holding its data, the proxy layer's on the edge nodes, the other apps'
    on every node - a container with N replicas counted for the share one node carries when the swarm spreads them
    (ceil(N / nodes)). Every task of a swarm service has one limit: each container gets the smallest limit any of its
    nodes gives it. PostgreSQL's, Redis' and MongoDB's derived settings come from the plan of the node that holds
    them. The result has ``ram_budget``'s shape (its totals summed over the nodes) plus ``nodes.<host>``, each node's
    own plan."""
    if not isinstance(plan, Mapping) or not plan.get("enabled"):
        raise AnsibleFilterError("cluster_ram_plan: expects an enabled cluster_plan (one host: use ram_budget)")
    if not isinstance(ram_by_host, Mapping):
        raise AnsibleFilterError(f"cluster_ram_plan: expects {{host: RAM in MiB}}, found {ram_by_host!r}")
    if not isinstance(registry, Mapping):
        raise AnsibleFilterError("cluster_ram_plan: expects the service registry")
    nodes = plan.get("nodes") or {}
    specs = memory_specs(registry)
    # {container: (service, layer)} for the containers the RAM plan sizes.
    # An app pinned to the node holding its volumes (placement: node) is counted there only, as a data service is.
    owner = {key: (name, "data" if svc.get("placement") == "node" else svc.get("layer"))
             for name, svc in registry.items() if isinstance(svc, Mapping)
             for key in (svc.get("containers") or {}) if key in specs}
    per_host: Dict[str, Dict[str, Dict[str, Any]]] = {host: {} for host in nodes}
    hosts_of: Dict[str, List[str]] = {}
    for key, spec in specs.items():
        service, layer = owner.get(key, (key, "apps"))
        if layer == "data":
            hosts = [h for h, n in nodes.items()
                     if _labels_true(n.get("labels") or {}, f"{LABEL_PREFIX}.data.{service}")]
        elif layer == "proxy":
            hosts = [h for h, n in nodes.items() if _labels_true(n.get("labels") or {}, f"{LABEL_PREFIX}.edge")]
        else:
            hosts = []
        hosts = hosts or list(nodes)
        hosts_of[key] = hosts
        share = 1 if layer in ("data", "proxy") else math.ceil(spec["count"] / len(hosts))
        for host in hosts:
            per_host[host][key] = dict(spec, count=share)
    node_plans = {}
    for host, host_specs in per_host.items():
        if host not in ram_by_host:
            raise AnsibleFilterError(f"cluster_ram_plan: no RAM size for host {host} (borgstack_ram_mb)")
        try:
            node_plans[host] = ram_budget(ram_by_host[host], host_specs)
        except AnsibleFilterError as exc:
            raise AnsibleFilterError(f"host {host}: {exc}") from exc
    services = {}
    for key, spec in specs.items():
        limit = min(node_plans[h]["services"][key]["limit_mb"] for h in hosts_of[key])
        services[key] = {"limit_mb": limit, "count": spec["count"]}
    out: Dict[str, Any] = {
        field: sum(p[field] for p in node_plans.values())
        for field in ("total_mb", "reserve_mb", "budget_mb", "allocated_mb")}
    out["services"] = services
    for derived in ("postgresql", "redis", "mongodb"):
        holders = [p[derived] for h in hosts_of.get(derived, []) for p in [node_plans[h]] if derived in p]
        if holders:
            out[derived] = holders[0]
    out["nodes"] = node_plans
    return out


# The data services the host's backup job dumps (roles/backup), in the order it takes them: the job runs where the
# first enabled one is held.
BACKUP_SERVICES = ("postgresql", "mongodb", "redis")


def cluster_backup_host(plan: Any, enabled: Any) -> Dict[str, Any]:
    """Where the backup job runs on a cluster: ``{host, services, errors}``. ``enabled`` is the data services that
    are on (names); the job dumps them through their tasks on one node - the node holding PostgreSQL (else MongoDB,
    else Redis) - since a service's Redis keys are taken right after its database, in the same run. A data service
    held by another host is an error naming both hosts and the fix (validation refuses it before any change). No
    cluster, or nothing to dump: host None, no error."""
    empty: Dict[str, Any] = {"host": None, "services": [], "errors": []}
    if not isinstance(plan, Mapping) or not plan.get("enabled"):
        return empty
    if not isinstance(enabled, (list, tuple)):
        raise AnsibleFilterError(f"cluster_backup_host: expects the list of enabled services, found {enabled!r}")
    dumped = [service for service in BACKUP_SERVICES if service in enabled]
    if not dumped:
        return empty
    holders = {service: swarm_hosts(plan, service, [service]) for service in dumped}
    first = dumped[0]
    host = holders[first][0] if holders[first] else None
    errors = []
    for service in dumped:
        held = holders[service]
        if not held:
            errors.append(f"backup: no host lists {service} in borgstack_node_data, so no node can dump it. Add it to "
                          f"the borgstack_node_data of the host that holds its data.")
        elif host is not None and held[0] != host:
            errors.append(f"backup: {service} is held by {held[0]} but {first} by {host} (borgstack_node_data): the "
                          f"backup job runs on one node and dumps through the tasks there ({first} first, then the "
                          f"Redis keys and the other databases in the same run). Hold {service} on {host} too "
                          f"(borgstack_node_data), or set backup_enabled: false and dump it another way.")
    return {"host": host if not errors else None, "services": dumped, "errors": errors}


class FilterModule(NamedFilters):
    """Cluster (Docker Swarm) filters."""

    FILTERS = (cluster_nodes, cluster_errors, cluster_placement_errors, cluster_plan, cluster_firewall_rules,
               swarm_hosts, swarm_stack, cluster_ram_plan, swarm_departures, swarm_stale_labels, swarm_image_updates,
               swarm_first_start, swarm_objects, swarm_step_containers, swarm_step_hosts, cluster_backup_host)
