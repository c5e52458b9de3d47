# SPDX-License-Identifier: GPL-3.0-or-later
"""Contract server standing in for the Telegram Bot API's ``sendMessage`` (Python 3 stdlib only).

api.telegram.org cannot be reached from the lab, and a test must not message a real chat. This is NOT Telegram: it
accepts only what the Bot API documentation (https://core.telegram.org/bots/api: "Making requests", "sendMessage",
"Formatting options") defines for the one call Alertmanager's Telegram receiver makes, and answers as the API does:

- ``POST /bot<token>/sendMessage`` (any other method or path: 404 ``{"ok": false, "error_code": 404, "description":
  "Not Found"}``); a token other than the configured one: 401 ``Unauthorized``.
- Parameters as ``application/json`` or ``application/x-www-form-urlencoded`` (the query string too). The Bot API
  takes every value also as a string ("All queries must be made using UTF-8"; Alertmanager 0.25 sends through
  gopkg.in/telebot.v3 v3.1.2, whose ``Raw`` encodes a map of strings: ``"chat_id": "123"``,
  ``"disable_web_page_preview": "true"``).
- ``chat_id`` (Integer or String ``@channel``): required; a chat other than the configured one answers 400
  ``Bad Request: chat not found``. ``text``: required, 1-4096 characters after entities parsing, else 400
  ``Bad Request: message text is empty`` / ``message is too long``. ``parse_mode``: ``HTML``, ``Markdown`` or
  ``MarkdownV2``, else 400 ``Bad Request: unsupported parse_mode``. Booleans (``disable_notification``,
  ``protect_content``, ``disable_web_page_preview``, ``allow_sending_without_reply``): true/false.
- ``parse_mode=HTML`` is parsed as the "HTML style" section says: only the tags b, strong, i, em, u, ins, s, strike,
  del, span class="tg-spoiler", tg-spoiler, a href, code, pre, blockquote, tg-emoji; the entities &lt; &gt; &amp;
  &quot; and numeric ones; a bare ``<``, ``>`` or ``&``, an unknown tag or entity, or an unclosed tag answers 400
  ``Bad Request: can't parse entities: ...``. ``Markdown``/``MarkdownV2`` texts are not parsed (not used here).
- Any other parameter name of sendMessage's documented list is accepted; an undocumented one is refused with 400
  (stricter than Telegram, which ignores it: the test must send only documented fields).
- Success: ``{"ok": true, "result": Message}`` with ``message_id``, ``date``, ``chat`` and ``text`` (the text after
  entity parsing, as Telegram returns it).

Every call is recorded: ``GET /_calls`` (JSON list of {path, status, params, text}) and ``POST /_reset`` on the same
port, which no Bot API path uses. Run alone: ``python3 telegram_contract.py --port 8081 --token T --chat-id 42``.
"""
from __future__ import annotations

import argparse
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

SEND_MESSAGE_PARAMS = {
    "business_connection_id", "chat_id", "message_thread_id", "text", "parse_mode", "entities",
    "link_preview_options", "disable_web_page_preview", "disable_notification", "protect_content",
    "allow_paid_broadcast", "message_effect_id", "reply_parameters", "reply_markup", "reply_to_message_id",
    "allow_sending_without_reply",
}
BOOLEAN_PARAMS = {"disable_web_page_preview", "disable_notification", "protect_content", "allow_paid_broadcast",
                  "allow_sending_without_reply"}
HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
             "blockquote", "tg-emoji"}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
MAX_TEXT = 4096


class EntityError(ValueError):
    """The text cannot be parsed as Telegram's HTML."""


def parse_html(text: str) -> str:
    """The plain text Telegram keeps from an HTML-formatted message, or EntityError as Telegram refuses it."""
    out: List[str] = []
    stack: List[str] = []
    pos = 0
    for match in re.finditer(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>|&(#x[0-9A-Fa-f]+|#[0-9]+|[A-Za-z]+);|[<>&]", text):
        out.append(text[pos:match.start()])
        pos = match.end()
        offset = len(text[:match.start()].encode("utf-8"))
        token = match.group(0)
        if match.group(2):
            closing, tag, attrs = match.group(1), match.group(2).lower(), match.group(3)
            if tag not in HTML_TAGS:
                raise EntityError(f'Unsupported start tag "{tag}" at byte offset {offset}')
            if closing:
                if not stack or stack[-1] != tag:
                    raise EntityError(f'Unmatched end tag at byte offset {offset}, expected "</{stack[-1]}>", found '
                                      f'"</{tag}>"' if stack else f"Unexpected end tag at byte offset {offset}")
                stack.pop()
            elif tag == "span" and 'class="tg-spoiler"' not in attrs:
                raise EntityError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
            elif tag == "a" and "href=" not in attrs:
                raise EntityError(f'Tag "a" must have attribute "href" at byte offset {offset}')
            else:
                stack.append(tag)
        elif match.group(4):
            entity = match.group(4)
            if entity.startswith("#"):
                out.append(chr(int(entity[2:], 16) if entity[1] in "xX" else int(entity[1:])))
            elif entity in NAMED_ENTITIES:
                out.append(NAMED_ENTITIES[entity])
            else:
                raise EntityError(f'Unsupported HTML entity "&{entity};" at byte offset {offset}')
        else:
            raise EntityError(f'Character "{token}" is reserved and must be escaped with the preceding "\\" '
                              f"at byte offset {offset}" if token != "&" else
                              f"Can't find end of the entity starting at byte offset {offset}")
    out.append(text[pos:])
    if stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


class TelegramContract:
    """State of one fake bot: its token, the one chat it may write to, and every call made."""

    def __init__(self, token: str, chat_id: int) -> None:
        self.token = token
        self.chat_id = chat_id
        self.calls: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        self.next_id = 1

    def send_message(self, params: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        """(status, answer, parsed text) for the parameters of one sendMessage."""
        def bad(description: str) -> Tuple[int, Dict[str, Any], str]:
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}, ""

        unknown = sorted(set(params) - SEND_MESSAGE_PARAMS)
        if unknown:
            return bad(f"parameters not documented for sendMessage: {', '.join(unknown)} (contract server)")
        chat = params.get("chat_id")
        if chat in (None, ""):
            return bad("chat_id is empty")
        if str(chat) != str(self.chat_id):
            return bad("chat not found")
        for name in BOOLEAN_PARAMS & set(params):
            if params[name] not in (True, False, "true", "false", "True", "False", "1", "0", 1, 0):
                return bad(f"can't parse {name} as Boolean")
        parse_mode = params.get("parse_mode") or ""
        if parse_mode not in ("", "HTML", "Markdown", "MarkdownV2"):
            return bad("unsupported parse_mode")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return bad("message text is empty")
        try:
            plain = parse_html(text) if parse_mode == "HTML" else text
        except EntityError as exc:
            return bad(f"can't parse entities: {exc}")
        if not plain.strip():
            return bad("text must be non-empty")
        if len(plain) > MAX_TEXT:
            return bad("message is too long")
        with self.lock:
            message_id = self.next_id
            self.next_id += 1
        chat_type = "private" if int(self.chat_id) > 0 else "group"
        result = {"message_id": message_id, "date": int(time.time()),
                  "chat": {"id": int(self.chat_id), "type": chat_type}, "text": plain}
        return 200, {"ok": True, "result": result}, plain


def _parse_params(handler: BaseHTTPRequestHandler, query: str) -> Dict[str, Any]:
    params: Dict[str, Any] = dict(urllib.parse.parse_qsl(query))
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if raw and ctype == "application/json":
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("the JSON body must be an object")
        params.update(body)
    elif raw and ctype == "application/x-www-form-urlencoded":
        params.update(urllib.parse.parse_qsl(raw.decode("utf-8")))
    elif raw:
        raise ValueError(f"unsupported Content-Type {ctype!r}")
    return params


def make_handler(contract: TelegramContract) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # pylint: disable=redefined-builtin
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/_calls":
                with contract.lock:
                    self._json(200, list(contract.calls))
                return
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            if self.path == "/_reset":
                with contract.lock:
                    contract.calls.clear()
                self._json(200, {"ok": True})
                return
            self._handle("POST")

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", url.path)
            params: Dict[str, Any] = {}
            status: int
            answer: Dict[str, Any]
            text: Optional[str] = None
            if not match or match.group(2) != "sendMessage" or method != "POST":
                status, answer = 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            elif match.group(1) != contract.token:
                status, answer = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            else:
                try:
                    params = _parse_params(self, url.query)
                    status, answer, text = contract.send_message(params)
                except (ValueError, UnicodeDecodeError) as exc:
                    status, answer = 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"}
            with contract.lock:
                # The token is a secret: the record keeps only the method.
                contract.calls.append({"path": f"/bot<token>/{match.group(2) if match else url.path}",
                                       "status": status, "params": params, "text": text})
            self._json(status, answer)

    return Handler


def serve(token: str, chat_id: int, port: int = 0, bind: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the server in a daemon thread; ``server.contract`` holds the calls, ``shutdown()`` stops it."""
    contract = TelegramContract(token, chat_id)
    server = ThreadingHTTPServer((bind, port), make_handler(contract))
    server.daemon_threads = True
    server.contract = contract  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--token", required=True)
    parser.add_argument("--chat-id", type=int, required=True)
    args = parser.parse_args()
    server = serve(args.token, args.chat_id, args.port, args.bind)
    print(f"telegram contract listening on {args.bind}:{server.server_address[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
