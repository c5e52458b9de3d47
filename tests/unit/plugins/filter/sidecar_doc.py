# SPDX-License-Identifier: GPL-3.0-or-later
"""What every filter's sidecar documentation (plugins/filter/<name>.yml) must agree on with the filter's signature:
its name, its options in the order of the parameters (``_input`` first, required), ``positional`` naming them, a
required option for each parameter without a default and the default of the others, and an example that calls it."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

import yaml


def check_sidecar_doc(function: Callable, doc_path: Path) -> None:
    name = function.__name__
    doc = yaml.safe_load(doc_path.read_text(encoding="utf-8"))
    assert set(doc) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, sorted(doc)
    documentation = doc["DOCUMENTATION"]
    assert documentation["name"] == name
    params = list(inspect.signature(function).parameters.values())
    options = documentation["options"]
    assert list(options) == ["_input"] + [p.name for p in params[1:]]
    assert documentation["positional"] == ", ".join(options)
    assert options["_input"].get("required") is True
    for param in params[1:]:
        option = options[param.name]
        if param.default is inspect.Parameter.empty:
            assert option.get("required") is True, param.name
        elif param.default is not None:
            assert option.get("default") == param.default, param.name
        else:
            assert "default" not in option, param.name
    assert f"borgstack.stack.{name}" in doc["EXAMPLES"]
