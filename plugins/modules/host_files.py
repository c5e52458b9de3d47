#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: host_files
short_description: Read, compare and write a set of files and directories in one call
version_added: 0.3.0
description:
  - Reads every path in O(files) (type, owner, group, mode and a file's content), compares it with the entry and
    changes only what differs - content, owner, group, mode, presence - so a rerun with nothing to do is one round
    trip and reports no change.
  - All entries are read and checked before any is written; entries are then applied in order (a directory before
    the files in it).
  - A new content is written to a temporary file beside the target with its final owner and mode, checked with
    the entry's C(validate) command, and renamed over the target.
  - Returns, per entry, whether it changed and what (RV(files), RV(changed_paths)), so that C(when:) conditions
    can key on one path of a call.
extends_documentation_fragment:
  - borgstack.stack.attributes
attributes:
  check_mode:
    details:
      - Check mode reads and compares the same way and writes nothing; C(validate) is not run.
  diff_mode:
    details:
      - One diff per changed attribute set and per changed content. The content of an entry with C(secret=true),
        or of every entry when the task has C(no_log), is never shown; the diff only says that it changed.
options:
  files:
    description: The paths to keep, applied in this order.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description:
          - V(file) writes O(files[].content); V(directory) creates the directory (and missing parents);
            V(absent) removes the path (a directory with everything in it).
          - A file where a directory is wanted, or the other way round, is an error (nothing is removed to make
            room).
        type: str
        choices: [file, directory, absent]
        default: file
      content:
        description: The whole text of the file (required with V(file)). Written as UTF-8, byte for byte.
        type: str
      owner:
        description: User name or numeric id. Left as it is when omitted (a new file gets the connection's user).
        type: str
      group:
        description: Group name or numeric id. Left as it is when omitted.
        type: str
      mode:
        description: Octal mode as a string, e.g. V("0644"). Left as it is when omitted (a new file gets V(0644)).
        type: str
      secret:
        description:
          - The content is a secret - never shown in the diff nor in the result, which say only that it changed.
            The content is also masked wherever Ansible would print the task's arguments.
        type: bool
        default: false
      validate:
        description:
          - Command that checks a new content before it replaces the file; C(%s) is the temporary file's path.
            A non-zero exit fails the task and leaves the file as it was.
        type: str
"""

EXAMPLES = r"""
- name: Write daemon.json, checked by dockerd first
  borgstack.stack.host_files:
    files:
      - path: /etc/docker
        state: directory
        owner: root
        group: root
        mode: "0755"
      - path: /etc/docker/daemon.json
        content: "{{ lookup('ansible.builtin.template', 'daemon.json.j2') }}"
        owner: root
        group: root
        mode: "0644"
        validate: dockerd --validate --config-file %s
  register: __docker_files
  notify: Restart docker

- name: Write a settings file that holds passwords
  borgstack.stack.host_files:
    files:
      - path: /etc/borgstack/backup.json
        content: "{{ lookup('ansible.builtin.template', 'backup.json.j2') }}"
        mode: "0600"
        secret: true

- name: Act only when the unit file changed
  ansible.builtin.systemd_service:
    name: borgstack-thp.service
    daemon_reload: true
  when: "'/etc/systemd/system/borgstack-thp.service' in __kernel_files.changed_paths"
"""

RETURN = r"""
files:
  description: One item per entry, in order.
  returned: always
  type: list
  elements: dict
  contains:
    path: {description: The path., type: str}
    state: {description: The wanted state., type: str}
    changed: {description: "Whether this path was (or, in check mode, would be) changed.", type: bool}
    changes:
      description: >-
        What differed - V(created), V(absent), V(replaced link), V(content), V(owner), V(group), V(mode).
      type: list
      elements: str
    secret: {description: Whether the content is hidden., type: bool}
  sample:
    - {path: /etc/docker/daemon.json, state: file, changed: true, changes: [content], secret: false}
changed_paths:
  description: The paths that changed (or would change in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/docker/daemon.json]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.borgstack.stack.plugins.module_utils._host_files import (  # noqa: E402
    HOST_FILES_SPEC,
    Entry,
    HostFilesError,
    sync_files,
)


def main() -> None:
    module = AnsibleModule(argument_spec=HOST_FILES_SPEC, supports_check_mode=True)
    try:
        entries = [Entry.from_params(item) for item in module.params["files"]]
        for entry in entries:
            if (entry.secret or module.no_log) and entry.content:
                # Masked in everything the module returns, including the echo of its arguments at -vvv.
                module.no_log_values.add(entry.content)

        def run(command: str | list[str]) -> tuple[int, str, str]:
            return module.run_command(command, check_rc=False)

        result = sync_files(entries, module.check_mode, run, hide_all=module.no_log)
    except (HostFilesError, OSError) as error:
        module.fail_json(msg=str(error))
    if not module._diff:  # pylint: disable=protected-access
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
