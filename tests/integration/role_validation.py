"""One play per bad-input case, each running a role's validation entry point and recording whether it failed and
with which message: how the role tests check that `validate` refuses each case naming the variable."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple


def validation_plays(role: str, cases: Mapping[str, Tuple[Any, ...]], results: Path, hosts: str = "borgstack",
                     base_vars: Mapping[str, Any] | None = None, tasks_from: str = "validate") -> List[Dict[str, Any]]:
    """Plays for ``cases`` ({case: (settings, ...)}): each writes results/<case>.json - {"failed": false} or
    {"failed": true, "msg": <the failing task's message>}."""
    plays = []
    for case, (settings, *_rest) in cases.items():
        plays.append({
            "name": f"Case {case}",
            "hosts": hosts,
            "gather_facts": False,
            "vars": {**(base_vars or {}), **settings},
            "tasks": [{
                "name": "Validate",
                "block": [
                    {"name": "Run the role's validation",
                     "ansible.builtin.include_role": {"name": f"borgstack.stack.{role}", "tasks_from": tasks_from}},
                    {"name": "Record success", "ansible.builtin.copy": {
                        "dest": str(results / f"{case}.json"), "mode": "0600", "content": '{"failed": false}'}},
                ],
                "rescue": [
                    {"name": "Record the failure", "ansible.builtin.copy": {
                        "dest": str(results / f"{case}.json"), "mode": "0600",
                        "content": "{{ {'failed': true, 'msg': ansible_failed_result.msg | default('')} | to_json }}"}},
                ],
            }],
        })
    return plays


def outcomes(results: Path) -> Dict[str, Dict[str, Any]]:
    """{case: outcome} read back from the files the plays wrote."""
    return {path.stem: json.loads(path.read_text()) for path in results.glob("*.json")}
