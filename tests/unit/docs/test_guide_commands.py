# SPDX-License-Identifier: GPL-3.0-or-later
"""The selection of the guides' commands that molecule/stack/tests/test_guides.py runs on the lab host
(molecule/shared/guide_commands.py): only ```` ```bash seguro ```` blocks, with their doc lines, placeholders filled
from known values only; a failing command is reported with its page, line and text (checked here by running the
generated script in a local bash)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "molecule" / "shared"))
# pylint: disable=wrong-import-position,import-error
from guide_commands import (PLACEHOLDERS, REASONS, blocks, definitions, describe_failure, marked_blocks, script,
                            unexplained, unknown_placeholders)  # noqa: E402

PAGE = """# Página

```bash
rm -rf /opt/borgstack            # sem a marca: nunca roda
```

1. passo

   ```bash seguro
   echo um
   echo dois \\
     três
   ```

```sh seguro
curl -s https://n8n.<seu-domínio>/healthz
```

````yaml seguro
a: 1
````

```
seguro
```
"""
VALUES = {name: f"valor-{n}" for n, name in enumerate(PLACEHOLDERS)}


def test_only_shell_blocks_with_the_mark_are_selected():
    found = blocks(PAGE, "p.md")
    assert [(b.line, b.info, b.marked) for b in found] == [
        (4, "bash", False), (10, "bash seguro", True), (16, "sh seguro", True), (20, "yaml seguro", False),
        (24, "", False)]
    # The indented block (in a list item) loses its indentation.
    assert found[1].lines == ("echo um", "echo dois \\", "  três")


def test_unclosed_block_is_an_error():
    with pytest.raises(ValueError, match=r"p.md:1: code block never closed"):
        blocks("```bash seguro\necho\n", "p.md")


def test_marked_blocks_of_files(tmp_path):
    (tmp_path / "a.md").write_text(PAGE)
    (tmp_path / "b.md").write_text("nada\n")
    found = marked_blocks([tmp_path / "b.md", tmp_path / "a.md"], tmp_path)
    assert [(b.doc, b.line) for b in found] == [("a.md", 10), ("a.md", 16)]


def test_placeholders_are_filled_and_unknown_ones_refused():
    block = blocks(PAGE, "p.md")[2]
    assert "https://n8n.valor-0/healthz" in script(block, VALUES)
    odd = blocks("```bash seguro\nssh <usuário>@x  # <comentário> não conta\n```\n", "q.md")[0]
    assert unknown_placeholders(odd) == ["<usuário>"]
    with pytest.raises(ValueError, match=r"q.md:2: no value for placeholder\(s\) <usuário>"):
        script(odd, VALUES)
    with pytest.raises(ValueError, match=r"<seu-domínio>"):
        script(block, {})


def run(block, prelude=""):
    text = script(block, VALUES, prelude)
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("prelude", ["", "x=1\ny() { :; }\ncd /"])
def test_a_failing_command_is_named_with_its_doc_line(prelude):
    page = ("t\n```bash seguro\necho ok\nprintf 'a\\nb\\n' \\\n  | grep -q zzz\necho never\n```\n")
    block = blocks(page, "guia.md")[0]
    result = run(block, prelude)
    assert result.returncode != 0 and "never" not in result.stdout
    assert describe_failure(block, result.returncode, result.stdout, result.stderr).startswith(
        "guia.md:4: `printf 'a\\nb\\n' \\\n| grep -q zzz` failed (rc=1):\nok")


def test_a_failure_inside_a_function_is_named_where_the_block_calls_it():
    page = "```bash seguro\nf() { false; }\necho ok\nf\n```\n"
    block = blocks(page, "g.md")[0]
    result = run(block)
    assert describe_failure(block, result.returncode, result.stdout, result.stderr).startswith("g.md:4: `f` failed")


def test_a_block_that_works_passes():
    block = blocks(PAGE, "p.md")[1]
    result = run(block)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "um\ndois três\n"


def test_the_guides_marked_blocks_use_known_placeholders():
    for block in marked_blocks(sorted((ROOT / "docs").glob("*.md")), ROOT):
        assert not unknown_placeholders(block), f"{block.doc}:{block.line}: {unknown_placeholders(block)}"


def test_functions_defined_earlier_on_the_page_are_kept():
    page = "```bash seguro\nr() { echo \"$@\"; }\nr a\n```\n```bash\nu() { :; }\n```\n```bash seguro\nr b\n```\n"
    found = blocks(page, "p.md")
    marked = [b for b in found if b.marked]
    assert definitions(marked[1], marked) == ['r() { echo "$@"; }']
    assert not definitions(marked[0], marked)
    other = blocks("```bash seguro\nr c\n```\n", "q.md")
    assert not definitions(other[0], marked + other)


GUIDES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def test_every_command_block_of_the_guides_runs_or_says_why_not():
    """No block of docs/*.md or README.md is left unchecked in silence: commands run in the lab test (``seguro``)
    or name why they cannot (``não-roda <motivo>``); every other block names what it holds."""
    problems = [p for path in GUIDES for p in unexplained(blocks(path.read_text(encoding="utf-8"),
                                                                 str(path.relative_to(ROOT))))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page, problem", [
    ("```bash\nls\n```\n", "neither runs in the lab test"),
    ("```sh\nls\n```\n", "neither runs in the lab test"),
    ("```powershell\nwsl --install\n```\n", "neither runs in the lab test"),
    ("```\nls\n```\n", "a block with no info string"),
    ("```bash não-roda\nls\n```\n", "say why it does not run"),
    ("```bash não-roda cansado\nls\n```\n", "unknown reason(s) cansado"),
    ("```bash seguro não-roda segredo\nls\n```\n", "not both"),
    ("```powershell seguro\nls\n```\n", "only bash, sh blocks run"),
    ("```bash seguro talvez\nls\n```\n", "unknown word(s)"),
    ("```yaml seguro\na: 1\n```\n", "only command blocks"),
    ("```text não-roda segredo\nx\n```\n", "only command blocks"),
])
def test_a_block_that_neither_runs_nor_says_why_is_refused(page, problem):
    found = unexplained(blocks(page, "p.md"))
    assert len(found) == 1 and found[0].startswith("p.md:2: ") and problem in found[0], found


@pytest.mark.parametrize("page", [
    "```bash seguro\nls\n```\n", "```sh seguro\nls\n```\n", "```bash não-roda controlador\nls\n```\n",
    "```powershell não-roda controlador\nwsl\n```\n", "```bash não-roda muda-o-servidor fora-do-lab\nls\n```\n",
    "```text\nsaída\n```\n", "```yaml\na: 1\n```\n",
])
def test_a_block_that_runs_or_says_why_passes(page):
    assert not unexplained(blocks(page, "p.md"))


def test_the_reasons_are_explained():
    assert all(len(text) > 20 for text in REASONS.values())
    assert blocks("```bash não-roda segredo domínio-real\nx\n```\n", "p.md")[0].skip_reasons == (
        "segredo", "domínio-real")
