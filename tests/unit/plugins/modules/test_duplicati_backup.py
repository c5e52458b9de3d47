# SPDX-License-Identifier: GPL-3.0-or-later
"""The duplicati_backup module's plan, without a server: the settings it sends, the fingerprint that notices a
changed secret the server masks, and the comparison of what the server answers (a fake Client records the calls;
the real HTTP exchange is tested against the contract server in tests/integration/targets/duplicati_backup)."""
from __future__ import annotations

import copy
import os
from typing import Any

import pytest

from ansible_collections.borgstack.stack.plugins.module_utils import _duplicati, _netns
from ansible_collections.borgstack.stack.plugins.modules import duplicati_backup as mod

PARAMS: dict[str, Any] = {
    "url": "http://10.0.0.2:8200", "host": "duplicati.example.com.br", "password": "pw-0123456789ab",
    "name": "BorgStack", "state": "present", "description": "d", "timeout": 5,
    "sources": ["/source/dumps/", "/source/volumes/borgstack_n8n_data/"],
    "target_url": "s3://b/p?auth-username=AK&auth-password=SECRET-1",
    "passphrase": "passphrase-0123456789-abc",
    "options": {"retention-policy": "7D:1D,4W:1W,12M:1M,5Y:1Y", "dblock-size": "50mb", "use-ssl": True},
}


class FakeModule:
    def __init__(self, params: dict[str, Any], check_mode: bool = False) -> None:
        self.params, self.check_mode = params, check_mode


class FakeClient:
    """Answers like the server: the stored job, masked."""

    stored: dict[str, Any] | None = None
    calls: list[tuple[str, str]] = []

    def __init__(self, url: str, host: str | None, timeout: int) -> None:
        pass

    def login(self, password: str) -> None:
        FakeClient.calls.append(("POST", "auth/login"))

    def authenticate(self, params: dict[str, Any]) -> None:
        if not params.get("token"):
            self.login(params["password"])

    def explain_401(self, exc: Exception) -> Exception:
        return exc

    def request(self, method: str, path: str, body: Any = None) -> Any:
        FakeClient.calls.append((method, path))
        if method == "GET" and path == "backups":
            return [] if self.stored is None else [{"Backup": {"ID": "1", "Name": self.stored["Name"]}}]
        if method == "GET":
            backup = copy.deepcopy(self.stored)
            for setting in backup["Settings"]:
                if setting["Name"] == "passphrase":
                    setting["Value"] = mod.PASSWORD_PLACEHOLDER
            backup["TargetURL"] = backup["TargetURL"].replace("SECRET-1", mod.PASSWORD_PLACEHOLDER)
            return {"Backup": backup, "Schedule": None}
        if method in ("POST", "PUT"):
            FakeClient.stored = {**body["Backup"], "ID": "1", "Metadata": body["Backup"].get("Metadata") or {}}
            return {"ID": "1", "Temporary": False}
        return None


@pytest.fixture(autouse=True)
def fake_client(monkeypatch):
    FakeClient.stored, FakeClient.calls = None, []
    monkeypatch.setattr(mod, "Client", FakeClient)


def _writes() -> list[tuple[str, str]]:
    return [c for c in FakeClient.calls if c[0] in ("POST", "PUT", "DELETE") and c[1] != "auth/login"]


def test_settings_as_the_ui_stores_them():
    settings = {s["Name"]: s["Value"] for s in mod.wanted_settings(PARAMS)}
    assert settings == {"encryption-module": "aes", "compression-module": "zip", "dblock-size": "50mb",
                        "passphrase": PARAMS["passphrase"], "--retention-policy": "7D:1D,4W:1W,12M:1M,5Y:1Y",
                        "--use-ssl": "true"}


@pytest.mark.parametrize("field, value", [("target_url", "s3://b/p?auth-username=AK&auth-password=SECRET-2"),
                                          ("passphrase", "another-passphrase-0123456789"),
                                          ("sources", ["/source/dumps/"])])
def test_the_fingerprint_changes_with_every_part_of_the_definition(field, value):
    base = mod.fingerprint(PARAMS, mod.wanted_settings(PARAMS))
    other = {**PARAMS, field: value}
    assert mod.fingerprint(other, mod.wanted_settings(other)) != base
    assert mod.fingerprint(dict(PARAMS), mod.wanted_settings(dict(PARAMS))) == base


def test_create_then_no_change_then_a_masked_secret_change_is_seen():
    first = mod.run(FakeModule(dict(PARAMS)))
    assert (first["changed"], first["operation"]) == (True, "create") and _writes() == [("POST", "backups")]
    FakeClient.calls = []
    second = mod.run(FakeModule(dict(PARAMS)))
    assert (second["changed"], second["changes"]) == (False, []) and _writes() == []
    FakeClient.calls = []
    changed = mod.run(FakeModule({**PARAMS, "target_url": PARAMS["target_url"].replace("SECRET-1", "SECRET-2")},
                                 check_mode=True))
    assert (changed["changed"], changed["changes"]) == (True, ["description or secrets"]) and _writes() == []


def test_an_option_changed_on_the_server_is_put_back():
    mod.run(FakeModule(dict(PARAMS)))
    for setting in FakeClient.stored["Settings"]:
        if setting["Name"] == "--retention-policy":
            setting["Value"] = "1W:1D"
    FakeClient.calls = []
    result = mod.run(FakeModule(dict(PARAMS)))
    assert result["changes"] == ["options"] and _writes() == [("PUT", "backup/1")]


def test_present_needs_the_destination_and_the_passphrase():
    with pytest.raises(mod.DuplicatiError, match="state=present needs target_url, passphrase"):
        mod.run(FakeModule({**PARAMS, "target_url": None, "passphrase": ""}))


# --- On a swarm: from inside Duplicati's task (module_utils/_netns.py), at the module_utils boundary -----------------
class ExitModule(FakeModule):
    """What run_module uses of AnsibleModule: the Docker CLI (a fake answering with this test's own process, whose
    namespace file exists), exit_json and fail_json."""

    def __init__(self, params: dict[str, Any], events: list, docker=None) -> None:
        super().__init__(params)
        self.events = events
        self.docker = docker or (lambda argv: (0, f"{os.getpid()}\n", ""))

    def get_bin_path(self, name: str, required: bool = False) -> str:
        return f"/usr/bin/{name}"

    def run_command(self, argv):
        self.events.append(("docker", argv))
        return self.docker(argv)

    def exit_json(self, **result):
        self.events.append(("exit", result["changed"]))
        raise SystemExit(0)

    def fail_json(self, **result):
        self.events.append(("fail", result["msg"]))
        raise SystemExit(1)


def test_with_a_container_every_request_leaves_from_its_namespace(monkeypatch):
    events: list = []
    monkeypatch.setattr(_netns, "setns", lambda fd: events.append(("setns", os.fstat(fd).st_ino)))
    real_login = FakeClient.login

    def login(self, password):
        events.append(("request", "auth/login"))
        real_login(self, password)
    monkeypatch.setattr(FakeClient, "login", login)
    params = {**PARAMS, "url": "http://127.0.0.1:8200", "container": "borgstack_duplicati.1.abc"}
    with pytest.raises(SystemExit):
        _duplicati.run_module(ExitModule(params, events), mod.run)
    # The namespace first, then the first request (PARAMS log in with the password).
    assert events[:3] == [
        ("docker", ["/usr/bin/docker", "container", "inspect", "--format", "{{.State.Pid}}",
                    "borgstack_duplicati.1.abc"]),
        ("setns", os.stat(f"/proc/{os.getpid()}/ns/net").st_ino),
        ("request", "auth/login")]
    assert events[-1] == ("exit", True) and _writes(), "the job was created, after entering the namespace"


def test_a_container_that_is_gone_fails_before_any_request(monkeypatch):
    events: list = []
    monkeypatch.setattr(_netns, "setns", lambda fd: pytest.fail("nothing to enter"))
    module = ExitModule({**PARAMS, "container": "borgstack_duplicati.1.gone"}, events,
                        docker=lambda argv: (1, "", "Error: No such container: borgstack_duplicati.1.gone"))
    with pytest.raises(SystemExit):
        _duplicati.run_module(module, mod.run)
    assert events[-1] == ("fail", "container borgstack_duplicati.1.gone: docker container inspect "
                                  "borgstack_duplicati.1.gone failed: Error: No such container: "
                                  "borgstack_duplicati.1.gone. Nothing was changed.")
    assert FakeClient.calls == []


def test_without_a_container_no_namespace_is_entered(monkeypatch):
    events: list = []
    monkeypatch.setattr(_netns, "setns", lambda fd: pytest.fail("one host: requests leave from the host"))
    with pytest.raises(SystemExit):
        _duplicati.run_module(ExitModule(dict(PARAMS), events), mod.run)
    assert events == [("exit", True)]


def test_both_duplicati_modules_take_the_container_their_doc_fragment_documents():
    from ansible_collections.borgstack.stack.plugins.doc_fragments.duplicati import ModuleDocFragment
    from ansible_collections.borgstack.stack.plugins.modules import duplicati_first_password
    import yaml
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    for spec in (mod.ARGUMENT_SPEC, duplicati_first_password.ARGUMENT_SPEC):
        assert spec["container"] == {"type": "str"}
        assert set(documented) <= set(spec)
