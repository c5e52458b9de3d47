# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alertmanager's configuration from the inventory's alerting settings (monitoring_alerting).

Minimal version of the monitoring branch: e-mail only, one receiver ``owner``. The alerting branch replaces it with
the full one (Telegram, WhatsApp through a webhook, validation); the monitoring role calls
``monitoring_alerting | alertmanager_config(monitoring_smtp_password) | to_nice_yaml``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.registry import _mapping


def alertmanager_config(settings: Any, smtp_password: Optional[str] = None) -> Dict[str, Any]:
    """alertmanager.yml as a dict: one route to the receiver ``owner`` (grouped by alert and service, with the
    settings' group_wait, group_interval and repeat_interval), which e-mails ``email.to`` (resolved alerts too)
    when it is not empty."""
    settings = _mapping("alertmanager_config", settings, "monitoring_alerting")
    email = _mapping("alertmanager_config", settings.get("email"), "monitoring_alerting.email")
    recipients = email.get("to") or []
    if not isinstance(recipients, list):
        raise AnsibleFilterError("alertmanager_config: monitoring_alerting.email.to must be a list of addresses")
    config: Dict[str, Any] = {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "owner",
            "group_by": ["alertname", "service"],
            "group_wait": str(settings.get("group_wait", "30s")),
            "group_interval": str(settings.get("group_interval", "5m")),
            "repeat_interval": str(settings.get("repeat_interval", "4h")),
        },
        "receivers": [{"name": "owner"}],
    }
    if recipients:
        config["global"].update({
            "smtp_from": str(email.get("from", "")),
            "smtp_smarthost": str(email.get("smarthost", "")),
            "smtp_require_tls": bool(email.get("require_tls", True)),
        })
        if email.get("username"):
            config["global"]["smtp_auth_username"] = str(email["username"])
            config["global"]["smtp_auth_password"] = str(smtp_password or "")
        config["receivers"][0]["email_configs"] = [{"to": ", ".join(map(str, recipients)), "send_resolved": True}]
    return config


class FilterModule:
    """Alerting filters."""

    def filters(self) -> Dict[str, Any]:
        return {"alertmanager_config": alertmanager_config}
