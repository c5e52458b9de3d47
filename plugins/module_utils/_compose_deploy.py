# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``ComposeDeploy``: deploys (or removes) one Compose service of the BorgStack project in one process on the host.

It reads the current state, computes the difference and applies only what differs, in this order:

1. the declared services (this also validates a new Compose file) and the images a ``never`` pull policy needs,
   before anything is written (``_compose_runtime``; from the config cache when no input changed);
2. the directories and files, the Compose file last (``_compose_files``);
3. the containers: one ``up`` for every service that differs - an update dumped first and rolled back when it does
   not become healthy (``_compose_hooks``), a proxied container drained first (``_compose_drain``);
4. containers this file created for services it no longer declares, removed; 5. data volumes' owner and mode.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import BaseComposeManager, DeployError
from ansible_collections.borgstack.stack.plugins.module_utils._compose_drain import ConnectionDrain
from ansible_collections.borgstack.stack.plugins.module_utils._compose_files import ServiceFiles
from ansible_collections.borgstack.stack.plugins.module_utils._compose_hooks import UpdateHooks
from ansible_collections.borgstack.stack.plugins.module_utils._compose_runtime import (
    ComposeRuntime,
    declared_services,
    plan_services,
    replacements,
    stale_containers,
)


class ComposeDeploy(BaseComposeManager):
    """Deploys (or removes) one service with its four parts: files, Compose runtime, draining, update hooks."""

    def __init__(self, module: Any) -> None:
        super().__init__(module)
        self.files = ServiceFiles(self)
        self.runtime = ComposeRuntime(self)
        self.drain = ConnectionDrain(self)
        self.hooks = UpdateHooks(self, self.files, self.runtime)

    # -- present ----------------------------------------------------------------------------------------------
    def present(self) -> Dict[str, Any]:
        if self.params["compose"] is None:
            raise DeployError("compose is required with state=present")
        live = self.files.current(self.compose_file, read=True)
        compose_changed = live is None or live["content"] != self.params["compose"].encode("utf-8")
        if compose_changed:
            self.files.stage_compose()
        try:
            run = self._declare_and_write(compose_changed)
        finally:
            self.files.cleanup()  # a staged file not renamed over the live one (check mode, a failure)
        self._plan(run)
        drained = self._apply(run)
        # 4. Containers this file created for services it no longer declares.
        run["removed"] = stale_containers(run["rows"], self.compose_file, list(run["declared"]))
        self.runtime.remove(run["removed"])
        # 5. Data volumes' owner, group and mode.
        run["healed"] = self.runtime.volumes(run["drift"])
        # What was derived from the files as they are now (read after this run wrote them, or none written), for
        # the next run.
        if not self.check and not run["cached"] and run["hashes"] is not None and (
                compose_changed or not self.files.content_changed):
            self.files.keep_config(run["declared"], run["hashes"])
        return self._present_result(run, drained)

    def _declare_and_write(self, compose_changed: bool) -> Dict[str, Any]:
        """Steps 1 and 2. An env_file this run writes may be missing (a new service, or secrets.env deleted by
        hand): then the Compose file is read without interpolation, and again once it is written. Unchanged
        inputs: what an earlier run derived from them."""
        cached = None if compose_changed else self.files.cached_config()
        config: Dict[str, Any] = {}
        if cached:
            declared, interpolated = cached[0], True
        else:
            config, interpolated = self.runtime.config(self.files.staged or self.compose_file, pending=True)
            declared = declared_services(config)
        image_ids = self.runtime.image_ids(declared)
        self.runtime.require_images(image_ids)
        self.files.write_service_files()
        self.files.place_compose(compose_changed)
        if not self.check and (compose_changed or not interpolated):
            config, interpolated = self.runtime.config(self.compose_file, pending=False)
            declared = declared_services(config)
        hashes = cached[1] if cached else (self.runtime.hashes(config) if interpolated else None)
        return {"declared": declared, "hashes": hashes, "image_ids": image_ids, "cached": bool(cached)}

    def _plan(self, run: Dict[str, Any]) -> None:
        """Step 3's reading: what runs compared with what is declared, and which services one ``up`` names."""
        declared = run["declared"]
        run["rows"] = self.runtime.project_rows()
        run["inspected"] = self.inspect_containers([spec["container"] for spec in declared.values()]
                                                   + [row["name"] for row in run["rows"]])
        plan = plan_services(declared, run["hashes"], run["inspected"], run["image_ids"])
        services = set(plan["up"]) | set(plan["force"])
        if self.files.content_changed:  # the containers read these files when they start
            services |= {service for service, spec in declared.items() if not spec["job"]}
        # One `up` for all of them; --force-recreate (it applies to every service named) when Compose cannot see
        # the reason itself: runtime drift, or a config file changed.
        force = bool(plan["force"]) or (self.files.content_changed and bool(services))
        run["drift"], run["recreated"], run["started"] = replacements(services, plan, declared, run["inspected"],
                                                                      force)
        run.update(plan=plan, services=sorted(services), force=force)
        # An update (another image for a running service): the service's database is dumped first, and a new
        # version that does not become healthy is rolled back.
        self.hooks.find(declared, run["inspected"], run["services"])

    def _apply(self, run: Mapping[str, Any]) -> Dict[str, int]:
        """Step 3's writing: the dump, the drain and one ``up``; returns the drained containers."""
        if self.check:
            return {}
        declared, services, waiting = run["declared"], run["services"], run["plan"]["waiting"]
        self.hooks.before_up()
        drained: Dict[str, int] = {}
        if services:
            drained = self.drain.drain([declared[s]["container"] for s in services
                                        if declared[s]["container"] in self.params["drain"]], run["inspected"])
        if not services and not waiting:
            return drained
        # Only waiting (healthchecks still starting): the same `up --wait`, which changes nothing.
        try:
            try:
                self.runtime.up(services or sorted(waiting), declared, run["force"] and bool(services))
            finally:
                self.drain.undrain(drained)
        except DeployError as exc:
            if not self.hooks.updates or not self.params["rollback"]:
                raise
            self.hooks.rollback(str(exc), services)
        return drained

    def _present_result(self, run: Mapping[str, Any], drained: Mapping[str, int]) -> Dict[str, Any]:
        changed = bool(self.files.files_changed or run["services"] or run["removed"] or run["healed"])
        result = self.result(changed=changed, files_changed=self.files.files_changed, recreated=run["recreated"],
                             started=run["started"], removed=run["removed"], drift=run["drift"])
        if drained:
            result["drained"] = sorted(drained)
        if changed and self.check:
            result["msg"] = f"{self.name} would be deployed"
        self.hooks.report(result, run["declared"])
        if self.diff_mode:
            result["diff"] = self.files.diffs + runtime_diff(run["drift"], run["removed"])
        return result

    # -- absent -----------------------------------------------------------------------------------------------
    def absent(self) -> Dict[str, Any]:
        if not os.path.exists(self.compose_file):
            return self.result()
        config, _interpolated = self.runtime.config(self.compose_file, pending=True)
        names = {spec["container"] for spec in declared_services(config).values()}
        containers = sorted(row["name"] for row in self.runtime.project_rows()
                            if row["config_files"] == self.compose_file or row["name"] in names)
        volumes = self.runtime.project_volumes(config) if self.params["purge"] else []
        removed = containers + [f"volume {name}" for name in volumes]
        result = self.result(changed=bool(removed), removed=removed)
        if removed and not self.check:
            self.run_compose(self.compose_file, "down", *(["--volumes"] if self.params["purge"] else []))
        if self.diff_mode and removed:
            result["diff"] = {"before": "".join(f"{name}\n" for name in removed), "after": ""}
        return result


def runtime_diff(drift: Mapping[str, List[str]], removed: List[str]) -> List[Dict[str, str]]:
    """The --diff entry of the containers (runtime drift, stale ones), or none when nothing differs there."""
    lines = [(name, line) for name, found in drift.items() for line in found]
    lines += [(name, "stale: no longer declared") for name in removed]
    if not lines:
        return []
    return [{"before_header": "runtime", "after_header": "runtime",
             "before": "".join(f"{name}: {line}\n" for name, line in lines),
             "after": "".join(f"{name}: as declared\n" for name in dict.fromkeys(name for name, _line in lines))}]
