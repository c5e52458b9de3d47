# SPDX-License-Identifier: GPL-3.0-or-later
"""The guides' commands work on a converged server: every ```` ```bash seguro ```` block of docs/*.md runs on the lab
host, as the operator would run it there (root, in /opt/borgstack), and the test fails naming the page, the line and
the command that failed.

The selection is explicit (molecule/shared/guide_commands.py; convention in docs/adicionar-servico.md): only blocks
marked ``seguro`` run — read-only diagnostics (state, logs, health, SELECTs); blocks without the mark (installation
steps, playbook runs, restores, anything that changes the server or runs on the controller) never run. Placeholders
take the lab inventory's values (``<seu-domínio>`` = its borgstack_domain; ``<serviço>``/``<contêiner>`` = n8n).
Where a guide runs ``sudo``, the test is root already (``sudo -i`` is the shell the block runs in); ``curl`` to the
stack's public names resolves them to the host's public address and trusts the lab's internal CA (a real server has
DNS and a public certificate for the same command).

Every other command block of the guides says why it does not run here (``bash não-roda <motivo>``: on the
controller, changes the server, a service the lab cannot run - Evolution API, Chatwoot, n8n workers, Duplicati -,
prints a secret such as n8n's encryption key, needs a real domain; guide_commands.REASONS), and
tests/unit/docs/test_guide_commands.py fails on a command block that neither runs nor says why: none is left
unchecked in silence. Not run here for that reason: the playbook runs the guides show from the controller
(``--check`` runs and the restore drill included; molecule's converge/idempotence steps run those playbooks).

One test per marked block (a few seconds each; about 20 s in all), plus a control that runs a marked block which
fails and checks that the failure names its line and command.
"""
from __future__ import annotations

import sys

import pytest
import yaml
from conftest import PROJECT, ROOT_CERT, public_ip

sys.path.insert(0, str(PROJECT / "molecule" / "shared"))
# pylint: disable=wrong-import-position,import-error
from guide_commands import Block, definitions, describe_failure, marked_blocks, quote, script  # noqa: E402

DOCS = sorted((PROJECT / "docs").glob("*.md"))
BLOCKS = marked_blocks(DOCS, PROJECT)
LAB_VARS = yaml.safe_load((PROJECT / "inventories" / "lab" / "group_vars" / "borgstack" / "main.yml").read_text())
DOMAIN = LAB_VARS["borgstack_domain"]
VALUES = {"<seu-domínio>": DOMAIN, "<serviço>": "n8n", "<contêiner>": "n8n"}


def _prelude(host, block: Block | None = None) -> str:
    return "\n".join([
        # Functions the page defined in an earlier block (the operator's shell still has them).
        *(definitions(block, BLOCKS) if block else []),
        # The test is root: sudo runs the command; `sudo -i` (the guide's "become root") is this shell.
        'sudo() { if [ "${1:-}" = -i ]; then return 0; fi; "$@"; }',
        # The stack's names as DNS would give them, and the lab's CA (a real server's certificate is public).
        f'curl() {{ command curl --cacert {ROOT_CERT} --resolve "*:443:{public_ip(host)}" "$@"; }}',
        "cd /opt/borgstack",
    ])


def _run(host, block: Block):
    return host.run(f"timeout 60 {quote(script(block, VALUES, _prelude(host, block)))}")


def test_the_guides_mark_commands_to_run():
    """The mark is in use (a typo in the convention would silently run nothing)."""
    assert len(BLOCKS) >= 5, [f"{b.doc}:{b.line}" for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.doc}:{b.line}" for b in BLOCKS])
def test_guide_block_runs(host, block):
    result = _run(host, block)
    assert result.rc == 0, describe_failure(block, result.rc, result.stdout, result.stderr)


def test_a_failing_marked_block_fails_naming_its_line(host):
    """Control: the runner reports a failing command, with its line, also after commands that worked and inside a
    pipeline (pipefail)."""
    text = "x\n```bash seguro\ndocker compose ps >/dev/null\ndocker exec borgstack-n8n true\n" \
           "docker compose logs --tail 1 n8n | grep -q 'a line no log has'\n```\n"
    from guide_commands import blocks  # noqa: E402  pylint: disable=import-outside-toplevel
    block = blocks(text, "control.md")[0]
    assert block.marked
    result = _run(host, block)
    assert result.rc != 0, result.stdout
    message = describe_failure(block, result.rc, result.stdout, result.stderr)
    assert message.startswith("control.md:5: `docker compose logs --tail 1 n8n | grep -q"), message
