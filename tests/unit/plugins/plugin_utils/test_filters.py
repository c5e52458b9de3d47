# SPDX-License-Identifier: GPL-3.0-or-later
"""NamedFilters, the FilterModule base of every filter file: each listed function is a filter under its own name."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

FILTER_FILES = sorted(path.stem for path in (Path(__file__).parents[4] / "plugins" / "filter").glob("*.py"))


def shout(text):
    return text.upper()


def whisper(text):
    return text.lower()


def test_each_listed_function_is_a_filter_of_its_own_name():
    class FilterModule(NamedFilters):
        FILTERS = (shout, whisper)

    assert FilterModule().filters() == {"shout": shout, "whisper": whisper}


@pytest.mark.parametrize("name", FILTER_FILES)
def test_every_filter_file_offers_its_functions_under_their_names(name):
    module = importlib.import_module(f"ansible_collections.borgstack.stack.plugins.filter.{name}")
    filters = module.FilterModule().filters()
    assert filters, f"plugins/filter/{name}.py offers no filter (a one-filter FILTERS needs a trailing comma)"
    assert all(callable(function) and function.__name__ == key for key, function in filters.items())
    assert all(getattr(module, key) is function for key, function in filters.items())
