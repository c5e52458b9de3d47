#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: compose_runtime
short_description: Heal runtime drift of one Compose service - networks, limits, restart policy, image, volume modes
version_added: 0.2.0
description:
  - Compares what runs with what the service's Compose file declares and converges the difference. Compose itself
    recreates a container when its configuration or image changes, but not when a running container was changed by
    hand with C(docker) - a network disconnected or connected, C(docker update --memory), another restart policy -
    nor when the owner or mode of a data volume was changed.
  - Reads the declared state with C(docker compose config --format json) and the running one with C(docker inspect);
    a container that differs is recreated with C(docker compose up --force-recreate --no-deps --wait) (its volumes
    are kept). A volume whose root directory has another owner, group or mode is put back with chown/chmod.
  - Each difference is reported, and the run reports C(changed).
  - One-off job containers (label C(org.borgstack.job=true), such as migrations) are left out, since they exit when done.
author:
  - BorgStack engineers (@borgstack)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads and compares as a normal run does; recreates and chmods nothing.
  diff_mode:
    support: full
    details:
      - The differences, one line each, as C(before) (what runs) and C(after) (what is declared).
  idempotent:
    description:
      - A run right after a converging one finds nothing to change and reports RV(ignore:changed=false).
    support: full
  platform:
    platforms: posix
options:
  project:
    description: The Compose project name.
    type: str
    required: true
  project_dir:
    description: The Compose project directory (the service's file is read relative to it).
    type: path
    required: true
  file:
    description: The service's Compose file.
    type: path
    required: true
  volumes:
    description:
      - Data volumes whose root directory must keep an owner, group and mode.
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
  wait_timeout:
    description: Seconds C(docker compose up --wait) may take for a recreated container to become healthy.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Heal runtime drift of n8n
  borgstack.stack.compose_runtime:
    project: borgstack
    project_dir: /opt/borgstack
    file: /opt/borgstack/services/n8n/compose.yaml
    volumes:
      - {name: borgstack_n8n_data, owner: 1000, group: 1000, mode: "0755"}
"""

RETURN = r"""
drift:
  description: What differed, per container and per volume (empty when nothing did).
  returned: always
  type: dict
  sample:
    borgstack-redis: ["networks [] instead of ['borgstack_internal']"]
recreated:
  description: Containers recreated (or that would be, in check mode).
  returned: always
  type: list
  elements: str
"""

import json
import os
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgstack.stack.plugins.module_utils._compose import (
    container_drift,
    declared_services,
    volume_drift,
)


class ComposeRuntime:
    """Reads the declared and running state of one service's Compose file, then converges the difference."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.docker = module.get_bin_path("docker", required=True)

    def _run(self, *args: str, cwd: Optional[str] = None) -> str:
        rc, out, err = self.module.run_command([self.docker, *args], cwd=cwd,
                                               environ_update={"COMPOSE_IGNORE_ORPHANS": "true"})
        if rc != 0:
            self.module.fail_json(msg=f"docker {' '.join(args[:4])} failed: {err.strip() or out.strip()}")
        return out

    def _compose(self, *args: str) -> str:
        return self._run("compose", "--project-name", self.params["project"], "--file", self.params["file"], *args,
                         cwd=self.params["project_dir"])

    def _inspect(self, kind: str, name: str) -> Optional[Dict[str, Any]]:
        rc, out, _err = self.module.run_command([self.docker, kind, "inspect", name])
        return json.loads(out)[0] if rc == 0 else None

    def run(self) -> Dict[str, Any]:
        declared = declared_services(json.loads(self._compose("config", "--format", "json")))
        drift: Dict[str, List[str]] = {}
        stale = []
        for service, spec in sorted(declared.items()):
            if spec["job"]:
                continue
            image = self._inspect("image", spec["image"]) if spec["image"] else None
            found = container_drift(spec, self._inspect("container", spec["container"]),
                                    image.get("Id") if image else None)
            if found:
                drift[spec["container"]] = found
                stale.append(service)
        fixes = []
        for volume in self.params["volumes"]:
            info = self._inspect("volume", volume["name"])
            if info is None:
                continue  # not created yet: Compose creates it, the image sets it up
            path = info["Mountpoint"]
            stat = os.stat(path)
            found = volume_drift(volume, stat.st_uid, stat.st_gid, stat.st_mode)
            if found:
                drift[f"volume {volume['name']}"] = found
                fixes.append((path, volume))
        if not self.module.check_mode:
            if stale:
                self._compose("up", "--detach", "--no-deps", "--force-recreate", "--wait",
                              "--wait-timeout", str(self.params["wait_timeout"]), *stale)
            for path, volume in fixes:
                os.chown(path, -1 if volume.get("owner") is None else volume["owner"],
                         -1 if volume.get("group") is None else volume["group"])
                if volume.get("mode") is not None:
                    os.chmod(path, int(str(volume["mode"]), 8))
        result: Dict[str, Any] = {
            "changed": bool(drift),
            "drift": drift,
            "recreated": [declared[s]["container"] for s in stale],
        }
        if self.module._diff and drift:  # pylint: disable=protected-access
            result["diff"] = {
                "before": "".join(f"{name}: {line}\n" for name, lines in drift.items() for line in lines),
                "after": "".join(f"{name}: as declared\n" for name in drift),
            }
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project": {"type": "str", "required": True},
            "project_dir": {"type": "path", "required": True},
            "file": {"type": "path", "required": True},
            "volumes": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "owner": {"type": "int"},
                "group": {"type": "int"},
                "mode": {"type": "str"},
            }},
            "wait_timeout": {"type": "int", "default": 600},
        },
        supports_check_mode=True,
    )
    module.exit_json(**ComposeRuntime(module).run())


if __name__ == "__main__":
    main()
