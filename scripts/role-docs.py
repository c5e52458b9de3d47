# SPDX-License-Identifier: GPL-3.0-or-later
"""Generate roles/<role>/README.md from meta/argument_specs.yml and defaults/main.yml.

  python3 scripts/role-docs.py          write the READMEs
  python3 scripts/role-docs.py --check  exit 1 when a README is out of date (the unit tests run this)
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parent.parent / "roles"


def render(role: Path) -> str:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    lines = [
        f"# Papel `borgstack.stack.{role.name}`",
        "",
        f"{specs.get('short_description', '')}.",
        "",
    ]
    for paragraph in specs.get("description", []) or []:
        lines += [paragraph, ""]
    lines += [
        "Variáveis (padrões em `defaults/main.yml`, tipos verificados por `meta/argument_specs.yml` antes de "
        "qualquer mudança) / Variables (defaults in `defaults/main.yml`, types checked before any change):",
        "",
        "| variável / variable | tipo / type | padrão / default | descrição / description |",
        "|---|---|---|---|",
    ]
    for name, option in (specs.get("options") or {}).items():
        kind = option.get("type", "str")
        if option.get("elements"):
            kind += f" of {option['elements']}"
        if option.get("no_log"):
            default = "*(segredo / secret)*"
        else:
            value = defaults.get(name)
            default = "`" + yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().replace(
                "\n...", "").replace("|", "\\|") + "`"
        choices = f" Valores / choices: {', '.join(map(str, option['choices']))}." if option.get("choices") else ""
        required = " **Obrigatória / required.**" if option.get("required") else ""
        lines.append(f"| `{name}` | {kind} | {default} | {option.get('description', '')}{choices}{required} |")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for role in sorted(ROLES.iterdir()):
        if not (role / "meta" / "argument_specs.yml").exists():
            continue
        text = render(role)
        readme = role / "README.md"
        if check:
            if not readme.exists() or readme.read_text() != text:
                stale.append(role.name)
        else:
            readme.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} — run scripts/role-docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
