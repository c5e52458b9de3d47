# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: preload
type: aggregate
short_description: Load the Jinja filters, tests, lookups and actions once, before Ansible forks a process per task
version_added: 0.4.0
author:
  - BorgStack engineers (@borgstack)
description:
  - Ansible runs each task in a new process forked from the controller. A plugin the controller never loaded is
    found, read and compiled again in every one of them, and a run of C(site.yml) templates ~2,300 expressions
    that use this collection's filters and ansible-core's. Measured on a converged lab host, that was a third of the
    controller's CPU in a no-op rerun.
  - When the playbook starts, this callback loads ansible-core's filters and tests (with the wrappers Jinja uses),
    every filter, test, lookup and action plugin of C(borgstack.stack), ansible-core's lookups and actions, and the
    connection plugins C(ssh), C(local) and C(community.docker.docker), which each forked process inherits.
  - Prints nothing and changes nothing; without it the playbooks work the same, only slower. Enabled in the
    project's C(ansible.cfg) (C(callbacks_enabled)).
requirements:
  - enabled in callbacks_enabled
"""

import importlib
import pkgutil

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import action_loader, connection_loader, filter_loader, lookup_loader, test_loader
from ansible.utils.display import Display

display = Display()

COLLECTION = __name__.rsplit(".plugins.", 1)[0]  # ansible_collections.borgstack.stack
FQCN = COLLECTION.removeprefix("ansible_collections.")  # borgstack.stack
CONNECTIONS = ("ansible.builtin.ssh", "ansible.builtin.local", "community.docker.docker")


def collection_modules(kind: str) -> list:
    """The python modules of this collection's plugins of one kind (filter, test, lookup, action)."""
    try:
        package = importlib.import_module(f"{COLLECTION}.plugins.{kind}")
    except ImportError:
        return []
    return [importlib.import_module(f"{package.__name__}.{info.name}")
            for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_")]


def jinja_names(kind: str) -> list[str]:
    """The names this collection's filter or test files declare (FilterModule().filters(), TestModule().tests())."""
    names = []
    for module in collection_modules(kind):
        holder = getattr(module, "FilterModule" if kind == "filter" else "TestModule", None)
        if holder is not None:
            names += list((holder().filters() if kind == "filter" else holder().tests()).keys())
    return names


def preload() -> int:
    """Load every plugin a BorgStack run uses into this (the controller's) process; return how many."""
    count = 0
    for loader in (filter_loader, test_loader):
        count += len(list(loader.all()))
    for kind, loader in (("filter", filter_loader), ("test", test_loader)):
        for name in jinja_names(kind):
            count += bool(loader.get_with_context(f"{FQCN}.{name}").object)
    for loader in (lookup_loader, action_loader):
        count += len(list(loader.all(class_only=True)))
    for kind, loader in (("lookup", lookup_loader), ("action", action_loader)):
        for module in collection_modules(kind):
            count += bool(loader.get(f"{FQCN}.{module.__name__.rsplit('.', 1)[-1]}", class_only=True))
    for name in CONNECTIONS:
        count += bool(connection_loader.get(name, class_only=True))
    return count


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "borgstack.stack.preload"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        try:
            display.vvv(f"borgstack.stack.preload: {preload()} plugins loaded before the first task")
        except Exception as error:  # pylint: disable=broad-except
            # Only a speed-up: a plugin that cannot load here fails where a task uses it, with Ansible's own message.
            display.vvv(f"borgstack.stack.preload: stopped ({error})")
