# SPDX-License-Identifier: GPL-3.0-or-later
"""One definition of "messages handled": the dashboard's 24 h figures and the weekly report's 7-day figures read
the same exporter query (roles/monitoring/files/queries.yaml: borgstack_cs_messages), the period label being the
only difference. Fails if either side gets a definition of its own again (another metric, another selector, a
second query counting the customer-service workflows' executions)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from ansible_collections.borgstack.stack.plugins.filter.dashboard import dashboard_panels
from ansible_collections.borgstack.stack.plugins.filter.monitoring import monitoring_targets
from ansible_collections.borgstack.stack.plugins.filter.registry import service_endpoints, service_registry

ROOT = Path(__file__).resolve().parents[3]
FILES = ROOT / "roles" / "monitoring" / "files"
QUERIES = yaml.safe_load((FILES / "queries.yaml").read_text(encoding="utf-8"))
_SPEC = importlib.util.spec_from_file_location("borgstack_weekly_report", FILES / "borgstack-weekly-report.py")
report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report)
WORKFLOWS = ("BorgStackCsEvo01", "BorgStackCsCwt01")
# The dashboard's item label -> the report's figure of the same direction.
PAIRS = {"Mensagens recebidas (24 h)": "received", "Respostas enviadas (24 h)": "replied"}


def _dashboard_items():
    defaults = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text(encoding="utf-8"))[
        "borgstack_service_defaults"]
    reg = service_registry(defaults, {})
    watch = monitoring_targets(reg, service_endpoints(reg, "borgstack", "borgstack_internal"), "example.com.br")
    return {item["title"]: item["query"] for section in dashboard_panels(watch, {"whatsapp": False})
            for card in section["cards"] for item in card["items"]}


def test_one_exporter_query_counts_the_customer_service_executions():
    counting = sorted(name for name, spec in QUERIES.items() if any(w in spec["query"] for w in WORKFLOWS))
    assert counting == ["borgstack_cs_messages"]
    spec = QUERIES["borgstack_cs_messages"]
    # The period is a row of the query (its label), the same SQL for both.
    assert re.findall(r"\('(\w+)', '([\w ]+)'\)", spec["query"].split("AS p (period, span)")[0]) == [
        ("24h", "24 hours"), ("7d", "7 days")]
    assert all(spec["query"].count(w) == 1 for w in WORKFLOWS)
    usage = {name: column["usage"] for metric in spec["metrics"] for name, column in metric.items()}
    assert usage == {"period": "LABEL", "direction": "LABEL", "handled": "GAUGE"}


def test_the_dashboard_and_the_report_differ_only_in_the_period():
    items = _dashboard_items()
    for title, figure in PAIRS.items():
        dashboard = items[title]
        assert dashboard.startswith("borgstack_cs_messages_handled{") and 'period="24h"' in dashboard, dashboard
        assert report.QUERIES[figure] == dashboard.replace('period="24h"', 'period="7d"'), (title, figure)
    assert items["Mensagens recebidas (24 h)"] != items["Respostas enviadas (24 h)"]
