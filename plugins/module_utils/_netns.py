# SPDX-License-Identifier: GPL-3.0-or-later
"""Private helpers: run a module's connections inside a container's network namespace (``setns(2)``, as root).

On a swarm a task's address on the overlay cannot be reached from its node: the node is not on the overlay. A module
that talks to a service over the network (``stack_health``'s probes, ``mongodb_user``, Duplicati's API) enters the
network namespace of a container of that node instead - the task's own container, or any container on the overlay -
and connects from there (to ``127.0.0.1`` in the task's own namespace, or to a name Docker's DNS resolves on the
overlay). Only the network namespace changes: files, users and the Python process stay the host's.

Contents:
- ``container_netns``: the namespace path (``/proc/<pid>/ns/net``) of a running container, from ``docker container
  inspect``;
- ``in_netns``: a context manager that enters a namespace for its body and comes back;
- ``enter_module_netns``: a module enters a container's namespace for the rest of its run, or fails naming the
  option and the container (nothing changed);
- ``enter_netns``: enters a namespace for the rest of the process (a module whose every connection - including the
  threads a client library starts, which inherit the namespace of the thread that creates them - belongs there);
- ``setns``: the system call (``os.setns`` from Python 3.12; libc before).
Unit tests replace ``setns`` and the ``run_command`` given to ``container_netns`` with fakes.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from typing import Any, Callable, Iterator

CLONE_NEWNET = 0x40000000

RunCommand = Callable[[list], "tuple[int, str, str]"]


class NetnsError(Exception):
    """A namespace that cannot be found or entered; the message says what to check."""


def setns(fd: int) -> None:
    """setns(2) into a network namespace (os.setns from Python 3.12; libc before)."""
    if hasattr(os, "setns"):
        try:
            os.setns(fd, CLONE_NEWNET)
        except OSError as exc:
            raise NetnsError(f"setns failed (root with CAP_SYS_ADMIN needed): {exc}") from exc
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise NetnsError(f"setns failed (root with CAP_SYS_ADMIN needed): {os.strerror(ctypes.get_errno())}")


def container_netns(run_command: RunCommand, docker: str, container: str) -> str:
    """The network namespace (``/proc/<pid>/ns/net``) of the running container ``container``: ``run_command`` is
    ``AnsibleModule.run_command`` (a list of arguments -> rc, stdout, stderr), ``docker`` the Docker CLI's path."""
    rc, out, err = run_command([docker, "container", "inspect", "--format", "{{.State.Pid}}", container])
    pid = (out or "").strip()
    if rc != 0:
        raise NetnsError(f"docker container inspect {container} failed: {(err or '').strip() or 'exit ' + str(rc)}")
    if not pid.isdigit() or pid == "0":
        raise NetnsError(f"the container {container} is not running (no process: {pid or 'none'})")
    return f"/proc/{pid}/ns/net"


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise NetnsError(f"cannot open the network namespace {path}: {exc}") from exc


@contextlib.contextmanager
def in_netns(path: str) -> Iterator[Any]:
    """Run the body (sockets, client libraries) in the network namespace ``path``, then come back."""
    here = _open("/proc/self/ns/net")
    try:
        there = _open(path)
    except NetnsError:
        os.close(here)
        raise
    try:
        setns(there)
        try:
            yield
        finally:
            setns(here)
    finally:
        os.close(there)
        os.close(here)


def enter_netns(path: str) -> None:
    """Enter the network namespace ``path`` for the rest of this process (never comes back)."""
    there = _open(path)
    try:
        setns(there)
    finally:
        os.close(there)


def enter_module_netns(module: Any, container: str, option: str) -> None:
    """A module's requests from here on go out of ``container``'s network namespace (a swarm task on this host, whose
    overlay address the host cannot reach): entered for the rest of the module's run, or the module fails naming its
    ``option`` and the container, before it changed anything."""
    try:
        enter_netns(container_netns(module.run_command, module.get_bin_path("docker", required=True), container))
    except NetnsError as exc:
        module.fail_json(msg=f"{option} {container}: {exc}. Nothing was changed.")
