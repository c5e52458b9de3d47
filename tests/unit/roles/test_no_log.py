# SPDX-License-Identifier: GPL-3.0-or-later
"""Every task that reads or writes secret material has ``no_log: true`` (itself or on an enclosing block).

Walked: tasks/*.yml and handlers/*.yml of every role, playbooks/*.yml (their plays' task lists) and
playbooks/tasks/*.yml, with PyYAML; blocks, rescue and always recursively.

A task handles secret material when one of these holds (the first that matches is the reason reported):

1. ``module``: it runs ansible.builtin.slurp (file content comes back in the result), except a literal path under
   /proc or /sys (kernel interfaces, not secrets); or one of the collection's modules that take passwords
   (postgresql_tenant, mongodb_user, stack_health) with an option whose name matches SECRET_RE.
2. ``secret file``: copy/template writes a file whose ``dest`` names a secret file (SECRET_FILE_RE: secrets.env,
   ``*.key``, ``*.pem``, or a path containing a SECRET_RE word).
3. ``variable``: a Jinja expression in what the task prints or passes to its module references a variable or
   attribute whose name matches SECRET_RE, or one of SECRET_VARIABLES, or the registered result of another
   task that handles secret material (a slurp's content, a command's output). Looked at: the task name, module
   arguments, loop items, task ``vars`` and ``environment``. Not looked at: conditionals (``when``,
   ``changed_when``, ``failed_when``, ``until``, assert's ``that``, a borgstack.stack.checks rule's ``that`` and
   ``when``), which Ansible evaluates but does not print;
   plain text outside ``{{ }}`` / ``{% %}`` and string literals inside (a message may name a variable without
   showing its value); a value piped into ``length`` (prints a number); and the fields of a registered result
   that hold no output (SAFE_RESULT_FIELDS: ``__x.rc``, ``__x.stat``).

Not printed either: the options of a collection module that its argument spec declares ``no_log`` (MASKED_OPTIONS,
read from the module's own spec: compose_deploy's ``env`` and ``secret_files``). Ansible masks their values wherever
they would appear - the task's arguments at -vvv, its result, its diff - so the task that passes
compose_service_env to compose_deploy needs no no_log, and keeping it off leaves the deploy's errors readable.
tests/integration/targets/compose_deploy proves it: the role at -vvv with --diff and a secret prints no trace of it.
Any other option of such a module is checked as usual.

include_role/import_role/include_tasks/import_tasks are not checked themselves: they print no arguments; the
tasks they run are checked where they are written (compose_service's tasks, for compose_service_env).

SECRET_RE is deliberately broad (a false alarm costs one ``no_log: true``); EXCEPTIONS lists tasks that match and
must not have no_log, each with its reason: validation tasks whose error message is the point.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import ARGUMENT_SPEC as COMPOSE_DEPLOY_SPEC
from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import SECRET_OPTIONS as COMPOSE_DEPLOY_SECRETS
from ansible_collections.borgstack.stack.plugins.modules.duplicati_backup import ARGUMENT_SPEC as DUPLICATI_BACKUP_SPEC
from ansible_collections.borgstack.stack.plugins.modules.duplicati_backup import SECRET_OPTIONS as DUPLICATI_SECRETS
from ansible_collections.borgstack.stack.plugins.modules.duplicati_first_password import (
    ARGUMENT_SPEC as DUPLICATI_FIRST_PASSWORD_SPEC,
    SECRET_OPTIONS as DUPLICATI_FIRST_PASSWORD_SECRETS,
)

ROOT = Path(__file__).resolve().parents[3]
# Names that say "secret": the words below anywhere, or a name ending in _key (luks_key, n8n_encryption_key,
# seaweedfs_s3_access_key; the convention test_argument_specs.py also relies on for no_log options).
SECRET_RE = re.compile(
    r"password|secret|encryption_key|master_secret|token|passphrase|access_key|secret_key|\w_key$",
    re.IGNORECASE,
)
# Variables holding secrets whose names do not say so: compose_service's secret environment (written to
# secrets.env) and secret config files.
SECRET_VARIABLES = frozenset({"compose_service_env", "compose_service_secret_files"})
SECRET_FILE_RE = re.compile(r"secrets\.env|\.key\b|\.pem\b|password|secret|token|passphrase", re.IGNORECASE)
PASSWORD_MODULES = frozenset({"postgresql_tenant", "mongodb_user", "stack_health"})
FILE_WRITERS = frozenset({"copy", "template"})
# Collection modules whose secret options are no_log in their argument spec: {module: (options, argument spec)}.
MASKED_OPTIONS: dict[str, tuple[frozenset[str], dict[str, Any]]] = {
    "compose_deploy": (COMPOSE_DEPLOY_SECRETS, COMPOSE_DEPLOY_SPEC),
    "duplicati_backup": (DUPLICATI_SECRETS, DUPLICATI_BACKUP_SPEC),
    "duplicati_first_password": (DUPLICATI_FIRST_PASSWORD_SECRETS, DUPLICATI_FIRST_PASSWORD_SPEC),
}
SLURP = "slurp"
INCLUDES = frozenset({"include_role", "import_role", "include_tasks", "import_tasks"})
# (file relative to the repository, task name) -> why no no_log is needed.
_NAMES_ONLY = (
    "validation (the rule on the users or tenants): the task var reads each password only to measure its length and "
    "holds the names of the bad "
    "entries, which fail_msg shows; no_log would hide that message and leave the operator guessing"
)
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("playbooks/tasks/validate_stack.yml", "Check the stack-wide settings"): (
        "validation (the rule on the secret versions): borgstack_secret_versions holds version numbers, not secrets; the messages of "
        "secret_version_errors name purposes and never a value (tests/unit/plugins/filter/test_secrets.py), and "
        "no_log would hide why a rotation is refused"),
    ("roles/mongodb/tasks/validate.yml", "Check MongoDB's settings"): _NAMES_ONLY,
    ("roles/lowcoder/tasks/admin_lookup.yml", "Check MongoDB's answer"): (
        "reads rc and stderr of mongosh (the URL with the password reached it through docker's environment, never "
        "its output) and replaces Lowcoder's MongoDB password in stderr before showing it; no_log would hide why "
        "MongoDB could not be asked"),
    ("roles/postgresql/tasks/validate.yml", "Check PostgreSQL's settings"): _NAMES_ONLY,
    ("roles/monitoring/tasks/validate.yml", "Check the monitoring settings"): (
        "validation (the rule on the alert channels): alerting_errors only asks whether the SMTP password file is given and whether the Telegram token "
        "has the right shape, and its messages name the variable, never a value (tests/unit/plugins/filter/"
        "test_alerting.py); no_log would hide which setting is wrong"),
    ("roles/n8n/tasks/validate.yml", "Check n8n's settings"): (
        "validation (the rule on the owner's first password): the task var turns the password into one boolean; the assertion and fail_msg name only the "
        "variable, and no_log would hide the message that says which rule failed"),
    ("roles/n8n/tasks/owner.yml", "Fail when the owner account could not be created"): (
        "reads only rc and stderr of the setup script, which writes the failing step and n8n's answer and never "
        "the password (roles/n8n/files/owner_setup.js); no_log would hide why the setup failed"),
    ("roles/n8n/tasks/workflows.yml", "Fail when the workflows could not be installed"): (
        "reads only rc and stderr of the install script, which writes the failing step and n8n's answer and never "
        "credential data (roles/n8n/files/workflows_sync.js); no_log would hide why the install failed"),
    ("roles/n8n/tasks/workflows.yml", "Show what changed in the workflows"): (
        "shows the install script's list of actions, which holds credential and workflow ids and names only "
        "(roles/n8n/files/workflows_sync.js); the operator needs it to see which workflow was replaced"),
    ("roles/n8n/tasks/media_pipeline.yml", "Fail when the media pipeline's workflow could not be installed"): (
        "reads only rc and stderr of the install script (roles/n8n/files/workflows_sync.js), which never writes "
        "credential data; no_log would hide why the install failed"),
    ("roles/n8n/tasks/media_pipeline.yml", "Show what changed in the media pipeline's workflow"): (
        "shows the install script's list of actions: workflow and credential ids and names only"),
    ("roles/directus/tasks/media_pipeline.yml", "Fail when the media pipeline could not be set up"): (
        "reads only rc and stderr of roles/directus/files/media_pipeline_sync.js, which writes the failing step and "
        "Directus' answer, never the token or the password; no_log would hide why the setup failed"),
    ("roles/directus/tasks/media_pipeline.yml", "Show what changed in Directus' media pipeline"): (
        "shows the setup script's list of actions: account e-mail, folder and flow names only"),
    ("roles/evolution_api/tasks/instance.yml", "Fail when an instance could not be created"): (
        "reads only rc and stderr of the instance script, which writes the failing step and Evolution's answer and "
        "never the API key (roles/evolution_api/files/instance.js); no_log would hide why the creation failed"),
}

TASK_KEYWORDS = frozenset({
    "name", "when", "changed_when", "failed_when", "until", "retries", "delay", "register", "loop",
    "loop_control", "vars", "environment", "no_log", "tags", "become", "become_user", "check_mode", "diff",
    "notify", "listen", "ignore_errors", "delegate_to", "run_once", "throttle", "args", "block", "rescue",
    "always", "with_items", "with_dict", "with_list", "with_fileglob", "with_subelements", "with_together",
    "with_nested", "with_sequence", "with_first_found", "ignore_unreachable", "any_errors_fatal", "timeout",
    "module_defaults", "collections", "connection", "delegate_facts", "local_action", "async", "poll",
})
CONDITIONALS = frozenset({"when", "changed_when", "failed_when", "until"})
JINJA_RE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
# Inside an expression: string literals are text, not values; a value measured with "| length" prints a number.
STRING_LITERAL_RE = re.compile(r"'[^']*'|\"[^\"]*\"")
MEASURED_RE = re.compile(r"[A-Za-z_][\w.]*\s*\|\s*length\b")
# A name, with the first attribute read from it (registered results: __x.rc, __x.content).
REFERENCE_RE = re.compile(r"([A-Za-z_]\w*)(?:\s*\.\s*([A-Za-z_]\w*))?")
# Fields of a registered result that never hold what the task read or ran.
SAFE_RESULT_FIELDS = frozenset({"rc", "changed", "failed", "skipped", "stat", "exists"})


def task_files() -> list[Path]:
    files = sorted(ROOT.glob("roles/*/tasks/*.yml")) + sorted(ROOT.glob("roles/*/handlers/*.yml"))
    files += sorted(ROOT.glob("playbooks/*.yml")) + sorted(ROOT.glob("playbooks/tasks/*.yml"))
    return files


def task_lists(document: Any) -> Iterator[list[dict[str, Any]]]:
    """The task lists of a tasks file (a list of tasks) or a playbook (a list of plays)."""
    if not isinstance(document, list):
        return
    if any(isinstance(item, dict) and ("hosts" in item or "import_playbook" in item) for item in document):
        for play in document:
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                if isinstance(play, dict) and play.get(section):
                    yield play[section]
    else:
        yield document


def walk(tasks: list[dict[str, Any]], inherited_no_log: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every task with whether no_log applies to it (its own keyword, or an enclosing block's)."""
    for task in tasks:
        no_log = task.get("no_log", inherited_no_log) is True
        if "block" in task:
            for section in ("block", "rescue", "always"):
                yield from walk(task.get(section) or [], no_log)
        else:
            yield task, no_log


def module_of(task: dict[str, Any]) -> tuple[str, Any]:
    """(short module name, its arguments)."""
    for key, value in task.items():
        if key not in TASK_KEYWORDS:
            return key.rsplit(".", 1)[-1], value
    return "", None


def expressions(value: Any, bare: bool = False) -> Iterator[str]:
    """Jinja expressions in ``value``; with ``bare``, a string is itself an expression (loop: a_var)."""
    if isinstance(value, str):
        found = [a or b for a, b in JINJA_RE.findall(value)]
        yield from found or ([value] if bare else [])
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from expressions(key)
            yield from expressions(item, bare)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item, bare)


def printed_expressions(task: dict[str, Any]) -> Iterator[str]:
    module, args = module_of(task)
    yield from expressions(task.get("name", ""))
    if module == "checks" and isinstance(args, dict):
        # borgstack.stack.checks evaluates each rule's that and when (never printed) and prints a failed rule's msg;
        # a rule's loop feeds its msg (item), so it counts as printed.
        rules = args.get("rules") or []
        args = {"rules": [{k: v for k, v in rule.items() if k not in ("that", "when")} for rule in rules
                          if isinstance(rule, dict)]}
        for rule in args["rules"]:
            yield from expressions(rule.pop("loop", None), bare=True)
    if isinstance(args, dict):
        args = {k: v for k, v in args.items() if not (module in ("assert", "fail") and k == "that")}
        args = {k: v for k, v in args.items() if k not in MASKED_OPTIONS.get(module, (frozenset(), {}))[0]}
    yield from expressions(args)
    yield from expressions(task.get("args"))
    for key in ("vars", "environment"):
        yield from expressions(task.get(key))
    for key, value in task.items():
        if key == "loop" or key.startswith("with_"):
            yield from expressions(value, bare=True)


def module_reason(module: str, args: dict[str, Any]) -> str | None:
    """Rules 1 and 2: the module or the file it writes says "secret"."""
    if module == SLURP:
        src = str(args.get("src", args.get("path", "")))
        if "{{" in src or not src.startswith(("/proc/", "/sys/")):
            return f"module: slurp of {src}"
    if module in PASSWORD_MODULES and any(SECRET_RE.search(key) for key in args):
        return f"module: {module} with a password option"
    if module in FILE_WRITERS and SECRET_FILE_RE.search(str(args.get("dest", ""))):
        return f"secret file: {module} to {args['dest']}"
    return None


def variable_reason(expression: str, tainted: set[str]) -> str | None:
    """Rule 3: the expression reads a secret variable or a secret task's output."""
    expression = MEASURED_RE.sub(" ", STRING_LITERAL_RE.sub(" ", expression))
    for name, attribute in REFERENCE_RE.findall(expression):
        if SECRET_RE.search(name) or name in SECRET_VARIABLES:
            return f"variable: {name}"
        if SECRET_RE.search(attribute):
            return f"variable: {name}.{attribute}"
        if name in tainted and attribute not in SAFE_RESULT_FIELDS:
            return f"variable: {name} (registered by a task that handles secret material)"
    return None


def secret_reason(task: dict[str, Any], tainted: set[str]) -> str | None:
    """Why ``task`` handles secret material, or None."""
    module, args = module_of(task)
    if module in INCLUDES:
        return None
    reason = module_reason(module, args if isinstance(args, dict) else {})
    for expression in printed_expressions(task):
        reason = reason or variable_reason(expression, tainted)
    return reason


def tainted_results(walked: list[tuple[dict[str, Any], bool]]) -> set[str]:
    """Registered results of secret tasks are secret too; two passes let a later task taint an earlier one
    (handlers, loops over includes) without depending on order."""
    tainted: set[str] = set()
    for _pass in range(2):
        for task, _no_log in walked:
            if task.get("register") and secret_reason(task, tainted):
                tainted.add(task["register"])
    return tainted


def audit(path: Path, document: Any) -> list[str]:
    """Problems in one file: secret-handling tasks without no_log."""
    problems = []
    for tasks in task_lists(document):
        walked = list(walk(tasks))
        tainted = tainted_results(walked)
        for task, no_log in walked:
            reason = secret_reason(task, tainted)
            relative = str(path.relative_to(ROOT))
            if reason and not no_log and (relative, task.get("name")) not in EXCEPTIONS:
                problems.append(f"{relative}: task {task.get('name')!r} ({reason}) has no no_log: true")
    return problems


FILES = task_files()


def test_the_walk_finds_the_files_and_tasks_it_should():
    names = {str(p.relative_to(ROOT)) for p in FILES}
    assert {"roles/n8n/tasks/encryption_key.yml", "roles/compose_service/tasks/main.yml",
            "playbooks/site.yml"} <= names
    n8n = yaml.safe_load((ROOT / "roles/n8n/tasks/encryption_key.yml").read_text())
    walked = [task["name"] for tasks in task_lists(n8n) for task, _no_log in walk(tasks)]
    assert "Fail when the wanted key differs from the saved one" in walked  # inside a block


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_secret_tasks_have_no_log(path):
    assert audit(path, yaml.safe_load(path.read_text())) == []


def masks(spec: dict[str, Any]) -> bool:
    """The option is no_log, or (a list of dicts) every suboption that carries text of the secret is."""
    if spec.get("no_log") is True:
        return True
    options = spec.get("options") or {}
    return bool(options) and all(sub.get("no_log") is True for name, sub in options.items()
                                 if name not in ("path", "name", "owner", "group", "mode"))


@pytest.mark.parametrize("module", sorted(MASKED_OPTIONS))
def test_masked_options_are_no_log_in_the_module_argument_spec(module):
    options, spec = MASKED_OPTIONS[module]
    assert options, module
    assert [name for name in sorted(options) if not masks(spec[name])] == []
    assert (ROOT / "plugins" / "modules" / f"{module}.py").exists()


def test_a_masked_option_that_loses_no_log_is_caught():
    assert not masks({"type": "dict"})
    assert not masks({"type": "list", "options": {"path": {}, "content": {"type": "str"}}})
    assert masks({"type": "list", "options": {"path": {}, "content": {"no_log": True}}})


def test_every_exception_is_still_needed():
    """An exception names an existing task that the rules flag and that has no no_log."""
    for (relative, name), reason in EXCEPTIONS.items():
        document = yaml.safe_load((ROOT / relative).read_text())
        found = [(t, no_log, tainted_results(walked)) for tl in task_lists(document) for walked in [list(walk(tl))]
                 for t, no_log in walked if t.get("name") == name]
        assert len(found) == 1, f"stale exception {relative}: {name!r} ({reason})"
        task, no_log, tainted = found[0]
        assert secret_reason(task, tainted) and not no_log, f"exception no longer needed {relative}: {name!r}"


# --------------------------------------------------------------------------------------------------------------
# The rules themselves: each one must be able to fail
# --------------------------------------------------------------------------------------------------------------
SAMPLES = Path("roles/sample/tasks/main.yml")


def audit_sample(text: str) -> list[str]:
    return audit(ROOT / SAMPLES, yaml.safe_load(text))


@pytest.mark.parametrize("task", [
    pytest.param("ansible.builtin.slurp: {src: '{{ x_dir }}/config'}", id="slurp"),
    pytest.param("ansible.builtin.slurp: {src: /etc/shadow}", id="slurp-literal"),
    pytest.param("borgstack.stack.postgresql_tenant: {name: a, password: '{{ item.pw }}'}", id="password-module"),
    pytest.param("ansible.builtin.copy: {dest: /srv/app/secrets.env, content: x}", id="secrets-env"),
    pytest.param("ansible.builtin.template: {dest: /etc/ssl/private/site.key, src: k.j2}", id="key-file"),
    pytest.param("ansible.builtin.command: {argv: [tool, --pw, '{{ app_admin_password }}']}", id="argv"),
    pytest.param("ansible.builtin.copy: {dest: /x, content: '{{ stack_master_secret }}'}", id="master-secret"),
    pytest.param("ansible.builtin.debug: {msg: '{{ s3_access_key }}'}", id="access-key"),
    pytest.param("ansible.builtin.debug: {msg: '{{ item.password }}'}", id="attribute"),
    pytest.param("ansible.builtin.debug: {msg: '{{ app_password | lower | length }}'}", id="filtered-then-measured"),
    pytest.param("ansible.builtin.command: {argv: [cryptsetup, open], stdin: '{{ luks_key }}'}", id="name-ends-in-key"),
    pytest.param("ansible.builtin.copy: {dest: /x, content: '{{ compose_service_env | to_json }}'}", id="env"),
    pytest.param("ansible.builtin.copy: {dest: '/x/{{ item.path }}', content: x}\n  loop: compose_service_secret_files",
                 id="bare-loop"),
    pytest.param("ansible.builtin.debug: {msg: x}\n  environment: {TOKEN: '{{ api_token }}'}", id="environment"),
    pytest.param("borgstack.stack.compose_deploy: {name: x, compose: '{{ app_password }}'}", id="unmasked-option"),
])
def test_a_secret_task_without_no_log_is_reported(task):
    text = f"- name: Sample\n  {task}\n"
    assert len(audit_sample(text)) == 1
    assert audit_sample(text.replace("- name: Sample\n", "- name: Sample\n  no_log: true\n")) == []


def test_a_task_reading_a_registered_secret_is_reported():
    text = """
- name: Read it
  ansible.builtin.slurp: {src: /etc/app/config}
  register: __conf
  no_log: true
- name: Use it
  ansible.builtin.set_fact:
    __value: "{{ __conf.content | b64decode }}"
"""
    assert audit_sample(text) == ["roles/sample/tasks/main.yml: task 'Use it' (variable: __conf (registered by a task "
                                  "that handles secret material)) has no no_log: true"]
    assert audit_sample(text.replace("__conf.content | b64decode", "__conf.rc == 0")) == []


def test_no_log_on_a_block_covers_its_tasks():
    text = """
- name: Outer
  no_log: true
  block:
    - name: Inner
      ansible.builtin.debug: {msg: "{{ app_password }}"}
"""
    assert audit_sample(text) == []
    assert len(audit_sample(text.replace("no_log: true", "no_log: false"))) == 1


@pytest.mark.parametrize("task", [
    pytest.param("ansible.builtin.slurp: {src: /proc/misc}", id="kernel-interface"),
    pytest.param("ansible.builtin.assert: {that: __x_password_ok, fail_msg: set x_password right}",
                 id="conditional-and-plain-text"),
    pytest.param("ansible.builtin.debug: {msg: x}\n  when: app_password | length > 0", id="when"),
    pytest.param("ansible.builtin.copy: {dest: /etc/app/app.conf, content: '{{ app_port }}'}", id="plain-file"),
    pytest.param("ansible.builtin.file: {path: '{{ luks_keyfile | dirname }}', state: directory}", id="keyfile-path"),
    pytest.param("ansible.builtin.debug: {msg: \"{{ 'set app_password' if x else 'ok' }}\"}", id="string-literal"),
    pytest.param("ansible.builtin.debug: {msg: '{{ app_password | length }} characters'}", id="measured"),
    pytest.param("ansible.builtin.include_role: {name: x}\n  vars: {compose_service_env: {A: b}}", id="include"),
    pytest.param("borgstack.stack.compose_deploy: {name: x, env: '{{ compose_service_env }}', "
                 "secret_files: '{{ app_password_files }}'}", id="masked-options"),
])
def test_a_task_without_secrets_is_not_reported(task):
    assert audit_sample(f"- name: Sample\n  {task}\n") == []
