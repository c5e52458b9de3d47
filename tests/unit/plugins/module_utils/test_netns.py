# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of plugins/module_utils/_netns.py: finding a container's network namespace and entering it.

The system call (``setns``) is replaced by a fake that records the namespace it was given (by the file's inode) and
the Docker CLI by a fake ``run_command``; the namespace files are real ones of this process (``/proc/<pid>/ns/net``).
What does not run here: entering another container's namespace for real (root with CAP_SYS_ADMIN and a running
container of a swarm task; stack_health does it on the lab cluster, docs/multi-servidor.md)."""
from __future__ import annotations

import os
import re

import pytest

from ansible_collections.borgstack.stack.plugins.module_utils import _netns
from ansible_collections.borgstack.stack.plugins.module_utils._netns import NetnsError

OWN = f"/proc/{os.getpid()}/ns/net"


class FakeSetns:
    """Records the inode of every namespace file given to setns."""

    def __init__(self, fail: str = "") -> None:
        self.entered: list[int] = []
        self.fail = fail

    def __call__(self, fd: int) -> None:
        if self.fail:
            raise NetnsError(self.fail)
        self.entered.append(os.fstat(fd).st_ino)


def docker(rc: int, out: str, err: str = ""):
    calls = []

    def run_command(argv):
        calls.append(argv)
        return rc, out, err
    return run_command, calls


def test_the_namespace_of_a_running_container_comes_from_its_process():
    run_command, calls = docker(0, "4242\n")
    assert _netns.container_netns(run_command, "/usr/bin/docker", "borgstack_mongodb.1.abc") == "/proc/4242/ns/net"
    assert calls == [["/usr/bin/docker", "container", "inspect", "--format", "{{.State.Pid}}",
                      "borgstack_mongodb.1.abc"]]


@pytest.mark.parametrize(("rc", "out", "err", "message"), [
    (1, "", "Error: No such container: gone", "docker container inspect gone failed: Error: No such container: gone"),
    (0, "0\n", "", "the container gone is not running (no process: 0)"),
    (0, "\n", "", "the container gone is not running (no process: none)"),
])
def test_a_container_that_is_not_there_or_not_running_is_named(rc, out, err, message):
    run_command, _calls = docker(rc, out, err)
    with pytest.raises(NetnsError, match=re.escape(message)):
        _netns.container_netns(run_command, "docker", "gone")


def test_in_netns_enters_for_its_body_and_comes_back(monkeypatch):
    fake = FakeSetns()
    monkeypatch.setattr(_netns, "setns", fake)
    there = os.stat(OWN).st_ino
    with _netns.in_netns(OWN):
        assert fake.entered == [there]
    # Back to this process' own namespace (/proc/self/ns/net), after the body.
    assert fake.entered == [there, os.stat("/proc/self/ns/net").st_ino]


def test_in_netns_comes_back_when_the_body_fails(monkeypatch):
    fake = FakeSetns()
    monkeypatch.setattr(_netns, "setns", fake)
    with pytest.raises(RuntimeError):
        with _netns.in_netns(OWN):
            raise RuntimeError("the probe failed")
    assert len(fake.entered) == 2


def test_enter_netns_stays(monkeypatch):
    fake = FakeSetns()
    monkeypatch.setattr(_netns, "setns", fake)
    _netns.enter_netns(OWN)
    assert fake.entered == [os.stat(OWN).st_ino]


def test_a_missing_namespace_or_a_refused_setns_is_named(monkeypatch):
    monkeypatch.setattr(_netns, "setns", FakeSetns())
    with pytest.raises(NetnsError, match=re.escape("cannot open the network namespace /proc/999999999/ns/net")):
        _netns.enter_netns("/proc/999999999/ns/net")
    with pytest.raises(NetnsError, match="cannot open the network namespace"):
        with _netns.in_netns("/proc/999999999/ns/net"):
            pass
    monkeypatch.setattr(_netns, "setns", FakeSetns("setns failed (root with CAP_SYS_ADMIN needed): EPERM"))
    with pytest.raises(NetnsError, match="CAP_SYS_ADMIN"):
        _netns.enter_netns(OWN)


class FakeModule:
    """What stack_health's Probe uses of AnsibleModule: the Docker CLI."""

    def __init__(self, answers) -> None:
        self.answers, self.calls = answers, []

    def get_bin_path(self, name: str, required: bool = False) -> str:
        return f"/usr/bin/{name}"

    def run_command(self, argv):
        self.calls.append(argv)
        return self.answers[argv[1]]


def test_stack_healths_probe_uses_the_same_helpers(monkeypatch):
    """stack_health's overlay checks (module_utils/_health.py) find and enter a namespace through this module."""
    from ansible_collections.borgstack.stack.plugins.module_utils._health import Probe, ProbeError
    fake = FakeSetns()
    monkeypatch.setattr(_netns, "setns", fake)
    cid = "a" * 64
    module = FakeModule({"ps": (0, f"{cid}\n", ""), "container": (0, f"{os.getpid()}\n", "")})
    probe = Probe(module)
    path = probe.overlay_netns("borgstack_cluster")
    assert path == OWN
    assert module.calls[-1] == ["/usr/bin/docker", "container", "inspect", "--format", "{{.State.Pid}}", cid[:12]]
    with probe.in_netns(path):
        assert fake.entered == [os.stat(OWN).st_ino]
    assert len(fake.entered) == 2
    stopped = Probe(FakeModule({"ps": (0, f"{cid}\n", ""), "container": (0, "0\n", "")}))
    with pytest.raises(ProbeError, match=re.escape("the container aaaaaaaaaaaa is not running (no process: 0)")):
        stopped.overlay_netns("borgstack_cluster")
    with pytest.raises(ProbeError, match="cannot open the network namespace"):
        with probe.in_netns("/proc/999999999/ns/net"):
            pass
