# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a deploy does around the ``up`` of an update: a dump before, a rollback when it does not become healthy.

An update is a run where a running service's container gets another image reference (``image_updates``). Before its
``up``, the service's PostgreSQL database is dumped (``pg_dump -Fc`` through the PostgreSQL container, into a
root-only directory: ``_pg_dump``); when the new version does not become healthy in time, the previous files, image
and database are put back and the run fails with the new version's last log lines (``UpdateHooks.rollback``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import ComposePart, DeployError
from ansible_collections.borgstack.stack.plugins.module_utils._compose_runtime import declared_services
from ansible_collections.borgstack.stack.plugins.module_utils._pg_dump import PgDump, PgDumpError


def image_updates(declared: Mapping[str, Mapping[str, Any]], inspected: Mapping[str, Mapping[str, Any]]
                  ) -> Dict[str, Dict[str, str]]:
    """Services whose existing container runs another image reference than the one declared: an update.

    Returns service -> {container, from (the reference the container was created from), from_id (its image id), to}.
    A missing container (first deploy) and a one-off job are not updates; neither is another image id behind the
    same reference (runtime drift, healed as such).
    """
    updates = {}
    for service, spec in sorted(declared.items()):
        container = inspected.get(spec["container"])
        if spec["job"] or container is None or not spec["image"]:
            continue
        current = (container.get("Config") or {}).get("Image") or ""
        if current and current != spec["image"]:
            updates[service] = {"container": spec["container"], "from": current,
                                "from_id": container.get("Image") or "", "to": spec["image"]}
    return updates


class UpdateHooks(ComposePart):
    """The update of this run (``updates``: service -> image change, only those ``up`` acts on) and its dump.

    ``files`` (ServiceFiles) and ``runtime`` (ComposeRuntime) are the manager's: a rollback puts the files back
    and brings the previous version up with them.
    """

    def __init__(self, base: Any, files: Any, runtime: Any) -> None:
        super().__init__(base)
        self.files = files
        self.runtime = runtime
        self.updates: Dict[str, Dict[str, str]] = {}
        self.dump: Optional[str] = None

    def find(self, declared: Mapping[str, Mapping[str, Any]], inspected: Mapping[str, Mapping[str, Any]],
             services: Sequence[str]) -> None:
        """The image changes among the services ``up`` is about to act on."""
        self.updates = {service: found for service, found in image_updates(declared, inspected).items()
                        if service in services}

    def _postgres(self) -> PgDump:
        return PgDump(self.base.module, self.base.docker_bin, self.params["update_dump"]["container"],
                      self.base.commands, self.base.run_docker)

    def before_up(self) -> None:
        """An update with ``update_dump``: the service's database dumped first; a failed dump stops the run."""
        spec = self.params["update_dump"]
        if self.check or not self.updates or not spec:
            return
        try:
            self.dump = self._postgres().dump_rotated(spec["database"], spec["dir"], self.name, spec["keep"])
        except PgDumpError as exc:
            raise DeployError(f"{self.name}: the pre-update dump of the database {spec['database']} failed, so "
                              f"nothing was updated: {exc}") from None

    def rollback(self, failure: str, services: Sequence[str]) -> None:
        """The new version did not become healthy: stop it, put back the database (from the pre-update dump), the
        files and the previous image, bring the previous version up again, and fail saying all of it."""
        versions = ", ".join(f"{found['container']} {found['from']} -> {found['to']}"
                             for found in self.updates.values())
        done: List[str] = []
        try:
            self._put_back(services, done)
        except (DeployError, PgDumpError) as exc:
            raise DeployError(
                f"{self.name}: the update ({versions}) did not become healthy, and the ROLLBACK FAILED: {exc}. Done "
                f"before it failed: {'; '.join(done) or 'nothing'}. "
                + (f"The pre-update dump is {self.dump} (pg_restore --clean --create). " if self.dump else "")
                + f"Why the new version failed: {failure}") from None
        raise DeployError(
            f"{self.name}: the update ({versions}) did not become healthy within {self.params['wait_timeout']} s and "
            f"was rolled back: {'; '.join(done)}. Fix the new version (its last log lines are below) before trying "
            f"again. Why it failed: {failure}")

    def _put_back(self, services: Sequence[str], done: List[str]) -> None:
        """The rollback's steps; each one done is added to ``done``."""
        self.base.run_compose(self.base.compose_file, "stop", *services, check=False)
        if self.dump:
            database = self.params["update_dump"]["database"]
            self._postgres().restore(database, self.dump)
            done.append(f"the database {database} restored from the pre-update dump {self.dump}")
        self.files.restore()
        done.append("the previous files put back")
        for found in self.updates.values():
            self._retag(found)
        config, _interpolated = self.runtime.config(self.base.compose_file, pending=False)
        previous = declared_services(config)
        self.runtime.pull_override = "never"
        self.runtime.up([service for service in services if service in previous], previous, True)
        done.append("the previous version running and healthy")

    def _retag(self, found: Mapping[str, str]) -> None:
        """The previous reference must name the image the container ran (a pull may have moved the tag)."""
        rc, out, _err = self.base.run_docker("image", "inspect", "--format", "{{.Id}}", found["from"], check=False)
        if found["from_id"] and (rc != 0 or out.strip() != found["from_id"]):
            self.base.run_docker("tag", found["from_id"], found["from"])

    def report(self, result: Dict[str, Any], declared: Mapping[str, Mapping[str, Any]]) -> None:
        """The update in the result: ``updated``, ``dump``, and check mode's message saying a dump would be made."""
        if not self.updates:
            return
        result["updated"] = {declared[service]["container"]: {"from": found["from"], "to": found["to"]}
                             for service, found in self.updates.items()}
        result["dump"] = self.dump
        if result["changed"] and self.check and self.params["update_dump"]:
            result["msg"] += (f" (an update: the database {self.params['update_dump']['database']} would be "
                              "dumped first)")
