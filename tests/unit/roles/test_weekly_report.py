# SPDX-License-Identifier: GPL-3.0-or-later
"""The weekly report's arithmetic and text (roles/monitoring/files/borgstack-weekly-report.py): alert episodes from
the raw ALERTS samples, the disk trend's first and last points, the pt-BR rendering in the owner's time zone, and the
Prometheus calls it makes (a fake API answering the queries the script sends). The molecule stack's
test_alert_channels compares a real report with the real Prometheus."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "monitoring" / "files" / "borgstack-weekly-report.py"
_SPEC = importlib.util.spec_from_file_location("borgstack_weekly_report", SCRIPT)
report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report)

SP = ZoneInfo("America/Sao_Paulo")


def _series(name, service, stamps):
    return {"metric": {"alertname": name, "service": service, "severity": "critical"},
            "values": [[t, "1"] for t in stamps]}


@pytest.mark.parametrize("stamps, times, seconds", [
    ([100], 1, 10),                                  # one evaluation
    ([100, 110, 120], 1, 30),                        # consecutive evaluations: one episode
    ([100, 110, 200, 210, 220], 2, 50),              # a gap longer than 1.5 intervals: a second episode
    ([100, 115], 1, 20),                             # 1.5 intervals exactly: still the same episode
    ([100, 116], 2, 20),
    ([120, 100, 110], 1, 30),                        # order does not matter
])
def test_alert_episodes(stamps, times, seconds):
    [entry] = report.alert_episodes([_series("ServicoFora", "n8n", stamps)], 10)
    assert (entry["times"], entry["seconds"]) == (times, seconds)


def test_alert_episodes_group_by_name_and_service_longest_first():
    found = report.alert_episodes([_series("ServicoFora", "n8n", [0, 10]), _series("ServicoFora", "n8n", [0]),
                                   _series("ServicoFora", "redis", [0, 10, 20, 30]),
                                   _series("DiscoCheio", "host", [0])], 10)
    assert [(e["alertname"], e["service"], e["times"], e["seconds"]) for e in found] == [
        ("ServicoFora", "redis", 1, 40), ("ServicoFora", "n8n", 2, 30), ("DiscoCheio", "host", 1, 10)]


def test_seconds():
    assert [report.seconds(v) for v in ("30s", "1m", "2h", "500ms")] == [30, 60, 7200, 0.5]
    with pytest.raises(ValueError):
        report.seconds("1h30m")


def test_disk_trend_first_and_last_point():
    trend = report.disk_trend([{"metric": {"mountpoint": "/var"}, "values": [[1, "40.5"], [2, "41"], [3, "42.25"]]},
                               {"metric": {"mountpoint": "/"}, "values": []}])
    assert trend == [{"mountpoint": "/var", "first": 40.5, "first_at": 1.0, "last": 42.25, "last_at": 3.0}]


FIGURES = {
    "start": 1764547200.0, "end": 1765152000.0, "step": 60,       # Mon 01/12/2025 00:00 UTC -> Mon 08/12/2025
    "uptime": {"n8n": 99.8765, "redis": 100.0},
    "alerts": [{"alertname": "ServicoFora", "service": "n8n", "times": 2, "seconds": 3930.0},
               {"alertname": "BackupFalhou", "service": "", "times": 1, "seconds": 20.0}],
    "disk": [{"mountpoint": "/var", "first": 40.5, "first_at": 1764547200.0, "last": 38.25, "last_at": 1765152000.0}],
    "backup_status": 1.0, "backup_success": 1765090800.0, "drill_status": None, "drill_success": None,
    "received": 42.0, "replied": 40.0, "errors": 0.0,
}


def test_render_pt_br_in_the_owner_time_zone():
    subject, text = report.render(FIGURES, SP, "servidor")
    assert subject == "[BorgStack] Relatório semanal 30/11/2025 a 07/12/2025"    # 21:00 -03 the day before
    assert "- n8n: 99,88 %\n- redis: 100,00 %\n" in text
    assert "- ServicoFora (n8n): 2 vezes, ativo por 1 h 06 min\n- BackupFalhou: 1 vez, ativo por 0 min\n" in text
    assert "- Backup: último resultado ok; último sucesso 07/12/2025 04:00\n" in text
    assert "- Teste de restauração: último resultado sem registro; último sucesso nenhum registrado\n" in text
    assert "- /var: 40,50 % em 30/11/2025 21:00 -> 38,25 % agora (-2,25 %)\n" in text
    assert "Mensagens recebidas e entregues ao Chatwoot: 42\n- Respostas enviadas ao WhatsApp: 40\n" in text


def test_render_without_data_says_so():
    empty = dict(FIGURES, uptime={}, alerts=[], disk=[], backup_status=0.0, received=None, replied=None, errors=None)
    _subject, text = report.render(empty, SP, "servidor")
    for words in ("sem dados de verificação de saúde", "nenhum alerta disparou", "sem dados de disco",
                  "Backup: último resultado FALHOU", "Respostas enviadas ao WhatsApp: sem dados"):
        assert words in text


class FakePrometheus:
    def __init__(self):
        self.calls = []

    def query(self, promql, at):
        self.calls.append(("query", promql, at))
        answers = {report.QUERIES["uptime"]: [{"metric": {"service": "n8n"}, "value": [at, "0.5"]}],
                   report.QUERIES["received"]: [{"metric": {}, "value": [at, "3"]}],
                   report.QUERIES["alerts"]: [_series("X", "s", [at - 20, at - 10])]}
        return answers.get(promql, [])

    def query_range(self, promql, start, end, step):
        self.calls.append(("query_range", promql, start, end, step))
        return [{"metric": {"mountpoint": "/"}, "values": [[start, "10"], [end, "11"]]}]


def test_collect_reads_the_week_that_ends_now():
    fake = FakePrometheus()
    figures = report.collect(fake, 1_000_000.0, 60, 10)
    assert figures["uptime"] == {"n8n": 50.0} and figures["received"] == 3.0 and figures["replied"] is None
    assert figures["alerts"][0]["seconds"] == 20 and figures["disk"][0]["last"] == 11.0
    assert ("query_range", report.QUERIES["disk"], 1_000_000.0 - 7 * 86400, 1_000_000.0, 60) in fake.calls
    assert all(call[2] == 1_000_000.0 for call in fake.calls if call[0] == "query")
