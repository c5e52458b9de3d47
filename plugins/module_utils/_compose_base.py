# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The life cycle of the compose_deploy module: its options, its errors and a small base manager.

``BaseComposeManager`` holds what every step of a deploy shares - the module, the service's directory and Compose
file, the docker CLI and the list of commands the run reports - and runs ``present`` or ``absent``. The steps
themselves live beside it, each in its own file and each a ``ComposePart`` working for the manager:

- ``_compose_files``: the service's directory, its files and secret files, and the config cache;
- ``_compose_runtime``: ``docker compose config`` / ``up``, runtime drift, undeclared containers, volumes;
- ``_compose_drain``: connections drained from a container before it is replaced;
- ``_compose_hooks``: the pre-update dump and the rollback of an update that does not become healthy;
- ``_compose_deploy``: ``ComposeDeploy``, which reads, compares and applies with them.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

_FILE_OPTIONS = {
    "path": {"type": "str", "required": True},
    "content": {"type": "str", "required": True},
    "owner": {"type": "raw"},
    "group": {"type": "raw"},
    "mode": {"type": "raw"},
}
# A secret file's content is masked; its path, owner and mode stay readable in the output.
_SECRET_FILE_OPTIONS = dict(_FILE_OPTIONS, content={"type": "str", "required": True, "no_log": True})
ARGUMENT_SPEC: Dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "project": {"type": "str", "default": "borgstack"},
    "project_dir": {"type": "path", "default": "/opt/borgstack"},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "compose": {"type": "str"},
    "files": {"type": "list", "elements": "dict", "default": [], "options": _FILE_OPTIONS},
    # no_log on the content suboption only, deliberately not on the whole list: that would also mask every path,
    # owner and mode written there ("root", "0400", "999") wherever those strings appear in any output.
    "secret_files": {"type": "list", "elements": "dict", "default": [], "options": _SECRET_FILE_OPTIONS,
                     "no_log": False},
    "env": {"type": "dict", "default": {}, "no_log": True},
    "dirs": {"type": "list", "elements": "dict", "default": [], "options": {
        "path": {"type": "str", "required": True},
        "owner": {"type": "raw"},
        "group": {"type": "raw"},
        "mode": {"type": "raw"},
    }},
    "volumes": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str", "required": True},
        "owner": {"type": "int"},
        "group": {"type": "int"},
        "mode": {"type": "str"},
    }},
    "pull": {"type": "str", "default": "missing", "choices": ["missing", "always", "never"]},
    "wait_timeout": {"type": "int", "default": 600},
    "purge": {"type": "bool", "default": False},
    "rollback": {"type": "bool", "default": True},
    "drain": {"type": "list", "elements": "str", "default": []},
    "drain_timeout": {"type": "int", "default": 10},
    "update_dump": {"type": "dict", "options": {
        "container": {"type": "str", "required": True},
        "database": {"type": "str", "required": True},
        "dir": {"type": "path", "default": "/var/backups/borgstack/updates"},
        "keep": {"type": "int", "default": 3},
    }},
}
# Options that carry secrets, all masked by no_log above (env whole, secret_files' content); the unit tests check
# the spec against this list, and tests/unit/roles/test_no_log.py relies on it.
SECRET_OPTIONS = frozenset({"env", "secret_files"})


class DeployError(Exception):
    """A failure the module reports with fail_json."""


def inspect_list(out: str) -> List[Dict[str, Any]]:
    """The JSON list ``docker ... inspect`` printed; empty when it printed none (nothing found)."""
    return json.loads(out) if out.strip().startswith("[") else []


class BaseComposeManager:
    """One service of the Compose project: where its files are, how docker is run, what the run reported.

    ``module`` is an AnsibleModule (run_command, check_mode, _diff, get_bin_path); errors raise DeployError.
    A subclass implements ``present`` and ``absent``; ``run`` picks one by the ``state`` option.
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.params = module.params
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name or ""):
            raise DeployError(f"name {self.name!r} is not a plain directory name")
        self.service_dir = os.path.join(self.params["project_dir"], "services", self.name)
        self.compose_file = os.path.join(self.service_dir, "compose.yaml")
        self.docker_bin = module.get_bin_path("docker") or ""
        self.commands: List[str] = []

    @property
    def name(self) -> str:
        return self.params["name"]

    @property
    def check(self) -> bool:
        return bool(self.module.check_mode)

    @property
    def diff_mode(self) -> bool:
        return bool(self.module._diff)  # pylint: disable=protected-access

    def run(self) -> Dict[str, Any]:
        return self.present() if self.params["state"] == "present" else self.absent()

    def present(self) -> Dict[str, Any]:
        raise NotImplementedError

    def absent(self) -> Dict[str, Any]:
        raise NotImplementedError

    def result(self, **changes: Any) -> Dict[str, Any]:
        """The keys every run returns, with ``changes`` filled in."""
        result: Dict[str, Any] = {"changed": False, "files_changed": [], "recreated": [], "started": [],
                                  "removed": [], "drift": {}, "commands": self.commands}
        result.update(changes)
        return result

    # -- docker -----------------------------------------------------------------------------------------------
    def run_docker(self, *args: str, check: bool = True, data: Optional[str] = None) -> Tuple[int, str, str]:
        """``docker <args>``, recorded in ``commands``; a failure raises DeployError unless ``check`` is false."""
        shown = ["compose", *args[7:]] if args[:1] == ("compose",) else list(args)  # without project and file
        self.commands.append(" ".join(["docker", *shown]))
        rc, out, err = self.module.run_command([self.docker_bin, *args], cwd=self.params["project_dir"]
                                               if os.path.isdir(self.params["project_dir"]) else None,
                                               environ_update={"COMPOSE_IGNORE_ORPHANS": "true"}, data=data)
        if check and rc != 0:
            raise DeployError(f"docker {' '.join(args[:5])} failed: {(err.strip() or out.strip())}")
        return rc, out, err

    def run_compose(self, compose_file: str, *args: str, check: bool = True,
                    data: Optional[str] = None) -> Tuple[int, str, str]:
        """``docker compose`` of this project with ``compose_file`` ("-": the file given on stdin)."""
        return self.run_docker("compose", "--project-name", self.params["project"], "--project-directory",
                               self.params["project_dir"], "--file", compose_file, *args, check=check, data=data)

    def inspect_containers(self, names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """``docker container inspect`` by container name; a missing container is left out."""
        if not names:
            return {}
        _rc, out, _err = self.run_docker("container", "inspect", *sorted(set(names)), check=False)
        return {item["Name"].lstrip("/"): item for item in inspect_list(out)}

    def docker_answers(self) -> Optional[str]:
        """None when the engine answers, else why not."""
        if not self.docker_bin:
            return "the docker CLI is not installed"
        rc, out, err = self.run_docker("version", "--format", "{{.Server.Version}}", check=False)
        return None if rc == 0 else (err.strip() or out.strip() or f"docker version exited {rc}")


class ComposePart:
    """One job of a deploy (files, Compose, draining, update hooks), done for the manager ``base``."""

    def __init__(self, base: BaseComposeManager) -> None:
        self.base = base

    @property
    def params(self) -> Dict[str, Any]:
        return self.base.params

    @property
    def check(self) -> bool:
        return self.base.check

    @property
    def name(self) -> str:
        return self.base.name
