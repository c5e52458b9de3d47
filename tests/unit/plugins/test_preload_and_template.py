# SPDX-License-Identifier: GPL-3.0-or-later
"""Two speed-ups of every run, and that they change nothing but the time:

- borgstack.stack.template (plugins/lookup/template.py) renders exactly what ansible.builtin.template renders -
  from a role's templates/ (with an include, the collection's filters, template_vars, ansible_managed, lazily derived
  variables) - without deep-copying the variables. The roles' own templates are compared where it counts: a rerun
  of the lab stack with the new lookup reported changed=0 (every Compose and configuration file the same).
- borgstack.stack.preload (plugins/callback/preload.py) loads this collection's filters, tests, lookups and actions
  and ansible-core's into the controller before the first task, and the project's ansible.cfg and every molecule
  scenario enable it.

Run by the real ansible-playbook on localhost; the render comparison uses each role's own templates/ directory."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "collections"))


def _playbook(tmp: Path, plays: list, *args: str) -> subprocess.CompletedProcess:
    playbook = tmp / "play.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_CALLBACKS_ENABLED="borgstack.stack.preload")
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(playbook), *args],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False)


# A role whose templates use what the roles' templates use: ansible_managed, an include found through the role's
# templates/ directory, the collection's filters, backslashes, quotes, blank and trailing lines, a variable from
# template_vars and one a task variable derives from the others (lazily, as the contracts are).
TEMPLATES = {
    "main.j2": "# {{ ansible_managed }}\n{% include 'part.j2' %}\nregex: '^a\\.b\\s+$' \"{{ name }}\"\n\n"
               "{{ 'America/Sao_Paulo' | borgstack.stack.timezone_error('tz') | length }} {{ extra_var }}\n"
               "{% for k, v in settings | dictsort %}{{ k }}={{ v | to_json }}\n{% endfor %}{{ derived }}\n\n",
    # A backslash escape inside an expression: Jinja reads it (a tab), as ansible-core's lookup lets it.
    "part.j2": "part of {{ name | upper }}{{ ' a\\tb' }}\n",
}
TASKS = [
    {"name": f"Render with {lookup}", "ansible.builtin.copy": {
        "dest": "{{ out }}/%s.txt" % lookup, "mode": "0600",
        "content": "{{ lookup('%s', 'main.j2', template_vars={'extra_var': 'x'}) }}" % lookup}}
    for lookup in ("ansible.builtin.template", "borgstack.stack.template")
]


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("template")
    role = out / "roles" / "probe"
    (role / "templates").mkdir(parents=True)
    (role / "tasks").mkdir()
    for name, text in TEMPLATES.items():
        (role / "templates" / name).write_text(text)
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(TASKS, sort_keys=False))
    plays = [{"hosts": "localhost", "gather_facts": False,
              "vars": {"out": str(out), "name": "n8n", "settings": {"b": "1 2", "a": [1, "x"]},
                       "derived": "{{ name ~ '-' ~ settings.b }}"},
              "roles": [{"role": str(role)}]}]
    proc = _playbook(out, plays)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {"builtin": (out / "ansible.builtin.template.txt").read_text(),
            "ours": (out / "borgstack.stack.template.txt").read_text()}


def test_the_lookup_renders_what_ansible_core_renders(renders):
    assert renders["ours"] == renders["builtin"]
    # And it did render the whole template (a render that failed the same way in both would prove nothing).
    assert renders["ours"].startswith("# Ansible managed\npart of N8N a\tbregex") and "n8n-1 2" in renders["ours"]
    assert "regex: '^a\\.b\\s+$'" in renders["ours"] and "\n0 x\n" in renders["ours"]


def test_the_preload_callback_loads_the_collection_and_core_plugins(tmp_path):
    proc = _playbook(tmp_path, [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Use a filter", "ansible.builtin.debug": {
            "msg": "{{ 'UTC' | borgstack.stack.timezone_error('tz') | length }}"}}]}], "-vvv")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = next(row for row in proc.stdout.splitlines() if row.startswith("borgstack.stack.preload:"))
    # ansible-core's filters and tests alone are ~150; this collection adds its own.
    assert int(line.split()[1]) >= 200, line


def test_the_project_and_every_scenario_enable_the_preload():
    config = configparser.ConfigParser()
    config.read(ROOT / "ansible.cfg")
    assert config["defaults"]["callbacks_enabled"] == "borgstack.stack.preload"
    for scenario in sorted((ROOT / "molecule").glob("*/molecule.yml")):
        options = yaml.safe_load(scenario.read_text())["provisioner"]["config_options"]["defaults"]
        assert options.get("callbacks_enabled") == "borgstack.stack.preload", scenario


def _cache_run(tmp: Path, home: Path, extra_collections: Path) -> tuple[subprocess.CompletedProcess, str]:
    """A run with a module task; returns it and the module-payload directory the preload says it kept."""
    playbook = tmp / "cache.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "A module", "ansible.builtin.command": {"argv": ["true"]}, "changed_when": False}]}]))
    env = dict(os.environ, HOME=str(home), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_CALLBACKS_ENABLED="borgstack.stack.preload",
               ANSIBLE_COLLECTIONS_PATH=f"{ROOT / 'collections'}:{extra_collections}")
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(playbook), "-vvv"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = next(row for row in proc.stdout.splitlines() if "module payloads kept in" in row)
    return proc, line.rsplit(" ", 1)[1]


def test_module_payloads_are_kept_between_runs_and_rebuilt_when_a_module_changes(tmp_path):
    """The payload cache outlives the run; its key changes when a module of a source collection changes (size or
    time), and a cache of another key unused for a week is removed (one used lately stays)."""
    home, extra = tmp_path / "home", tmp_path / "extra"
    module = extra / "ansible_collections" / "acme" / "thing" / "plugins" / "modules" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("# a module\n")
    cache_root = home / ".ansible" / "borgstack" / "ansiballz"
    old, recent = cache_root / "old-key", cache_root / "recent-key"
    old.mkdir(parents=True)
    recent.mkdir()
    week_ago = __import__("time").time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))

    first = _cache_run(tmp_path, home, extra)[1]
    assert Path(first).parent == cache_root
    assert any(p.name.startswith("ansible.modules.command") for p in Path(first).iterdir()), list(Path(first).iterdir())
    assert not old.exists() and recent.exists()
    again = _cache_run(tmp_path, home, extra)[1]
    assert again == first
    module.write_text("# a module, edited\n")
    edited = _cache_run(tmp_path, home, extra)[1]
    assert edited != first
