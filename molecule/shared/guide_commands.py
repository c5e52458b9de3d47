# SPDX-License-Identifier: GPL-3.0-or-later
"""The commands the guides (docs/*.md) mark as safe to run, and the shell script that runs one block on a server.

Convention (docs/adicionar-servico.md, "Comandos dos guias"): a fenced block whose info string is ``bash seguro``
(or ``sh seguro``) holds commands that only read — state, logs, health, SELECTs — and must work as written on a
converged server; molecule/stack/tests/test_guides.py runs every such block on the lab host. Any other block
(``bash``, ``sh``, no info string, ``yaml``…) is never run. Operator values are written as ``<placeholder>``; a marked
block may use only the placeholders the runner knows (PLACEHOLDERS), so that nothing runs half-filled.

No command block goes unchecked in silence: a command block (info string ``bash``, ``sh``, ``powershell``…) that does
not run says why, ``bash não-roda <motivo>`` with a reason of REASONS (it runs on the controller, changes the server,
prints a secret…), and every other block names what it holds (``text`` for output, ``yaml``…).
``unexplained()`` lists the blocks that break the rule; tests/unit/docs/test_guide_commands.py fails on any in
docs/*.md and README.md.

Pure functions, no I/O besides reading the files given: tests/unit/docs/test_guide_commands.py tests them.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

MARK = "seguro"
SHELLS = ("bash", "sh")
# Info strings of blocks that hold commands: each one either runs (MARK, shells only) or says why not (SKIP).
COMMANDS = SHELLS + ("shell", "console", "zsh", "powershell", "ps1", "cmd", "bat")
SKIP = "não-roda"
# Why a command block cannot run on the converged lab host; the block names one or more after SKIP.
REASONS = {
    # The playbooks these blocks run are run against the lab by the molecule scenario itself (converge, idempotence,
    # test_backup: backup.yml, restore.yml, restore-drill.yml), with the lab inventory instead of the operator's.
    "controlador": "runs on the operator's computer (Ansible, git, the checkout, ssh to the server), not on the server",
    "muda-o-servidor": "changes the server (restore, restart, delete, a backup or a setting): not a read-only check",
    "fora-do-lab": "about a service or a setup the lab stack does not run (Evolution API, Chatwoot, n8n workers, "
                   "Duplicati: no image here)",
    "segredo": "prints a secret, which has no place in a test log",
    "domínio-real": "needs a real domain, public DNS or a scan from outside the server",
    "desenvolvimento": "a developer's command in the checkout (scripts/, tests/), run by the test suite itself",
    "após-falha": "reads what only exists after a failure the converged lab has not had (a failed delivery's table, "
                  "an update's rollback dump)",
}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
PLACEHOLDER = re.compile(r"<[a-zà-ú][a-zà-ú0-9-]*>")
# What each placeholder the guides use means; the runner gives a value for each.
PLACEHOLDERS = {
    "<seu-domínio>": "borgstack_domain of the inventory",
    "<serviço>": "a service of the lab stack (its Compose service name)",
    "<contêiner>": "the same service (its container is borgstack-<name>)",
}
# The marker line the runner prints before the failing command's line number (ERR trap).
FAILED = "BORGSTACK-GUIDE-FAILED"


@dataclass(frozen=True)
class Block:
    """One fenced code block: the doc, the line of its first command (1-based), its info string and its lines."""

    doc: str
    line: int
    info: str
    lines: tuple[str, ...]

    @property
    def marked(self) -> bool:
        words = self.info.split()
        return len(words) >= 2 and words[0] in SHELLS and MARK in words[1:]

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def skip_reasons(self) -> tuple[str, ...]:
        """The reasons after SKIP (empty when the block does not carry SKIP)."""
        words = self.info.split()
        return tuple(words[words.index(SKIP) + 1:]) if SKIP in words[1:] else ()

    def start_of(self, offset: int) -> int:
        """The first line of the command that ends on line ``offset`` (continued lines end with a backslash)."""
        while offset > 0 and self.lines[offset - 1].rstrip().endswith("\\"):
            offset -= 1
        return offset

    def command_at(self, offset: int) -> str:
        """The doc's text of the command at ``offset`` (0-based line in the block; bash reports a command continued
        over several lines by its last one), with all its lines."""
        offset = self.start_of(offset)
        out = [self.lines[offset]]
        while out[-1].rstrip().endswith("\\") and offset + len(out) < len(self.lines):
            out.append(self.lines[offset + len(out)])
        return "\n".join(line.strip() for line in out)


def blocks(text: str, doc: str) -> list[Block]:
    """Every fenced block of a Markdown text, in order (marked or not). An unclosed fence is an error: the rest of
    the page would silently be one block."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent, info = match.group("fence"), len(match.group("indent")), match.group("info").strip()
        start = i + 1
        j = start
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"{doc}:{i + 1}: code block never closed")
        body = tuple(line[indent:] if line[:indent].strip() == "" else line for line in lines[start:j])
        found.append(Block(doc, start + 1, info, body))
        i = j + 1
    return found


def marked_blocks(paths: list[Path], root: Path) -> list[Block]:
    """The marked blocks of the given pages, each named by its path relative to ``root``."""
    out: list[Block] = []
    for path in sorted(paths):
        out += [b for b in blocks(path.read_text(encoding="utf-8"), str(path.relative_to(root))) if b.marked]
    return out


def unexplained(found: list[Block]) -> list[str]:
    """What is wrong with the blocks' marks, one line each (empty: every command block runs or says why not)."""
    problems: list[str] = []
    for block in found:
        where, words = f"{block.doc}:{block.line}", block.info.split()
        if not words:
            problems.append(f"{where}: a block with no info string: name what it holds (`bash seguro`, "
                            f"`bash {SKIP} <motivo>`, `text` for output, `yaml`...)")
            continue
        if block.language not in COMMANDS:
            if MARK in words[1:] or SKIP in words[1:]:
                problems.append(f"{where}: `{block.info}`: only command blocks ({', '.join(COMMANDS)}) carry "
                                f"`{MARK}` or `{SKIP}`")
            continue
        runs, skips = MARK in words[1:], SKIP in words[1:]
        if runs and skips:
            problems.append(f"{where}: `{block.info}`: either `{MARK}` or `{SKIP}`, not both")
        elif runs and block.language not in SHELLS:
            problems.append(f"{where}: `{block.info}`: only {', '.join(SHELLS)} blocks run on the lab host")
        elif runs and words[1:] != [MARK]:
            problems.append(f"{where}: `{block.info}`: unknown word(s) after the language")
        elif skips and words.index(SKIP) != 1:
            problems.append(f"{where}: `{block.info}`: `{SKIP}` comes right after the language")
        elif skips and not block.skip_reasons:
            problems.append(f"{where}: `{block.info}`: say why it does not run: one of {', '.join(REASONS)}")
        elif skips and set(block.skip_reasons) - set(REASONS):
            unknown = ", ".join(r for r in block.skip_reasons if r not in REASONS)
            problems.append(f"{where}: `{block.info}`: unknown reason(s) {unknown}; known: {', '.join(REASONS)}")
        elif not runs and not skips:
            problems.append(f"{where}: `{block.info}` neither runs in the lab test (`{block.language} {MARK}`) nor "
                            f"says why not (`{block.language} {SKIP} <motivo>`, motivo one of {', '.join(REASONS)})")
    return problems


FUNCTION = re.compile(r"^[a-z_][a-z0-9_]*\(\) \{.*\}\s*$")


def definitions(block: Block, every: list[Block]) -> list[str]:
    """The one-line shell functions that marked blocks earlier on the same page define (the page says "to talk to
    Redis: redis() {…}" once and uses ``redis`` further down): the operator's shell still has them."""
    return [line for other in every if other.doc == block.doc and other.line < block.line
            for line in other.lines if FUNCTION.match(line)]


def unknown_placeholders(block: Block) -> list[str]:
    return sorted({p for line in block.lines for p in PLACEHOLDER.findall(line.split(" #")[0])
                   if p not in PLACEHOLDERS})


def script(block: Block, values: dict[str, str], prelude: str = "") -> str:
    """A bash script that runs the block's commands as written (placeholders filled in from ``values``) and, on the
    first command that fails, prints ``FAILED <line in the block>`` to stderr and stops. The block's first line is
    the script's line ``len(prelude lines) + 3``: run() maps it back."""
    missing = unknown_placeholders(block) + [p for p in PLACEHOLDERS if p not in values]
    if missing:
        raise ValueError(f"{block.doc}:{block.line}: no value for placeholder(s) {', '.join(sorted(set(missing)))}")
    body = "\n".join(block.lines)
    for name, value in values.items():
        body = body.replace(name, value)
    head = prelude.rstrip("\n").splitlines()
    first = len(head) + 3
    return "\n".join([
        *head,
        "set -eE -o pipefail",
        # In a function the block defined, the line that counts is where the block called it (the outermost call).
        f"trap '__l=$LINENO; if [ ${{#FUNCNAME[@]}} -gt 0 ]; then __l=${{BASH_LINENO[-1]}}; fi; "
        f"echo \"{FAILED} $((__l - {first}))\" >&2' ERR",
        body,
    ]) + "\n"


def failed_line(stderr: str) -> int | None:
    """The block line (0-based) the script reported as failing, if any."""
    found = re.findall(rf"^{FAILED} (-?\d+)$", stderr, re.M)
    return int(found[-1]) if found else None


def describe_failure(block: Block, rc: int, stdout: str, stderr: str) -> str:
    """The test's failure message: doc, line and command (as the doc shows it), and what the shell said."""
    offset = failed_line(stderr)
    if offset is not None and 0 <= offset < len(block.lines):
        start = block.start_of(offset)
        where, command = f"{block.doc}:{block.line + start}", block.command_at(start)
    else:
        where, command = f"{block.doc}:{block.line}", "\n".join(block.lines)
    said = "\n".join(line for line in (stdout[-1500:] + "\n" + stderr[-1500:]).splitlines()
                     if line and not line.startswith(FAILED))
    return f"{where}: `{command}` failed (rc={rc}):\n{said}"


def quote(script_text: str) -> str:
    """The script as one bash -c argument."""
    return "bash -c " + shlex.quote(script_text)
