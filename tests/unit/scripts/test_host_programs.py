"""Every program the test command runs on this machine is installed by ``scripts/setup-host.sh``.

The README's test command must pass on a new machine: whatever a test or a script looks up or starts here has to be
either part of the base system every Debian/Ubuntu server has (an Essential or "Priority: required" package), a
console script of a package ``requirements.txt`` installs, or a line of the table of programs in
``scripts/setup-host.sh``. The programs are collected from the code itself:

- Python (tests, molecule scenarios, scripts, the lab's helpers): ``shutil.which("x")`` — also through a loop over
  literal names or a helper's parameter — and the first element of the command lists given to ``subprocess``;
- shell (the host-side scripts): the first word of every simple command, what ``command -v`` looks up, and the
  program after ``exec``/``nohup``/``env``/``timeout``/``xargs``.

Commands run inside a lab host or an image (``docker exec …``, testinfra's ``host.run``) are not this machine's and
are not collected. A lookup the collector cannot resolve to a literal name fails the test: name the program.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
from collections import defaultdict
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SETUP = ROOT / "scripts" / "setup-host.sh"
HOST_SHELL = ["scripts/*.sh", "lab/*.sh", ".ci/run"]
HOST_PYTHON = ["tests/**/*.py", "molecule/**/*.py", "scripts/*.py", "lab/*.py", "lab/contract/*.py"]
SUBPROCESS_CALLS = {"run", "check_output", "check_call", "call", "Popen"}
# Words that start another program: the program is the first word after their options.
WRAPPERS = {"exec", "nohup", "env", "timeout", "xargs", "command", "time", "sudo"}


# --- what setup-host.sh installs ------------------------------------------------------------------------------------

def setup_table(text: str | None = None) -> dict[str, str]:
    """The ``program package`` table of scripts/setup-host.sh (between its PROGRAMS=' and closing ' lines)."""
    text = SETUP.read_text() if text is None else text
    block = re.search(r"^PROGRAMS='\n(.*?)^'$", text, re.S | re.M)
    assert block, "scripts/setup-host.sh has no PROGRAMS='…' table (one 'program package' per line)"
    table = {}
    for line in block.group(1).splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            assert len(words) == 2, f"setup-host.sh PROGRAMS: '{line}' is not 'program package'"
            table[words[0]] = words[1]
    return table


@lru_cache(maxsize=None)
def _requirement_closure() -> frozenset[str]:
    """The distributions requirements.txt installs, with everything they require (names normalised)."""
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    todo = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            todo.append(norm(re.match(r"[A-Za-z0-9_.-]+", line).group(0)))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(norm(re.match(r"[A-Za-z0-9_.-]+", req).group(0)) for req in requires)
    return frozenset(seen)


@lru_cache(maxsize=None)
def _console_scripts() -> dict[str, str]:
    return {ep.name: re.sub(r"[-_.]+", "-", ep.dist.name).lower()
            for ep in metadata.entry_points(group="console_scripts") if ep.dist is not None}


@lru_cache(maxsize=None)
def _debian_package(program: str) -> str | None:
    """The Debian package that owns ``program`` on this machine, or None when it is not installed by dpkg."""
    path = shutil.which(program)
    if path is None or shutil.which("dpkg-query") is None:
        return None
    for candidate in dict.fromkeys([path, str(Path(path).resolve())]):
        for variant in dict.fromkeys([candidate, re.sub(r"^/usr(?=/s?bin/)", "", candidate)]):
            out = subprocess.run(["dpkg-query", "-S", variant], capture_output=True, text=True, check=False)
            if out.returncode == 0:
                return out.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def _is_base_system(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Essential} ${Priority}", package],
                         capture_output=True, text=True, check=False)
    return out.returncode == 0 and ("yes" in out.stdout.split() or "required" in out.stdout.split())


def provider(program: str, table: dict[str, str]) -> str | None:
    """Where ``program`` comes from on a new machine, or None when nothing there provides it."""
    if program in table:
        return f"setup-host.sh ({table[program]})"
    dist = _console_scripts().get(program)
    if dist and dist in _requirement_closure() and shutil.which(program):
        return f"requirements.txt ({dist})"
    package = _debian_package(program)
    if package and _is_base_system(package):
        return f"base system ({package})"
    return None


# --- Python: shutil.which and subprocess --------------------------------------------------------------------------

def _literal_first(node: ast.AST, assigned: dict[str, ast.AST]) -> ast.AST | None:
    """The first element of a command given to subprocess (a list literal, or a name bound to one)."""
    if isinstance(node, ast.Name) and node.id in assigned:
        node = assigned[node.id]
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        return node.elts[0]
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_which(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "which" and isinstance(func.value, ast.Name)
            and func.value.id == "shutil")


def _is_subprocess(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr in SUBPROCESS_CALLS and isinstance(func.value, ast.Name)
            and func.value.id == "subprocess")


class _PythonCollector(ast.NodeVisitor):
    """Programs a Python file looks up or starts, and the lookups it cannot resolve to a literal."""

    def __init__(self, tree: ast.Module):
        self.programs: set[str] = set()
        self.unresolved: list[str] = []
        self.tree = tree
        self.loops: dict[str, list[str]] = {}       # loop variable -> the literal names it takes
        self.assigned: dict[str, ast.AST] = {}      # name -> the list literal last bound to it
        self.params: dict[str, tuple[str, int]] = {}  # parameter name -> (function, position)
        self.helpers: dict[str, int] = {}           # function -> position of the parameter given to shutil.which

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = dict(self.params)
        for position, arg in enumerate(node.args.args):
            self.params[arg.arg] = (node.name, position)
        self.generic_visit(node)
        self.params = saved

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.assigned[target.id] = node.value
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name) and node.value is not None:
            self.assigned[node.target.id] = node.value
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        if isinstance(node.target, ast.Name) and isinstance(node.iter, (ast.Tuple, ast.List)):
            names = [e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(names) == len(node.iter.elts):
                self.loops[node.target.id] = names
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if _is_which(node) and node.args:
            self._which(node.args[0])
        elif _is_subprocess(node) and node.args:
            first = _literal_first(node.args[0], self.assigned)
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and "/" not in first.value:
                self.programs.add(first.value)
        self.generic_visit(node)

    def _which(self, arg: ast.AST) -> None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            self.programs.add(arg.value)
        elif isinstance(arg, ast.Name) and arg.id in self.loops:
            self.programs.update(self.loops[arg.id])
        elif isinstance(arg, ast.Name) and arg.id in self.params:
            function, position = self.params[arg.id]
            self.helpers[function] = position
        else:
            self.unresolved.append(f"shutil.which({ast.unparse(arg)}) at line {arg.lineno}")

    def resolve_helpers(self) -> None:
        """Literal arguments given to a helper that passes its parameter to shutil.which (``_require("x")``)."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and _call_name(node) in self.helpers:
                position = self.helpers[_call_name(node)]
                if len(node.args) > position:
                    arg = node.args[position]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        self.programs.add(arg.value)
                    else:
                        self.unresolved.append(f"{_call_name(node)}({ast.unparse(arg)}) at line {node.lineno}")


def python_programs(source: str) -> tuple[set[str], list[str]]:
    tree = ast.parse(source)
    collector = _PythonCollector(tree)
    collector.visit(tree)
    collector.resolve_helpers()
    return collector.programs, collector.unresolved


# --- shell: a small tokenizer that knows quotes, substitutions, heredocs and case ---------------------------------

_HEREDOC = re.compile(r"(?<![<])<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_OPERATORS = ("&&", "||", ";;", "|&", ";", "&", "|", "(", ")", "\n")
_REDIRECTION = re.compile(r"^[0-9]*(>>|>&|<&|<<<|&>|>|<)")


def _strip_heredocs(text: str) -> str:
    """Drop heredoc bodies (data given to a program, not commands of this script)."""
    out, ending = [], None
    for line in text.splitlines():
        if ending is not None:
            if line.strip() == ending:
                ending = None
            continue
        out.append(line)
        found = _HEREDOC.search(line.split(" #", 1)[0])
        if found and not line.lstrip().startswith("#"):
            ending = found.group(2)
    return "\n".join(out) + "\n"


def _matching(text: str, start: int, opening: str, closing: str) -> int:
    """Index just past the ``closing`` that balances the ``opening`` at ``start`` (quotes respected)."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "'":
            i = text.index("'", i + 1) + 1
            continue
        if char == '"':
            i = _end_of_double_quotes(text, i + 1)
            continue
        if text.startswith(opening, i):
            depth += 1
            i += len(opening)
            continue
        if text.startswith(closing, i):
            depth -= 1
            i += len(closing)
            if depth == 0:
                return i
            continue
        i += 1
    raise ValueError(f"unbalanced {opening} at {start}")


def _end_of_double_quotes(text: str, i: int) -> int:
    while text[i] != '"':
        if text[i] == "\\":
            i += 2
        elif text.startswith("$(", i):
            i = _matching(text, i + 1, "(", ")")
        else:
            i += 1
    return i + 1


def _tokens(text: str, nested: list[str]) -> list[str]:
    """Words and operators of ``text``; the bodies of $(…) and `…` go to ``nested`` to be read as scripts."""
    tokens, word, i = [], "", 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            word += text[i:i + 2] if text[i + 1] != "\n" else ""
            i += 2
        elif char == "#" and not word:
            i = text.find("\n", i)
        elif char == "'":
            end = text.index("'", i + 1) + 1
            word, i = word + text[i:end], end
        elif char == '"':
            end = _end_of_double_quotes(text, i + 1)
            _collect_substitutions(text[i + 1:end - 1], nested)
            word, i = word + text[i:end], end
        elif text.startswith("$((", i):
            end = _matching(text, i + 1, "(", ")")
            word, i = word + text[i:end], end
        elif text.startswith("${", i):
            end = _matching(text, i + 1, "{", "}")
            word, i = word + text[i:end], end
        elif char == "(" and word.endswith("="):
            end = _matching(text, i, "(", ")")
            word, i = word + text[i:end], end
        elif char in "<>":
            redirection = re.match(r"[<>]+&?[0-9-]*|[<>]+\(", text[i:]).group(0)
            if redirection.endswith("("):
                end = _matching(text, i + len(redirection) - 1, "(", ")")
                nested.append(text[i + len(redirection):end - 1])
                redirection = text[i:end]
            word, i = word + redirection, i + len(redirection)
        elif text.startswith("$(", i):
            end = _matching(text, i + 1, "(", ")")
            nested.append(text[i + 2:end - 1])
            word, i = word + text[i:end], end
        elif char == "`":
            end = text.index("`", i + 1) + 1
            nested.append(text[i + 1:end - 1])
            word, i = word + text[i:end], end
        elif text.startswith("((", i) and not word:
            end = _matching(text, i, "((", "))")
            tokens.append("((arith))")
            i = end
        elif char in " \t":
            if word:
                tokens.append(word)
            word, i = "", i + 1
        else:
            operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if operator:
                if word:
                    tokens.append(word)
                tokens.append(operator)
                word, i = "", i + len(operator)
            else:
                word, i = word + char, i + 1
    if word:
        tokens.append(word)
    return tokens


def _collect_substitutions(inside_quotes: str, nested: list[str]) -> None:
    i = 0
    while i < len(inside_quotes):
        if inside_quotes.startswith("$((", i):
            i = _matching(inside_quotes, i + 1, "(", ")")
        elif inside_quotes.startswith("$(", i):
            end = _matching(inside_quotes, i + 1, "(", ")")
            nested.append(inside_quotes[i + 2:end - 1])
            i = end
        elif inside_quotes[i] == "\\":
            i += 2
        else:
            i += 1


class _ShellReader:
    """First words of the simple commands of a script, with ``for``/``case``/``[[``/functions understood."""

    def __init__(self) -> None:
        self.commands: set[str] = set()
        self.functions: set[str] = set()

    def read(self, text: str) -> None:
        nested: list[str] = []
        tokens = _tokens(_strip_heredocs(text), nested)
        self._walk(tokens)
        for body in nested:
            self.read(body)

    def _walk(self, tokens: list[str]) -> None:
        at_command, skip_until, cases, i = True, None, [], 0
        while i < len(tokens):
            token = tokens[i]
            if skip_until:
                if token in skip_until:
                    skip_until = None
                    at_command = True
                i += 1
                continue
            if cases and cases[-1] == "pattern":
                if token == "esac":
                    cases.pop()
                    at_command = False
                elif token == ")":
                    cases[-1] = "body"
                    at_command = True
                i += 1
                continue
            if token == ";;" and cases:
                cases[-1] = "pattern"
                i += 1
                continue
            if token in _OPERATORS:
                at_command = token != ")"
                i += 1
                continue
            if not at_command:
                if token == "esac" and cases:
                    cases.pop()
                i += 1
                continue
            i = self._command_word(tokens, i, cases)
            if i < 0:
                return
            skip_until = {"for": {"do"}, "select": {"do"}, "[[": {"]]"}}.get(tokens[i - 1])
            at_command = tokens[i - 1] in {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}",
                                           "fi", "done", "time", "((arith))", ")"} or _ASSIGNMENT.match(tokens[i - 1])
            if tokens[i - 1] in {"}", "fi", "done", "((arith))"}:
                at_command = False

    def _command_word(self, tokens: list[str], i: int, cases: list[str]) -> int:
        """Record the program of the command at ``tokens[i]``; return the index after its first word."""
        token = tokens[i]
        if token == "case":
            cases.append("pattern")
            return tokens.index("in", i) + 1 if "in" in tokens[i:] else -1
        if token == "function" and i + 1 < len(tokens):
            self.functions.add(tokens[i + 1])
            return i + 2
        if tokens[i + 1:i + 3] == ["(", ")"]:
            self.functions.add(token)
            return i + 3
        if _REDIRECTION.match(token):
            return i + (1 if re.search(r"[^<>&0-9]", token) else 2)
        self._record(token)
        if token in WRAPPERS:
            self._record_wrapped(tokens, i + 1, token)
        return i + 1

    def _record_wrapped(self, tokens: list[str], i: int, wrapper: str) -> None:
        while i < len(tokens) and tokens[i] not in _OPERATORS:
            word = tokens[i]
            if word.startswith("-"):
                if wrapper == "command" and word == "-v" and i + 1 < len(tokens):
                    self._record(tokens[i + 1])
                    return
                i += 2 if wrapper == "env" and word == "-C" else 1
            elif _ASSIGNMENT.match(word) or (wrapper == "timeout" and re.fullmatch(r"[0-9.]+[smhd]?", word)):
                i += 1
            else:
                self._record(word)
                return

    def _record(self, word: str) -> None:
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", word) and not _ASSIGNMENT.match(word):
            self.commands.add(word)


@lru_cache(maxsize=None)
def _shell_words(kind: str) -> frozenset[str]:
    out = subprocess.run(["bash", "-c", f"compgen -{kind}"], capture_output=True, text=True, check=True)
    return frozenset(out.stdout.split())


def _readers(texts: list[str]) -> list[_ShellReader]:
    readers = []
    for text in texts:
        reader = _ShellReader()
        reader.read(text)
        readers.append(reader)
    return readers


def shell_programs(texts: list[str]) -> list[set[str]]:
    """Per script, the external programs it starts or looks up: builtins, keywords and the functions of all the
    scripts (lib.sh is sourced by the others) left out."""
    readers = _readers(texts)
    functions = set().union(*(r.functions for r in readers))
    return [r.commands - functions - _shell_words("b") - _shell_words("k") for r in readers]


# --- the collection -------------------------------------------------------------------------------------------------

def _files(patterns: list[str]) -> list[Path]:
    found = {path for pattern in patterns for path in ROOT.glob(pattern)} - {Path(__file__).resolve()}
    return sorted(p for p in found if p.is_file() and "cache" not in p.relative_to(ROOT).parts)


@lru_cache(maxsize=None)
def collect() -> tuple[dict[str, set[str]], list[str]]:
    """Program -> the files that use it; and the lookups that name no literal program."""
    used: dict[str, set[str]] = defaultdict(set)
    unresolved = []
    for path in _files(HOST_PYTHON):
        programs, unknown = python_programs(path.read_text())
        rel = str(path.relative_to(ROOT))
        for program in programs:
            used[program].add(rel)
        unresolved.extend(f"{rel}: {item}" for item in unknown)
    scripts = _files(HOST_SHELL)
    for path, programs in zip(scripts, shell_programs([p.read_text() for p in scripts])):
        for program in programs:
            used[program].add(str(path.relative_to(ROOT)))
    return used, unresolved


# --- the tests ------------------------------------------------------------------------------------------------------

def test_every_program_the_tests_and_scripts_run_is_installed_on_a_new_machine():
    table = setup_table()
    used, unresolved = collect()
    assert not unresolved, f"lookups that name no program (use a literal name): {unresolved}"
    missing = {program: sorted(files) for program, files in used.items() if provider(program, table) is None}
    assert not missing, (
        "programs a test or script runs that nothing installs on a new machine: add each to the PROGRAMS table of "
        "scripts/setup-host.sh ('program package'): "
        + "; ".join(f"{program} (used by {', '.join(files)})" for program, files in sorted(missing.items())))


def test_the_collection_finds_what_is_known_to_be_run():
    """The collector is not vacuous: programs these files are known to start are among what it finds."""
    used = collect()[0]
    expected = {"ruby": "test_chatwoot_role.py", "docker": "lab.sh", "debootstrap": "build-images.sh",
                "nsenter": "test_compose_deploy_drain_live.py", "molecule": "test.sh", "ansible-lint": "test.sh",
                "npm": "build-images.sh", "dockerd": "setup-host.sh", "curl": "test_backup.py"}
    for program, where in expected.items():
        assert any(f.endswith(where) for f in used.get(program, ())), (program, sorted(used.get(program, ())))


@pytest.mark.parametrize("program", sorted(setup_table()))
def test_each_program_of_the_table_is_checked_before_it_is_installed(program):
    """setup-host.sh looks each program up (command -v) and installs only the missing ones."""
    text = SETUP.read_text()
    assert 'command -v "$program"' in text and 'need_pkgs+=("$package")' in text


def test_a_program_dropped_from_setup_host_is_named():
    """What the unit step does when a line leaves the table: it fails, naming the program and who uses it."""
    text = SETUP.read_text()
    dropped = re.sub(r"^ruby\s+ruby\n", "", text, flags=re.M)
    assert dropped != text, "the ruby line is gone from the PROGRAMS table"
    table = setup_table(dropped)
    used = collect()[0]
    if shutil.which("ruby") is not None:
        package = _debian_package("ruby")
        assert package is None or not _is_base_system(package)
    assert provider("ruby", table) is None and "ruby" in used


@pytest.mark.parametrize("source, expected", [
    ('import shutil\nshutil.which("ruby")\n', {"ruby"}),
    ('import shutil\nfor t in ("nsenter", "iptables"):\n    shutil.which(t)\n', {"nsenter", "iptables"}),
    ('import shutil\ndef need(b):\n    shutil.which(b)\nneed("mongosh")\n', {"mongosh"}),
    ('import subprocess\nsubprocess.run(["docker", "ps"])\n', {"docker"}),
    ('import subprocess\ncmd = ["curl", "-s"]\nsubprocess.run(cmd)\n', {"curl"}),
    ('import subprocess\nsubprocess.run([sys.executable, "-m", "pip"])\n', set()),
])
def test_python_lookups_and_commands_are_collected(source, expected):
    assert python_programs(source) == (expected, [])


def test_an_unresolvable_python_lookup_is_reported():
    assert python_programs('import shutil\nshutil.which(name())\n')[1] == ["shutil.which(name()) at line 2"]


@pytest.mark.parametrize("script, expected", [
    ("set -e\ncurl -s x | jq .a && sha256sum f\n", {"curl", "jq", "sha256sum"}),
    ('x=$(git rev-parse HEAD)\necho "$(awk 1 f)"\n', {"git", "awk"}),
    ("command -v ruby >/dev/null || need+=(ruby)\n", {"ruby"}),
    ("nohup dockerd >log 2>&1 &\nexec python3 -m pytest\n", {"nohup", "dockerd", "python3"}),
    ("f() {\n  wget -q x\n}\nf\n", {"wget"}),
    ('case "$1" in\n  a|b) tar -x ;;\n  *) gzip -d ;;\nesac\n', {"tar", "gzip"}),
    ("for x in a b; do\n  cp $x y\ndone\n", {"cp"}),
    ("cat <<'EOF'\nnot-a-command here\nEOF\nsed -n 1p f\n", {"cat", "sed"}),
    ("if [[ -f x ]]; then rm x; fi\n((n++))\n", {"rm"}),
    ("# rsync in a comment\nprintf '%s' 'apt-get in quotes'\n", set()),
    ("FOO=1 BAR=2 make all\nenv -C dir npm install\n", {"make", "env", "npm"}),
])
def test_shell_commands_are_collected(script, expected):
    assert shell_programs([script]) == [expected]
