#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Read systemd units, packages, live sysctl values, paths and read-only commands in one call
version_added: 0.3.0
description:
  - The read half of the roles' read, compare and apply, for what is not a file that M(borgstack.stack.host_files) keeps
    (whether units are enabled and active, which packages dpkg knows and their versions, the kernel's live
    values, whether paths exist and can be written, which paths a glob matches, and the output of read-only
    commands such as C(dockerd --version)), in one round trip.
  - Never changes anything and never fails because something is missing - a missing unit, package, key, path or
    program gives an empty string, no entry, V(null) or rc 127.
extends_documentation_fragment:
  - borgstack.stack.attributes.read_only
  - borgstack.stack.attributes
options:
  units:
    description: systemd units to ask C(systemctl is-enabled) and C(is-active) about.
    type: list
    elements: str
    default: []
  packages:
    description: Package names to ask dpkg about.
    type: list
    elements: str
    default: []
  sysctl:
    description: Kernel keys (V(vm.swappiness)) whose live value to read from C(/proc/sys).
    type: list
    elements: str
    default: []
  paths:
    description: Paths to look at (exists, type, writable by the connection's user).
    type: list
    elements: path
    default: []
  globs:
    description: Shell patterns to expand.
    type: list
    elements: str
    default: []
  commands:
    description:
      - Named commands, each an argv list, run once without a shell. They must only read (they run in check mode
        too).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Read the Docker packages, engine and service
  borgstack.stack.host_facts:
    packages: [docker-ce, docker-ce-cli, docker.io]
    units: [docker.service]
    commands:
      dockerd: [dockerd, --version]
      compose: [docker, compose, version, --short]
  register: __docker_facts
"""

RETURN = r"""
units:
  description: Per unit, C(enabled) and C(active) as systemctl prints them (V('') when it prints nothing).
  returned: always
  type: dict
  sample: {docker.service: {enabled: enabled, active: active}}
packages:
  description: The packages dpkg knows (missing ones are left out) - version, status abbreviation, installed (V(ii)).
  returned: always
  type: dict
  sample: {docker-ce: {version: "5:27.3.1-1~debian.12~bookworm", status: ii, installed: true}}
sysctl:
  description: Per key, the live value (whitespace collapsed; V(null) when the key does not exist) and C(writable).
  returned: always
  type: dict
  sample: {vm.swappiness: {value: "10", writable: true}}
paths:
  description: Per path, C(exists), C(type) (file, directory, link, other) and C(writable).
  returned: always
  type: dict
globs:
  description: Per pattern, the sorted list of matching paths.
  returned: always
  type: dict
commands:
  description: Per name, C(rc), C(stdout) and C(stderr) (stripped).
  returned: always
  type: dict
  sample: {dockerd: {rc: 0, stdout: "Docker version 27.3.1, build 41ca978", stderr: ""}}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.borgstack.stack.plugins.module_utils._host_files import (  # noqa: E402
    HOST_FACTS_SPEC,
    HostFilesError,
    host_facts,
)


def main() -> None:
    module = AnsibleModule(argument_spec=HOST_FACTS_SPEC, supports_check_mode=True)

    def run(argv: list[str]) -> tuple[int, str, str]:
        return module.run_command(argv, check_rc=False, handle_exceptions=False)

    try:
        result = host_facts(module.params, run)
    except HostFilesError as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
