# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring role checks Prometheus' new configuration and rules with promtool before the deploy replaces the
live files: the gate comes before the deploy, runs the role's own promtool command on the candidates at the paths
the container reads them, and fails the play on a refusal. The command is run here for real (promtool of the lab
image borgstack-lab/monitoring, as in tests/unit/plugins/filter/test_monitoring.py) on a good and a bad candidate;
the lab stack's test_monitoring.py proves that a bad value stops the play with the live file untouched."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from ansible_collections.borgstack.stack.plugins.filter.monitoring import alert_rules, prometheus_config

ROOT = Path(__file__).resolve().parents[3]
TASKS = yaml.safe_load((ROOT / "roles/monitoring/tasks/deploy.yml").read_text(encoding="utf-8"))
# The check itself, included by main.yml only when the candidates differ from the live files.
PROMTOOL = yaml.safe_load((ROOT / "roles/monitoring/tasks/promtool.yml").read_text(encoding="utf-8"))
DEFAULTS = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text(encoding="utf-8"))
IMAGE = "borgstack-lab/monitoring:bookworm-1"
WATCH = {"probes": [{"service": "n8n", "container": "borgstack-n8n", "module": "http_2xx",
                     "target": "http://borgstack-n8n:5678/healthz"}], "metrics": [], "sites": []}
SETTINGS = {"scrape_interval": "30s", "evaluation_interval": "30s", "rule_files": ["/etc/prometheus/rules.yml"],
            "alertmanager": "a:9093", "prometheus": "127.0.0.1:9090", "blackbox": "b:9115"}


def _names(tasks):
    return [t.get("name") for t in tasks]


def _gate():
    return next(t for t in TASKS if t.get("name", "").startswith("Check Prometheus' new configuration"))


def _include():
    """The gate's task that includes promtool.yml, and promtool.yml's block."""
    return next(t for t in _gate()["block"] if t.get("ansible.builtin.include_tasks") == "promtool.yml")


def _inner():
    return next(t for t in PROMTOOL if "block" in t)


def test_the_gate_runs_before_the_deploy_and_only_for_changed_files():
    names = _names(TASKS)
    assert names.index(_gate()["name"]) < names.index("Deploy Prometheus, Alertmanager and the exporters")
    # Both live files are compared with the candidates; the check runs when either differs.
    condition = _include()["when"]
    assert "__monitoring_prometheus_yml" in condition and "__monitoring_rules_yml" in condition
    # The deploy writes the very text that was checked.
    deploy = next(t for t in TASKS if t.get("name") == "Deploy Prometheus, Alertmanager and the exporters")
    files = {f["path"]: f["content"] for f in deploy["vars"]["compose_service_files"]}
    assert files["prometheus.yml"] == "{{ __monitoring_prometheus_yml }}"
    assert files["rules.yml"] == "{{ __monitoring_rules_yml }}"


def _promtool(tmp_path, config, rules):
    """The role's promtool task, its argv as written, on candidates in tmp_path."""
    task = next(t for t in _inner()["block"] if t.get("name", "").startswith("Run promtool"))
    argv = [a.replace("{{ __monitoring_scratch.path }}", str(tmp_path))
            .replace("{{ monitoring_service.containers.monitoring.image }}", IMAGE)
            for a in task["ansible.builtin.command"]["argv"]]
    tmp_path.chmod(0o755)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    for f in tmp_path.iterdir():
        f.chmod(0o644)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _refusal_fails_the_play(rc: int) -> bool:
    assert_task = next(t for t in _inner()["block"] if t.get("name", "").startswith("Refuse"))
    that = assert_task["ansible.builtin.assert"]["that"]
    assert that == "__monitoring_promtool.rc == 0", that
    return rc != 0


def test_promtool_passes_the_generated_files_and_refuses_a_bad_one(tmp_path):
    rules = alert_rules(DEFAULTS["monitoring_thresholds"], DEFAULTS["monitoring_durations"])
    good = _promtool(tmp_path, prometheus_config(WATCH, SETTINGS), rules)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "rules found" in good.stdout  # the rule file was checked too
    assert not _refusal_fails_the_play(good.returncode)
    # A scrape interval Prometheus cannot parse (the settings' types let a string through).
    bad = _promtool(tmp_path, prometheus_config(WATCH, {**SETTINGS, "scrape_interval": "10x"}), rules)
    assert bad.returncode != 0 and "10x" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    assert _refusal_fails_the_play(bad.returncode)
    # A broken rule expression is refused through the config's rule_files.
    broken = {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "up ==", "labels": {"severity": "critical"}}]}]}
    bad = _promtool(tmp_path, prometheus_config(WATCH, SETTINGS), broken)
    assert bad.returncode != 0, bad.stdout + bad.stderr
