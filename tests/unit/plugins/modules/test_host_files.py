# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the borgstack.stack.host_files and host_facts modules and their module_utils ``_host_files``.

Paths are absolute, so everything runs on ``tmp_path`` as it is; the owner and group are the test user's (a
numeric id the test user cannot take stands for "another owner"). ``main()`` runs end to end with
``patch_module_args``: apply (changed) → again (unchanged) → check mode after a hand edit (changed, nothing
written) → apply (healed).
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.borgstack.stack.plugins.module_utils import _host_files as hf
from ansible_collections.borgstack.stack.plugins.modules import host_facts, host_files

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
SECRET = "Backup-pw-7f3a91c2"


def no_run(argv: Any) -> tuple[int, str, str]:
    raise AssertionError(f"nothing should run: {argv}")


def mode_of(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def entries(tmp_path: Path, content: str = "a = 1\n") -> list[hf.Entry]:
    return [hf.Entry(path=str(tmp_path / "etc"), state="directory", owner=USER, group=GROUP, mode="0750"),
            hf.Entry(path=str(tmp_path / "etc" / "app.conf"), content=content, owner=USER, group=GROUP, mode="0640")]


MODES = [("644", "0644"), ("0644", "0644"), ("0o600", "0600"), ("0700", "0700"), ("2755", "2755")]


@pytest.mark.parametrize(("given", "wanted"), MODES)
def test_normalise_mode(given, wanted):
    assert hf.normalise_mode(given) == wanted


@pytest.mark.parametrize("given", ["u=rw", "0999", "77777"])
def test_normalise_mode_refuses_what_is_not_octal(given):
    with pytest.raises(hf.HostFilesError, match="mode"):
        hf.normalise_mode(given, "/x")


@pytest.mark.parametrize(("params", "message"), [
    ({"path": "relative/x", "content": ""}, "absolute"),
    ({"path": "/x", "state": "file"}, "needs content"),
    ({"path": "/x", "state": "directory", "content": "a"}, "only go with state=file"),
    ({"path": "/x", "content": "a", "validate": "true"}, "%s"),
])
def test_entry_refuses_bad_parameters(params, message):
    with pytest.raises(hf.HostFilesError, match=message):
        hf.Entry.from_params(params)


def test_create_then_unchanged(tmp_path):
    first = hf.sync_files(entries(tmp_path), False, no_run)
    assert first["changed"] and first["changed_paths"] == [str(tmp_path / "etc"), str(tmp_path / "etc/app.conf")]
    assert [item["changes"] for item in first["files"]] == [["created"], ["created"]]
    assert (tmp_path / "etc/app.conf").read_text() == "a = 1\n"
    assert (mode_of(tmp_path / "etc"), mode_of(tmp_path / "etc/app.conf")) == ("0750", "0640")
    second = hf.sync_files(entries(tmp_path), False, no_run)
    assert (second["changed"], second["changed_paths"], second["diff"]) == (False, [], [])


@pytest.mark.parametrize(("edit", "changes"), [
    (lambda p: p.write_text("a = 2\n"), ["content"]),
    (lambda p: p.chmod(0o644), ["mode"]),
    (lambda p: (p.write_text(""), p.chmod(0o600)), ["content", "mode"]),
    (lambda p: p.unlink(), ["created"]),
])
def test_drift_is_reported_in_check_mode_and_healed(tmp_path, edit, changes):
    target = tmp_path / "etc/app.conf"
    hf.sync_files(entries(tmp_path), False, no_run)
    edit(target)
    before = (target.read_bytes(), mode_of(target)) if target.exists() else None
    checked = hf.sync_files(entries(tmp_path), True, no_run)
    assert checked["changed_paths"] == [str(target)] and checked["files"][1]["changes"] == changes
    assert ((target.read_bytes(), mode_of(target)) if target.exists() else None) == before, "check mode wrote"
    healed = hf.sync_files(entries(tmp_path), False, no_run)
    assert healed["changed_paths"] == [str(target)]
    assert (target.read_text(), mode_of(target)) == ("a = 1\n", "0640")
    assert not hf.sync_files(entries(tmp_path), False, no_run)["changed"]


def test_owner_and_group_differences_are_seen(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    other = str(os.getuid() + 4242)
    plan = hf.plan_entry(hf.Entry(path=str(target), content="x", owner=other, group=str(os.getgid() + 4242)))
    assert plan.changes == ["owner", "group"]
    assert hf.plan_entry(hf.Entry(path=str(target), content="x", owner=str(os.getuid()))).changes == []


def test_unknown_owner_fails_before_anything_is_written(tmp_path):
    wanted = entries(tmp_path) + [hf.Entry(path=str(tmp_path / "x"), content="", owner="no-such-user-bs")]
    with pytest.raises(hf.HostFilesError, match="no-such-user-bs"):
        hf.sync_files(wanted, False, no_run)
    assert not (tmp_path / "etc").exists()


def test_unset_attributes_are_kept(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")
    target.chmod(0o600)
    result = hf.sync_files([hf.Entry(path=str(target), content="new")], False, no_run)
    assert result["files"][0]["changes"] == ["content"]
    assert (target.read_text(), mode_of(target)) == ("new", "0600")


def test_absent_removes_files_and_directories(tmp_path):
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "f").write_text("x")
    wanted = [hf.Entry(path=str(tmp_path / "f"), state="absent"), hf.Entry(path=str(tmp_path / "d"), state="absent"),
              hf.Entry(path=str(tmp_path / "never"), state="absent")]
    assert hf.sync_files(wanted, True, no_run)["changed_paths"] == [str(tmp_path / "f"), str(tmp_path / "d")]
    assert (tmp_path / "f").exists()
    hf.sync_files(wanted, False, no_run)
    assert not (tmp_path / "f").exists() and not (tmp_path / "d").exists()
    assert not hf.sync_files(wanted, False, no_run)["changed"]


def test_a_directory_is_never_replaced_by_a_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(hf.HostFilesError, match="not a file"):
        hf.sync_files([hf.Entry(path=str(tmp_path / "d"), content="x")], False, no_run)
    (tmp_path / "f").write_text("x")
    with pytest.raises(hf.HostFilesError, match="not a directory"):
        hf.sync_files([hf.Entry(path=str(tmp_path / "f"), state="directory")], False, no_run)


def test_a_link_is_replaced_by_the_file(tmp_path):
    (tmp_path / "elsewhere").write_text("x")
    (tmp_path / "f").symlink_to(tmp_path / "elsewhere")
    result = hf.sync_files([hf.Entry(path=str(tmp_path / "f"), content="x", mode="0644")], False, no_run)
    assert result["files"][0]["changes"] == ["replaced link"]
    assert not (tmp_path / "f").is_symlink() and (tmp_path / "elsewhere").read_text() == "x"


def test_validate_checks_the_new_content_and_a_refusal_keeps_the_file(tmp_path):
    target = tmp_path / "f"
    target.write_text("good\n")
    seen = []

    def refuse(command: str) -> tuple[int, str, str]:
        path = command.split()[-1]
        seen.append((command, Path(path).read_text(), mode_of(Path(path))))
        return 1, "", "line 1: bad"

    wanted = [hf.Entry(path=str(target), content="bad\n", mode="0600", validate="checker --file %s")]
    with pytest.raises(hf.HostFilesError, match="validation failed.*line 1: bad"):
        hf.sync_files(wanted, False, refuse)
    assert target.read_text() == "good\n" and [s[1:] for s in seen] == [("bad\n", "0600")]
    assert seen[0][0].startswith("checker --file ") and str(tmp_path) in seen[0][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"], "the temporary file was left behind"
    assert hf.sync_files(wanted, True, no_run)["changed"], "check mode must not validate"
    assert hf.sync_files(wanted, False, lambda command: (0, "", ""))["changed"]
    assert target.read_text() == "bad\n"


def test_diff_shows_content_and_attributes(tmp_path):
    hf.sync_files(entries(tmp_path), False, no_run)
    (tmp_path / "etc/app.conf").write_text("a = 2\n")
    (tmp_path / "etc/app.conf").chmod(0o600)
    diff = hf.sync_files(entries(tmp_path), True, no_run)["diff"]
    assert [d["before_header"] for d in diff] == [f"{tmp_path}/etc/app.conf (attributes)", f"{tmp_path}/etc/app.conf"]
    assert "mode=0600" in diff[0]["before"] and "mode=0640" in diff[0]["after"]
    assert (diff[1]["before"], diff[1]["after"]) == ("a = 2\n", "a = 1\n")


def test_secret_content_never_appears_in_the_result(tmp_path):
    target = tmp_path / "backup.json"
    target.write_text(json.dumps({"password": "Old-pw-0001"}))
    wanted = [hf.Entry(path=str(target), content=json.dumps({"password": SECRET}), mode="0600", secret=True)]
    for check_mode in (True, False):
        result = hf.sync_files(wanted, check_mode, no_run)
        text = json.dumps(result)
        assert result["changed"] and SECRET not in text and "Old-pw-0001" not in text
        assert hf.HIDDEN in text and result["files"][0]["secret"] is True
    assert json.loads(target.read_text())["password"] == SECRET


def test_hide_all_hides_every_content(tmp_path):
    result = hf.sync_files(entries(tmp_path, content=f"pw = {SECRET}\n"), True, no_run, hide_all=True)
    assert SECRET not in json.dumps(result) and result["changed"]


# ---- the read-only look-ups ----

class FakeRun:
    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str] | Exception]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        answer = self.answers.get(tuple(argv), (1, "", "unknown"))
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_parse_dpkg_keeps_version_and_status():
    text = ("docker-ce\t5:27.3.1-1~debian.12~bookworm\tii \n"
            "docker.io\t\tun \n"
            "podman-docker\t4.3\trc \n"
            "garbage line\n")
    assert hf.parse_dpkg(text) == {
        "docker-ce": {"version": "5:27.3.1-1~debian.12~bookworm", "status": "ii", "installed": True},
        "docker.io": {"version": "", "status": "un", "installed": False},
        "podman-docker": {"version": "4.3", "status": "rc", "installed": False}}


def test_units_and_commands_never_fail():
    run = FakeRun({("systemctl", "is-enabled", "docker.service"): (0, "enabled\n", ""),
                   ("systemctl", "is-active", "docker.service"): (3, "inactive\n", ""),
                   ("dockerd", "--version"): FileNotFoundError(2, "No such file")})
    assert hf.read_units(["docker.service", "none.service"], run) == {
        "docker.service": {"enabled": "enabled", "active": "inactive"},
        "none.service": {"enabled": "", "active": ""}}
    commands = hf.read_commands({"dockerd": ["dockerd", "--version"]}, run)
    assert commands["dockerd"]["rc"] == 127 and "No such file" in commands["dockerd"]["stderr"]
    with pytest.raises(hf.HostFilesError, match="commands.bad"):
        hf.read_commands({"bad": "dockerd --version"}, run)


def test_sysctl_paths_and_globs(tmp_path):
    proc = tmp_path / "proc"
    (proc / "vm").mkdir(parents=True)
    (proc / "vm/swappiness").write_text("60\n")
    (proc / "net/ipv4").mkdir(parents=True)
    (proc / "net/ipv4/ip_local_port_range").write_text("32768\t60999\n")
    assert hf.read_sysctl(["vm.swappiness", "net.ipv4.ip_local_port_range", "vm.nothing"], str(proc)) == {
        "vm.swappiness": {"value": "60", "writable": os.access(proc / "vm/swappiness", os.W_OK)},
        "net.ipv4.ip_local_port_range": {"value": "32768 60999", "writable": True},
        "vm.nothing": {"value": None, "writable": False}}
    (tmp_path / "services/a").mkdir(parents=True)
    (tmp_path / "services/a/compose.yaml").write_text("")
    (tmp_path / "services/b").mkdir()
    assert hf.read_globs([f"{tmp_path}/services/*/compose.yaml"]) == {
        f"{tmp_path}/services/*/compose.yaml": [f"{tmp_path}/services/a/compose.yaml"]}
    paths = hf.read_paths([str(tmp_path / "services"), str(tmp_path / "none")])
    assert paths[str(tmp_path / "services")] == {"exists": True, "writable": True, "type": "directory"}
    assert paths[str(tmp_path / "none")] == {"exists": False, "writable": False, "type": None}


def test_no_package_asked_runs_nothing():
    assert hf.host_facts({}, no_run)["packages"] == {}


# ---- the modules end to end ----

def run_module(module: Any, capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_host_files_main_apply_rerun_check_heal(tmp_path, capsys):
    conf = tmp_path / "etc/app.conf"
    files = [{"path": str(tmp_path / "etc"), "state": "directory", "mode": "0750"},
             {"path": str(conf), "content": "a = 1\n", "owner": USER, "group": GROUP, "mode": "0640"}]
    runs = [run_module(host_files, capsys, {"files": files, "_ansible_diff": True})]
    runs.append(run_module(host_files, capsys, {"files": files, "_ansible_diff": True}))
    conf.write_text("edited by hand\n")
    runs.append(run_module(host_files, capsys, {"files": files, "_ansible_check_mode": True, "_ansible_diff": True}))
    assert conf.read_text() == "edited by hand\n"
    runs.append(run_module(host_files, capsys, {"files": files}))
    assert [r["changed"] for r in runs] == [True, False, True, True]
    assert runs[2]["changed_paths"] == [str(conf)] and runs[2]["diff"][0]["before"] == "edited by hand\n"
    assert "diff" not in runs[3]
    assert conf.read_text() == "a = 1\n"


def test_host_files_main_masks_a_secret_everywhere(tmp_path, capsys):
    files = [{"path": str(tmp_path / "b.json"), "content": f'{{"password": "{SECRET}"}}', "mode": "0600",
              "secret": True}]
    result = run_module(host_files, capsys, {"files": files, "_ansible_diff": True, "_ansible_verbosity": 4})
    assert result["changed"] and SECRET not in json.dumps(result)
    assert (tmp_path / "b.json").read_text() == f'{{"password": "{SECRET}"}}'


def test_host_files_main_honours_no_log(tmp_path, capsys):
    files = [{"path": str(tmp_path / "f"), "content": f"{SECRET}\n"}]
    result = run_module(host_files, capsys, {"files": files, "_ansible_diff": True, "_ansible_no_log": True})
    assert result["changed"] and SECRET not in json.dumps(result)


def test_host_files_main_fails_with_a_clear_message(tmp_path, capsys):
    result = run_module(host_files, capsys, {"files": [{"path": str(tmp_path / "f"), "mode": "rw"}]})
    assert result["failed"] and "needs content" in result["msg"]


def test_host_facts_main_reads_without_changing(tmp_path, capsys):
    result = run_module(host_facts, capsys, {"paths": [str(tmp_path)], "globs": [f"{tmp_path}/*"],
                                             "commands": {"echo": ["echo", "hi"], "none": ["no-such-program-bs"]},
                                             "_ansible_check_mode": True})
    assert result["changed"] is False and result["paths"][str(tmp_path)]["exists"]
    assert result["commands"]["echo"] == {"rc": 0, "stdout": "hi", "stderr": ""}
    assert result["commands"]["none"]["rc"] == 127
