#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: compose_deploy
short_description: Deploy or remove one service of a shared Docker Compose project, in one call
version_added: 0.3.0
description:
  - Deploys one service of the BorgStack Compose project from its own Compose file, C(services/<name>/compose.yaml)
    under O(project_dir), in one process on the target host. The project is shared by every service, each with its
    own file, so the other services' containers are never treated as orphans (C(COMPOSE_IGNORE_ORPHANS=true)).
  - With O(state=present), in this order. The Docker engine must answer (C(docker version)). The new Compose file is
    validated (C(docker compose config)) before anything is written; with O(pull=never) every image it declares must
    already be on the host. Then the service directory, the extra directories, the config files, the secret files,
    C(secrets.env) and C(compose.yaml) are compared with what is on disk (content, owner, group, mode) and only what
    differs is written, each file atomically (a temp file in the same directory renamed over the live one). The new
    C(compose.yaml) is validated again, with every file it reads in place, before it replaces the live one.
  - Then each declared service's container is inspected (one C(docker container inspect) for all). A container that is
    missing, not running, or has another Compose configuration hash (C(docker compose config --hash)) is brought up;
    one changed by hand with C(docker) where Compose does not look (a network disconnected or connected,
    C(docker update --memory), another restart policy, another image behind the declared tag) is recreated. When a
    config file, a secret file or C(secrets.env) changed in content, the service's containers are recreated too,
    since they read those files when they start. All of this is one
    C(docker compose up --detach --wait [--force-recreate] SERVICE...), which waits for the healthchecks; when
    everything runs but a healthcheck still says C(starting), the same command only waits (not a change).
  - Containers of the project created from this service's Compose file (Compose's config_files label) for a service
    the file no longer declares are removed. Data volumes whose root directory lost its owner, group or mode are put
    back.
  - One-off job containers (label C(org.borgstack.job=true), such as migrations) are not compared as running
    services; a job that exited 0 with the declared configuration is done and is not run again.
  - An update is a run in which a running service's container gets another image reference (the operator changed
    the image). With O(update_dump), the service's PostgreSQL database is dumped first (C(pg_dump -Fc) through the
    PostgreSQL container, into a root-only file). With O(rollback=true), when the new version does not become
    healthy within O(wait_timeout), its containers are stopped, the database is restored from that dump (the new
    version's migrations may have run), every file this run wrote is put back, the previous image reference is made
    to name the image the container ran, the previous version is brought up again and waited for, and the run fails
    with a message naming both versions and the new version's last log lines. A run without an image change takes no
    dump.
  - With O(state=absent), when the service's Compose file exists, its containers are removed (C(docker compose down)
    on that file only); its named volumes only with O(purge=true). The files are kept.
extends_documentation_fragment:
  - borgstack.stack.attributes
attributes:
  check_mode:
    details:
      - Reads and compares as a normal run does (a new Compose file is validated from a temp copy, then deleted, and
        compared with the containers as the new file declares them); writes, starts, removes and chmods nothing.
      - On a host without Docker, reports that the service would be deployed instead of failing.
  diff_mode:
    details:
      - Before and after text of the config files and the Compose file. For secret files and C(secrets.env), only the
        path and C((secret content changed)), never their content.
      - The runtime differences (containers, volumes), one line each.
  idempotent:
    description:
      - A run right after a converging one finds nothing to change and reports RV(ignore:changed=false).
options:
  name:
    description: The service's directory name, C(services/<name>/) under O(project_dir).
    type: str
    required: true
  project:
    description: The Compose project name (shared by all services).
    type: str
    default: borgstack
  project_dir:
    description: The Compose project directory.
    type: path
    default: /opt/borgstack
  state:
    description: Deploy (V(present)) or remove the containers (V(absent)).
    type: str
    choices: [present, absent]
    default: present
  compose:
    description:
      - The text of the service's Compose file, written to C(services/<name>/compose.yaml). Required with
        O(state=present). Paths inside it must be absolute.
    type: str
  files:
    description: Config files, relative to the service's directory.
    type: list
    elements: dict
    default: []
    suboptions: &file_entry
      path: &relative_path
        description: Path relative to C(services/<name>/).
        type: str
        required: true
      content:
        description: The file's text.
        type: str
        required: true
      owner: &owner
        description: Owner, a user name or a numeric uid. Default V(root).
        type: raw
      group: &group
        description: Group, a name or a numeric gid. Default V(root).
        type: raw
      mode:
        description: Octal mode as a string (V("0640")). Default V("0644") in O(files), V("0600") in O(secret_files).
        type: raw
  secret_files:
    description:
      - Config files holding secrets; same keys as O(files), mode V("0600") unless given.
      - Their content is never shown in the output or the diff (the C(content) suboption is no_log); their paths,
        owners and modes are.
    type: list
    elements: dict
    default: []
    suboptions: *file_entry
  env:
    description:
      - Secret environment, written to C(services/<name>/secrets.env) (root, V("0600")) as C(KEY="json string") lines
        under a header. Never shown.
    type: dict
    default: {}
  dirs:
    description: Extra directories, relative to the service's directory.
    type: list
    elements: dict
    default: []
    suboptions:
      path: *relative_path
      owner: *owner
      group: *group
      mode:
        description: Octal mode as a string. Default V("0750").
        type: raw
  volumes:
    description: Data volumes whose root directory must keep an owner, group and mode (healed when changed by hand).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Volume name (C(docker volume ls)).
        type: str
        required: true
      owner:
        description: Numeric owner (uid) of the volume's root directory.
        type: int
      group:
        description: Numeric group (gid).
        type: int
      mode:
        description: Octal mode, as a string (V("0750")).
        type: str
  pull:
    description:
      - Image pull policy of C(docker compose up). With V(never), a declared image missing on the host fails the run
        before anything is written.
    type: str
    choices: [missing, always, never]
    default: missing
  wait_timeout:
    description: Seconds C(docker compose up --wait) may take for the containers to become healthy.
    type: int
    default: 600
  purge:
    description: With O(state=absent), also delete the service's named volumes. Destroys its data.
    type: bool
    default: false
  rollback:
    description:
      - When an update (another image for a running service) does not become healthy in time, put back the previous
        files, image and (with O(update_dump)) database, bring the previous version up, and fail.
      - With V(false), the failed new version is left as it is and the run fails.
    type: bool
    default: true
  drain:
    description:
      - Containers a reverse proxy sends requests to. Before one that runs is replaced (an update, a changed
        configuration, runtime drift), it is drained - new TCP connections are refused in its network namespace
        with a reset (C(nsenter) + C(iptables), a rule that goes with the old container) so the proxy holds and
        retries them, and the connections already open may finish - and only then stopped. When C(up) fails before
        replacing it (the same process still runs), the rule is taken out again.
      - Names that are not this service's containers are ignored, so one list can serve every service.
    type: list
    elements: str
    default: []
  drain_timeout:
    description:
      - Seconds to wait for a drained container's open connections to close before it is stopped anyway (a
        browser's websocket never closes by itself). V(0) turns draining off.
    type: int
    default: 10
  update_dump:
    description:
      - The service's PostgreSQL database, dumped before an update and restored by a rollback. Unset for a service
        without a database of its own; an update then only rolls back files and image.
    type: dict
    suboptions:
      container:
        description: The PostgreSQL container (C(docker exec) runs C(pg_dump) and C(pg_restore) there as C(postgres)).
        type: str
        required: true
      database:
        description: The service's database.
        type: str
        required: true
      dir:
        description: Root-only (V(0700)) directory of the dumps, C(<name>-<UTC time>.dump) (V(0600)).
        type: path
        default: /var/backups/borgstack/updates
      keep:
        description: How many pre-update dumps of this service are kept there (the oldest are deleted).
        type: int
        default: 3
notes:
  - Needs the Docker CLI with the Compose v2 plugin on the target host.
"""

EXAMPLES = r"""
- name: Deploy redis
  borgstack.stack.compose_deploy:
    name: redis
    project: borgstack
    project_dir: /opt/borgstack
    compose: "{{ lookup('ansible.builtin.template', 'compose.yaml.j2') }}"
    env:
      REDIS_PASSWORD: "{{ redis_service.secrets.redis_password }}"
    files:
      - {path: redis.conf, content: "{{ lookup('ansible.builtin.template', 'redis.conf.j2') }}", mode: "0644"}
    secret_files:
      - {path: auth.conf, content: "requirepass {{ redis_service.secrets.redis_password }}\n", owner: 999, group: root, mode: "0400"}
    volumes:
      - {name: borgstack_redis_data, owner: 999, group: 999, mode: "0750"}
    pull: never

- name: Remove n8n, keeping its data
  borgstack.stack.compose_deploy:
    name: n8n
    state: absent
"""

RETURN = r"""
files_changed:
  description: Directories and files written or whose owner or mode was fixed (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/opt/borgstack/services/redis/redis.conf]
recreated:
  description: Existing containers recreated (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [borgstack-redis]
started:
  description: Containers created or started because they were missing or stopped.
  returned: always
  type: list
  elements: str
removed:
  description:
    - With O(state=present), containers removed because the Compose file no longer declares their service.
    - With O(state=absent), the containers removed, and the volumes (C(volume <name>)) with O(purge=true).
  returned: always
  type: list
  elements: str
drift:
  description: Why each container was started or recreated, and what differed on each volume (empty when nothing).
  returned: always
  type: dict
  sample:
    borgstack-redis: ["networks [] instead of ['borgstack_internal']"]
    volume borgstack_redis_data: ["mode 0777 instead of 0750"]
commands:
  description: The docker commands run, abbreviated (they never hold a secret).
  returned: always
  type: list
  elements: str
updated:
  description: The containers an image change updated (or would update, in check mode), with both references.
  returned: when a running service gets another image
  type: dict
  sample: {borgstack-n8n: {from: "n8nio/n8n:1.112.6", to: "n8nio/n8n:1.113.3"}}
dump:
  description: The pre-update dump of the service's database (null in check mode or without O(update_dump)).
  returned: when a running service gets another image
  type: str
  sample: /var/backups/borgstack/updates/n8n-20261126T110000Z.dump
drained:
  description: The running containers drained before they were replaced (see O(drain)).
  returned: when a container was drained
  type: list
  elements: str
  sample: [borgstack-n8n]
msg:
  description: In check mode, what would happen; on a host without Docker, that it is not installed yet.
  returned: in check mode, when changed or when Docker is missing
  type: str
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import ARGUMENT_SPEC, DeployError
from ansible_collections.borgstack.stack.plugins.module_utils._compose_deploy import ComposeDeploy


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=[("state", "present", ("compose",))],
                           supports_check_mode=True)
    try:
        deploy = ComposeDeploy(module)
        problem = deploy.docker_answers()
        if problem is not None:
            if module.check_mode:
                present = module.params["state"] == "present"
                module.exit_json(changed=present, msg=f"{module.params['name']}: Docker is not installed yet; " + (
                    "the service would be deployed." if present else "there is nothing to remove."),
                    files_changed=[], recreated=[], started=[], removed=[], drift={}, commands=deploy.commands)
            module.fail_json(msg=f"{module.params['name']}: the Docker engine does not answer on "
                             f"{socket.gethostname()} ({problem}). Run the docker role first (--tags docker).")
        result = deploy.run()
    except DeployError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
