"""The tags --tags/--skip-tags accept (borgstack_known_tags, derived from borgstack_roles) are exactly the tags
playbooks/site.yml uses, plus the ones Ansible itself understands; and every role of a layer carries its own tag."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
SITE = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
STACK = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "stack.yml").read_text())
ANSIBLE_TAGS = {"all", "tagged", "untagged"}


def _tags(node: Any) -> Iterator[str]:
    """Every tag written anywhere in a play, role entry, block or task."""
    if isinstance(node, dict):
        tags = node.get("tags", [])
        yield from [tags] if isinstance(tags, str) else tags
        for value in node.values():
            yield from _tags(value)
    elif isinstance(node, list):
        for item in node:
            yield from _tags(item)


def known_tags() -> set[str]:
    return set(Templar(variables=STACK).template(trust_as_template(STACK["borgstack_known_tags"])))


def test_known_tags_are_the_tags_of_site_yml():
    used = set(_tags(SITE))
    known = known_tags()
    assert used - known == set(), f"tags in playbooks/site.yml that --tags would refuse: {sorted(used - known)}"
    assert known - ANSIBLE_TAGS - used == set(), (
        f"borgstack_known_tags names tags playbooks/site.yml never uses: {sorted(known - ANSIBLE_TAGS - used)}"
    )


def test_every_layer_play_tags_its_roles():
    plays = {tuple(play.get("tags", [])): play for play in SITE}
    for layer, roles in STACK["borgstack_roles"].items():
        play = plays.get((layer,))
        assert play is not None, f"no play of playbooks/site.yml is tagged only {layer!r}"
        entries = {entry["role"].rsplit(".", 1)[-1]: entry.get("tags", []) for entry in play.get("roles", [])}
        assert list(entries) == roles, f"the {layer} play runs {list(entries)}, borgstack_roles.{layer} says {roles}"
        for role, tags in entries.items():
            assert role in tags, f"role {role} in the {layer} play lacks its own tag {role!r}"
