#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: stack_health
short_description: Wait until every BorgStack service is up - containers, Docker health, endpoints, TLS, logins
version_added: 0.1.0
description:
  - Runs on the Docker host and checks each service of the stack in turn - its containers exist and run, their
    Docker health is C(healthy), its internal HTTP endpoint answers as expected, its public URL answers over TLS
    through the reverse proxy, and its database accepts a real login.
  - Checks that fail are retried with exponential backoff (1, 2, 4, 8 and then every 15 seconds) until all pass
    or O(timeout) runs out. A service whose checks all passed once is not checked again.
  - When services are still failing at the deadline, the module fails with a message that names every failing
    service with its failing checks and the last O(log_lines) lines of each of its containers' logs, and returns
    the full report too.
  - Internal endpoints and databases are reached at the container's IP address on O(network), read with
    C(docker inspect); the host can reach containers there even on an C(internal) network.
  - On a Docker Swarm (O(swarm_stack) set) the module runs on a manager and checks, per service, that each of
    its swarm services (O(services[].swarm_services)) runs all the tasks it wants (a task with a healthcheck counts
    once healthy), on which nodes they run, and which task keeps failing (two or more failed or rejected tasks in
    one slot), with its last error and the last O(log_lines) lines of its newest failed task (C(docker service
    logs), from whichever node ran it); then, as on one host, its internal endpoint and its database login, on
    the overlay network O(network); then the public URL. The containers themselves (state, Docker health) are
    not inspected there - they run on other nodes; the swarm's task states stand for them.
  - On a swarm the internal endpoints and logins are reached from the network namespace of a container of this
    node attached to O(network) (any task of the stack running here; the module enters it with C(setns), as root,
    and comes back), and the tasks' container names (their aliases on the overlay) are resolved by Docker's
    embedded DNS there. Two C(docker) calls per run and then only the probes themselves - fewer round trips than
    a C(docker exec) into each service's task on the node that runs it (delegated there, one exec per check, and
    an image with the right client in it), or a probe container started and removed on each run (and an image
    for it on this node). Without such a container on this node those two checks fail and say so.
  - Only reads. The Docker CLI is used for C(docker inspect) and C(docker logs); PostgreSQL logins need psycopg 3;
    Redis is spoken to over a plain socket (C(AUTH), C(SELECT), C(PING)), without a Redis library.
extends_documentation_fragment:
  - borgstack.stack.attributes.read_only
  - borgstack.stack.attributes
attributes:
  check_mode:
    details:
      - The module only reads, so check mode runs every check exactly as a normal run does.
  idempotent:
    description:
      - The module never changes anything; RV(ignore:changed) is always V(false).
options:
  services:
    description:
      - The services to check, in the order they are reported.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the service in the report and the messages (V(n8n), V(chatwoot)).
        type: str
        required: true
      container:
        description:
          - Name of the service's container (V(borgstack-n8n-1)).
          - Exactly one of O(services[].container) and O(services[].containers) is required.
        type: str
      containers:
        description:
          - Names of the containers of a service that runs several (Chatwoot's web and worker).
          - The first one answers O(services[].internal_check) and, without O(services[].database.container)
            or O(services[].database.host), the database check.
        type: list
        elements: str
      internal_url:
        description:
          - A URL to GET from the host, expected to answer C(200) - for example
            V(http://172.29.1.5:5678/healthz/readiness).
          - Prefer O(services[].internal_check), which does not depend on an address that changes when the
            container is recreated. Mutually exclusive with it.
        type: str
      internal_check:
        description:
          - An endpoint of the service's (first) container, reached at its IP address on O(network).
        type: dict
        suboptions:
          type:
            description:
              - V(http) sends a GET and checks the status and, optionally, the body.
              - V(tcp) only checks that the port accepts a connection.
            type: str
            choices: [http, tcp]
            default: http
          port:
            description:
              - Port the service listens on inside the container.
            type: int
            required: true
          path:
            description:
              - Path (with query string, if any) of the GET.
            type: str
            default: /
          expect_status:
            description:
              - HTTP status codes that count as healthy.
            type: list
            elements: int
            default: [200]
          expect_body:
            description:
              - A regular expression that must be found (Python C(re.search)) in the first 64 KiB of the body.
            type: str
      public_url:
        description:
          - The service's public URL, usually V(https://...) through Caddy - for example
            V(https://n8n.lab.borgstack.test/healthz).
          - Redirects are not followed; list C(301) or C(308) in O(services[].public_expect_status) when a
            redirect is the expected answer.
        type: str
      public_expect_status:
        description:
          - HTTP status codes of O(services[].public_url) that count as healthy.
        type: list
        elements: int
        default: [200]
      swarm_services:
        description:
          - With O(swarm_stack), the swarm services that make up the service (V(borgstack_n8n),
            V(borgstack_n8n-worker)). Defaults to O(swarm_stack), an underscore and O(services[].name).
        type: list
        elements: str
      database:
        description:
          - A database the service uses, checked with a real login.
        type: dict
        suboptions:
          type:
            description:
              - V(postgresql) logs in with psycopg and runs C(SELECT 1).
              - V(redis) sends C(AUTH) (when O(services[].database.password) is set), C(SELECT) (when
                O(services[].database.db) is not V(0)) and C(PING) over a socket.
            type: str
            required: true
            choices: [postgresql, redis]
          container:
            description:
              - Container of the database server; its IP address on O(network) is used.
              - Without it and without O(services[].database.host), the service's own (first) container is
                used, which suits a service that is itself a database (the stack's Redis).
            type: str
          host:
            description:
              - Host name or IP address of the database server, instead of O(services[].database.container).
            type: str
          port:
            description:
              - Port of the database server. Defaults to V(5432) for PostgreSQL and V(6379) for Redis.
            type: int
          dbname:
            description:
              - PostgreSQL database to log in to. Defaults to the user's name, as libpq does.
            type: str
          user:
            description:
              - User to log in as. Required for PostgreSQL.
              - For Redis, an ACL user name sent with C(AUTH); leave it out for the default user.
            type: str
          password:
            description:
              - Password of O(services[].database.user). Never returned or shown.
            type: str
          db:
            description:
              - Redis logical database to C(SELECT) after logging in.
            type: int
            default: 0
  network:
    description:
      - Docker network whose container IP addresses are used for internal checks and databases.
      - With O(swarm_stack), the overlay network the stack's tasks share (V(borgstack_cluster)).
    type: str
    default: borgstack_internal
  public_resolve:
    description:
      - Host name to IP address map, like C(curl --resolve) - a public URL whose host name is listed is connected
        to that address (Caddy's) while TLS SNI, certificate name and C(Host) header still use the host name.
      - Host names not listed are resolved normally.
    type: dict
  ca_path:
    description:
      - PEM file with the CA certificates to verify TLS against, for example Caddy's internal root CA exported to
        the host. Without it the system's trust store is used.
    type: path
  validate_certs:
    description:
      - Verify TLS certificates and host names. Only V(false) for a first look at a broken setup.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to keep retrying failing checks. V(0) checks once.
      - A single probe waits at most 10 seconds, so the run can last up to one round of probes longer.
    type: int
    default: 300
  log_lines:
    description:
      - Number of the last log lines of each container of a failing service to show and return.
    type: int
    default: 20
  swarm_stack:
    description:
      - Name of the Docker Swarm stack (V(borgstack)) the services run in. Set it on a cluster and run the module
        on a manager; the checks are then the swarm's (see the description). Unset on a single host.
    type: str
requirements:
  - The Docker CLI on the host.
  - psycopg 3 (Debian C(python3-psycopg)) when a PostgreSQL login is checked.
notes:
  - Log lines and reasons have every O(services[].database.password) masked, besides Ansible's own masking of
    C(no_log) values.
seealso:
  - name: Docker container health checks
    description: How Docker decides that a container is healthy.
    link: https://docs.docker.com/reference/dockerfile/#healthcheck
"""

EXAMPLES = r"""
- name: Wait until the stack answers
  borgstack.stack.stack_health:
    network: borgstack_internal
    public_resolve:
      n8n.lab.borgstack.test: 198.51.100.10
    ca_path: /etc/borgstack/caddy-root.crt
    timeout: 300
    services:
      - name: postgresql
        container: borgstack-postgresql-1
        database:
          type: postgresql
          user: postgres
          password: "{{ postgresql_service.secrets.postgresql_superuser }}"
      - name: redis
        container: borgstack-redis-1
        database:
          type: redis
          password: "{{ redis_service.secrets.redis_password }}"
      - name: n8n
        container: borgstack-n8n-1
        internal_check:
          port: 5678
          path: /healthz/readiness
        public_url: https://n8n.lab.borgstack.test/healthz
        database:
          type: postgresql
          container: borgstack-postgresql-1
          dbname: n8n
          user: n8n
          password: "{{ n8n_postgresql_password }}"
      - name: chatwoot
        containers: [borgstack-chatwoot-1, borgstack-chatwoot-worker-1]
        internal_check:
          port: 3000
          path: /api
          expect_body: '"version"'
  register: stack_health

- name: Show the table
  ansible.builtin.debug:
    msg: "{{ stack_health.table }}"
"""

RETURN = r"""
report:
  description: One entry per service, in the order of O(services).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the service.
      type: str
      returned: always
    status:
      description: V(ok) when every check passed, V(failing) otherwise.
      type: str
      returned: always
    checks:
      description:
        - Result of each check - V(ok), V(failing) followed by a colon and the reason, or V(skipped) when the
          check is not configured (or, for C(health), when no container runs).
        - C(health) is V(ok) for a container without a healthcheck; RV(report[].docker_health) tells them apart.
      type: dict
      returned: always
      sample:
        container: ok
        health: ok
        internal: ok
        public: "failing: GET https://n8n.lab.borgstack.test/healthz (via 198.51.100.10) answered 502, expected 200"
        database: skipped
    url:
      description: The public URL, or else the internal URL, or null.
      type: str
      returned: always
    elapsed:
      description: Seconds from the start until the service passed (or until the last check, when failing).
      type: float
      returned: always
    attempts:
      description: How many rounds of checks the service needed.
      type: int
      returned: always
    containers:
      description: The service's containers.
      type: list
      elements: str
      returned: always
    docker_health:
      description: Docker health status of each running container - C(healthy), C(starting), C(unhealthy) or
        C(none) when it has no healthcheck.
      type: dict
      returned: always
      sample: {borgstack-n8n-1: healthy}
    replicas:
      description:
        - With O(swarm_stack), one entry per swarm service - running and desired task counts, the nodes of the
          running tasks, the task slots that keep failing (C(task), C(id), C(failures), C(node), C(error)) and the
          reasons pending tasks give.
      type: list
      elements: dict
      returned: when O(swarm_stack) is set
      sample:
        - service: borgstack_directus
          running: 1
          desired: 2
          nodes: [node-2]
          failing_tasks:
            - {task: borgstack_directus.2, id: x3k9, failures: 4, node: node-3, error: "task: non-zero exit (1)"}
          pending: []
    logs:
      description:
        - The last O(log_lines) log lines of each container, by container name; on a swarm, of each task that keeps
          failing (by task slot), else of each swarm service that does not run all its tasks.
      type: dict
      returned: when the service is failing and O(log_lines) is not 0
  sample:
    - name: n8n
      status: ok
      checks: {container: ok, health: ok, internal: ok, public: ok, database: ok}
      url: https://n8n.lab.borgstack.test/healthz
      elapsed: 12.4
      attempts: 4
      containers: [borgstack-n8n-1]
      docker_health: {borgstack-n8n-1: healthy}
failing:
  description: Names of the services that were still failing at the deadline.
  returned: always
  type: list
  elements: str
  sample: [redis]
table:
  description:
    - A printable table, one line per service (C(service | url | status)) after a header and a rule.
    - With O(swarm_stack) the status is followed by each swarm service's running/desired tasks and nodes.
  returned: always
  type: list
  elements: str
  sample:
    - "service    | url                                    | status"
    - "-----------+----------------------------------------+-------"
    - "postgresql | -                                      | ok"
    - "n8n        | https://n8n.lab.borgstack.test/healthz | ok"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgstack.stack.plugins.module_utils._health import (
    Probe,
    StackHealth,
    stack_health_module_kwargs,
)
from ansible_collections.borgstack.stack.plugins.module_utils._psycopg import HAS_PSYCOPG, fail_without_psycopg


def main() -> None:
    module = AnsibleModule(**stack_health_module_kwargs())
    params = module.params
    needs_psycopg = any((service.get("database") or {}).get("type") == "postgresql" for service in params["services"])
    if needs_psycopg and not HAS_PSYCOPG:
        fail_without_psycopg(module)

    checker = StackHealth(
        params["services"],
        Probe(module),
        network=params["network"],
        public_resolve=params["public_resolve"],
        ca_path=params["ca_path"],
        validate_certs=params["validate_certs"],
        timeout=params["timeout"],
        log_lines=params["log_lines"],
        swarm_stack=params["swarm_stack"],
    )
    result = checker.run()
    if result["failing"]:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
