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
  - Ansible builds the payload of each module (the module and the module_utils it imports, zipped) once per run, in
    a cache inside the run's own temporary directory, which goes with the run, so every run builds the same payloads
    again (~20 modules in a run of C(site.yml), each import followed through its module_utils). This callback keeps
    that cache in C(~/.ansible/borgstack/ansiballz/<key>), where the key changes whenever a module or module_utils
    file could have changed (ansible-core's version, each installed collection's C(MANIFEST.json), and every file
    under C(plugins/modules) and C(plugins/module_utils) of a collection without one (a source checkout such as this
    project's)). Caches of other keys unused for a week are removed.
  - Prints nothing and changes nothing; without it the playbooks work the same, only slower. Enabled in the
    project's C(ansible.cfg) (C(callbacks_enabled)).
requirements:
  - enabled in callbacks_enabled
"""

import hashlib
import importlib
import os
import pkgutil
import shutil
import sys
import time

from ansible.plugins.callback import CallbackBase
from ansible import constants as C
from ansible.plugins.loader import (action_loader, connection_loader, filter_loader, lookup_loader, module_loader,
                                    module_utils_loader, test_loader)
from ansible.release import __version__ as ANSIBLE_VERSION
from ansible.utils.collection_loader import AnsibleCollectionConfig
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


MODULE_DIRS = ("plugins/modules", "plugins/module_utils")
CACHE_ROOT = os.path.expanduser("~/.ansible/borgstack/ansiballz")
CACHE_UNUSED_DAYS = 7


def _stat_tree(digest, root: str) -> None:
    """Every file under root, by path, size and modification time (a source checkout that may be edited)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())


def module_cache_key() -> str:
    """What the module payloads depend on: ansible-core, Python, each collection's modules and module_utils."""
    # (The compression and the debugger/coverage settings are in each cached file's own name.)
    digest = hashlib.sha256(f"{ANSIBLE_VERSION}\0{sys.version}\n".encode())
    for path in sorted(module_loader._get_paths(subdirs=False) + module_utils_loader._get_paths(subdirs=False)):
        if not path.startswith(os.path.dirname(C.__file__)):  # ansible-core's own: its version says it
            _stat_tree(digest, os.path.realpath(path))
    for root in AnsibleCollectionConfig.collection_paths:
        base = os.path.join(root, "ansible_collections")
        for namespace in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            ns_dir = os.path.join(base, namespace)
            for name in sorted(os.listdir(ns_dir)) if os.path.isdir(ns_dir) else []:
                collection = os.path.realpath(os.path.join(ns_dir, name))
                manifest = os.path.join(collection, "MANIFEST.json")
                digest.update(f"{namespace}.{name}\0{collection}\n".encode())
                if os.path.isfile(manifest):  # installed: its manifest changes with any reinstall
                    info = os.stat(manifest)
                    digest.update(f"{info.st_size}\0{info.st_mtime_ns}\n".encode())
                else:
                    for sub in MODULE_DIRS:
                        _stat_tree(digest, os.path.join(collection, sub))
    return digest.hexdigest()[:20]


def keep_module_cache() -> str:
    """Point this run's module payload cache at the persistent one of its key; return that directory."""
    keep = os.path.join(CACHE_ROOT, module_cache_key())
    os.makedirs(keep, mode=0o700, exist_ok=True)
    os.utime(keep)
    run_cache = os.path.join(C.DEFAULT_LOCAL_TMP, "ansiballz_cache")
    if not os.path.lexists(run_cache):
        os.symlink(keep, run_cache)
    stale = time.time() - CACHE_UNUSED_DAYS * 86400
    for entry in os.scandir(CACHE_ROOT):
        if entry.path != keep and entry.is_dir(follow_symlinks=False) and entry.stat().st_mtime < stale:
            shutil.rmtree(entry.path, ignore_errors=True)
    return keep


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
        try:
            display.vvv(f"borgstack.stack.preload: module payloads kept in {keep_module_cache()}")
        except Exception as error:  # pylint: disable=broad-except
            display.vvv(f"borgstack.stack.preload: module payloads built per run ({error})")
