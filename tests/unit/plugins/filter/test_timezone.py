"""Table-driven tests of the timezone_error filter."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import timezone
from ansible_collections.borgstack.stack.plugins.filter.timezone import timezone_error


@pytest.mark.parametrize("zone", ["America/Sao_Paulo", "America/Fortaleza", "UTC", "Etc/GMT+3", "Europe/Lisbon",
                                  "America/Argentina/Buenos_Aires"])
def test_real_zones_pass(zone):
    assert timezone_error(zone, "n8n_timezone") == ""


@pytest.mark.parametrize("value, suggestion", [
    ("America/Sao_Paul", "America/Sao_Paulo"),       # the shape of a zone, no zone behind it
    ("america/sao_paulo", "America/Sao_Paulo"),      # zone names are case-sensitive
    ("America/SaoPaulo", "America/Sao_Paulo"),
    ("America", None),                               # a region, not a zone
    ("Brasil/Sao_Paulo", None),
    ("BRT", None),                                   # abbreviations are not zones
    ("-03:00", None),
    ("../../etc/passwd", None),
    ("", None),
    (None, None),
    (3, None),
    (["UTC"], None),
])
def test_unknown_zones_name_the_variable_and_the_fix(value, suggestion):
    message = timezone_error(value, "n8n_timezone")
    assert message.startswith("n8n_timezone: ")
    assert "America/Sao_Paulo or UTC" in message and "timedatectl list-timezones" in message
    if suggestion:
        assert f"did you mean {suggestion}" in message


def test_the_variable_name_is_required():
    with pytest.raises(AnsibleFilterError, match="variable name"):
        timezone_error("UTC", "")


def test_no_zone_database_on_the_controller_is_an_error(monkeypatch):
    monkeypatch.setattr(timezone, "_zones", frozenset)
    with pytest.raises(AnsibleFilterError, match="install the tzdata package"):
        timezone_error("UTC", "n8n_timezone")
