# SPDX-License-Identifier: GPL-3.0-or-later
"""The Telegram Bot API contract server (lab/contract/telegram_contract.py) must refuse what Telegram refuses, or the
alert-channel test that passes through it proves nothing. Runs the server as a local thread (no Docker).

What does NOT run: Telegram itself; the refusals below are the Bot API documentation's rules ("sendMessage",
"Formatting options"), with the error descriptions Telegram answers."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "lab" / "contract"))
import telegram_contract  # noqa: E402  # pylint: disable=wrong-import-position,import-error

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
CHAT = 987654321


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = telegram_contract.serve(TOKEN, CHAT)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _post(url: str, body: Any = None, form: bool = False) -> Tuple[int, Dict[str, Any]]:
    if form:
        data, ctype = urllib.parse.urlencode(body).encode(), "application/x-www-form-urlencoded"
    else:
        data, ctype = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_accepts_what_alertmanager_sends(base: str) -> None:
    # gopkg.in/telebot.v3 v3.1.2 (Alertmanager 0.25): every value a string.
    status, body = _post(f"{base}/bot{TOKEN}/sendMessage", {
        "chat_id": str(CHAT), "text": "🔴 <b>PROBLEMA</b>: uso &gt; 85 % &amp; n&#39;importe\n<i>x</i>",
        "parse_mode": "HTML", "disable_web_page_preview": "true"})
    assert status == 200 and body["ok"] is True
    assert body["result"]["chat"]["id"] == CHAT and body["result"]["text"] == "🔴 PROBLEMA: uso > 85 % & n'importe\nx"
    form = {"chat_id": CHAT, "text": "ok", "disable_notification": True}
    status, body = _post(f"{base}/bot{TOKEN}/sendMessage", form, form=True)
    assert status == 200, body


@pytest.mark.parametrize("path, params, status, description", [
    ("/bot{token}x/sendMessage", {"chat_id": CHAT, "text": "a"}, 401, "Unauthorized"),
    ("/bot{token}/sendmessage", {"chat_id": CHAT, "text": "a"}, 404, "Not Found"),
    ("/bot{token}/sendPhoto", {"chat_id": CHAT, "text": "a"}, 404, "Not Found"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT + 1, "text": "a"}, 400, "Bad Request: chat not found"),
    ("/bot{token}/sendMessage", {"text": "a"}, 400, "Bad Request: chat_id is empty"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": " "}, 400, "Bad Request: message text is empty"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "x" * 4097}, 400, "Bad Request: message is too long"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "a", "parse_mode": "html"}, 400,
     "Bad Request: unsupported parse_mode"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "uso > 85", "parse_mode": "HTML"}, 400,
     "Bad Request: can't parse entities"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "<p>a</p>", "parse_mode": "HTML"}, 400,
     'Unsupported start tag "p"'),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "<b>a", "parse_mode": "HTML"}, 400,
     "Can't find end tag"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "a &nbsp; b", "parse_mode": "HTML"}, 400,
     "Unsupported HTML entity"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "a", "disable_notification": "yes"}, 400,
     "can't parse disable_notification as Boolean"),
    ("/bot{token}/sendMessage", {"chat_id": CHAT, "text": "a", "silent": True}, 400, "not documented"),
])
def test_refuses_what_telegram_refuses(base: str, path: str, params: Dict[str, Any], status: int,
                                       description: str) -> None:
    got, body = _post(base + path.format(token=TOKEN), params)
    assert got == status and body["ok"] is False and body["error_code"] == status
    assert description in body["description"], body
