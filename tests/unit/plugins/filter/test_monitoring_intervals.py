# SPDX-License-Identifier: GPL-3.0-or-later
"""monitoring_interval_errors: the validation play's check of monitoring_scrape_interval and
monitoring_evaluation_interval (one-unit Prometheus durations, 5s-5m, evaluation not shorter than scrape)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.borgstack.stack.plugins.filter import monitoring_intervals
from ansible_collections.borgstack.stack.plugins.filter.monitoring_intervals import monitoring_interval_errors

from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text(encoding="utf-8"))
LAB = yaml.safe_load((ROOT / "molecule/stack/inventory/hosts.yml").read_text(encoding="utf-8"))


def _lab_vars():
    found = {}

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("monitoring_scrape_interval", "monitoring_evaluation_interval"):
                    found[key] = value
                walk(value)
    walk(LAB)
    return found


@pytest.mark.parametrize("scrape, evaluation", [
    (DEFAULTS["monitoring_scrape_interval"], DEFAULTS["monitoring_evaluation_interval"]),
    (_lab_vars()["monitoring_scrape_interval"], _lab_vars()["monitoring_evaluation_interval"]),
    ("5s", "5s"), ("5000ms", "5m"), ("90s", "2m"), ("1m", "60s"), ("300s", "5m"),
])
def test_good_intervals_pass(scrape, evaluation):
    assert monitoring_interval_errors(scrape, evaluation) == []


@pytest.mark.parametrize("scrape, evaluation, variable, words", [
    ("10x", "30s", "monitoring_scrape_interval", "found '10x'"),
    ("30s", "1m30s", "monitoring_evaluation_interval", "one unit"),     # Prometheus takes it; the report does not
    ("30", "30s", "monitoring_scrape_interval", "one unit"),
    (30, "30s", "monitoring_scrape_interval", "found 30"),
    (None, "30s", "monitoring_scrape_interval", "found None"),
    ("0s", "30s", "monitoring_scrape_interval", "one unit"),
    ("30s", "", "monitoring_evaluation_interval", "found ''"),
    ("4s", "30s", "monitoring_scrape_interval", "from 5s to 5m"),
    ("4999ms", "30s", "monitoring_scrape_interval", "from 5s to 5m"),
    ("30s", "301s", "monitoring_evaluation_interval", "from 5s to 5m"),
    ("1h", "5m", "monitoring_scrape_interval", "from 5s to 5m"),
    ("1m", "30s", "monitoring_evaluation_interval", "set it to 1m or more"),
    ("60001ms", "1m", "monitoring_evaluation_interval", "shorter than monitoring_scrape_interval"),
])
def test_bad_intervals_name_the_variable_and_the_fix(scrape, evaluation, variable, words):
    errors = monitoring_interval_errors(scrape, evaluation)
    assert len(errors) == 1, errors
    assert errors[0].startswith(variable) and words in errors[0], errors


def test_both_bad_are_both_named():
    errors = monitoring_interval_errors("10x", "1d")
    assert [e.split(" ")[0] for e in errors] == ["monitoring_scrape_interval", "monitoring_evaluation_interval"]


def test_sidecar_doc():
    check_sidecar_doc(monitoring_interval_errors, Path(monitoring_intervals.__file__).parent /
                      "monitoring_interval_errors.yml")
