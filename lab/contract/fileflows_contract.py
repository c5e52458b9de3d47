# SPDX-License-Identifier: GPL-3.0-or-later
"""Contract server standing in for FileFlows 25.09's web API, for the calls the media pipeline makes (Python 3 stdlib
only).

No FileFlows image can be had on the lab machine. This is NOT FileFlows: it accepts only the requests the upstream
server source defines (FileFlows.WebServer/Controllers/LibraryFileController.cs, route ``/api/library-file``, the
controller of the 25.x server; the open repository github.com/revenz/FileFlows holds scripts only since, the source
was read in its public forks) and answers as that source does:

- ``POST /api/library-file/upload`` multipart/form-data with ``file`` (the bytes), ``chunkNumber``, ``totalChunks``,
  ``fileName`` (all ``[FromForm]``): the chunk is written to ``<manual library>/<safe name>.temp`` (created on chunk
  0, appended after); on the last chunk the file is renamed to ``<manual library>/<safe name>`` (``_hhmmss`` inserted
  before the extension while the name is taken) and the answer is that final path as text; an intermediate chunk
  answers the temporary path. A missing field is model binding's 400; no manual library 400 "Manual Library path
  not set".
- ``POST /api/library-file/process-file?filename=F[&libraryUid=U]``: empty name 400 "Filename not set"; a known file
  already queued or processing (status < 2) 200; a known finished one is queued again; an unknown file is added when
  an enabled library's path starts it (else 400 "No library found for file: F"); answer 200 with no body.
- ``POST /api/library-file/search`` ``{Path, FromDate, ToDate, Status?, Limit}`` (LibraryFileSearchModel) ->
  ``[LibraryFile]`` whose name contains Path.
- ``GET /api/library-file/{uid}`` -> the LibraryFile or 204 (a null result); ``GET /api/library-file/download/{uid}``
  -> the file's bytes (``application/octet-stream``, Content-Disposition attachment with the file's name, as
  ASP.NET's File(stream, type, name) answers): its Name if that file still exists, else its OutputPath, else
  404 "File not found.".
- LibraryFile as the API serialises it (PascalCase, as the community scripts read it: ``Uid``, ``Name``,
  ``RelativePath``, ``Status``, ``OutputPath``, ``FinalSize``, ``OriginalSize``, ``FlowName``, ``LibraryName``,
  ``ProcessingStarted``, ``ProcessingEnded``, ``FailureReason``); FileStatus Unprocessed 0, Processed 1,
  Processing 2, FlowNotFound 3, ProcessingFailed 4 (Shared/Models).
- No login: user security is a licensed feature the free edition lacks (FileFlowsAuthorize lets every call through
  when security is off); BorgStack puts Caddy's basic_auth in front of the public site only.

Anything else answers 404 and is recorded as rejected. Processing is simulated: a queued file is taken by the
"processing node" after ``processing_seconds``, and the flow either writes ``<name>.processed<ext>`` under the
output directory (the original removed, as a flow ending in "Replace Original"/move does) with the bytes
``PROCESSED:`` + the input, or fails with the reason given to ``/_fail``. Control API (same port, never published):
``GET /_calls``, ``POST /_fail {"reason", "times"}``, ``POST /_reset``, ``GET /_health``.

Run alone: ``python3 fileflows_contract.py --port 5000 --bind 0.0.0.0 --library /media/borgstack``.
"""
from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import os
import re
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

UNPROCESSED, PROCESSED, PROCESSING, FLOW_NOT_FOUND, PROCESSING_FAILED = 0, 1, 2, 3, 4
SEARCH_FIELDS = {"Path", "FromDate", "ToDate", "FinishedProcessingFrom", "FinishedProcessingTo", "Library", "Status",
                 "Limit", "LibraryName"}


def safe_file_name(name: str) -> str:
    """FileHelper.GetSafeFileName: characters invalid in a file name replaced (here: path separators and NUL)."""
    return re.sub(r"[\\/\x00]", "_", name)


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat().replace("+00:00", "Z")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FileFlows:
    """The state the contract keeps: libraries (one enabled library over the manual-library directory), files."""

    def __init__(self, library: str, output: str, processing_seconds: float = 0.3) -> None:
        self.manual = Path(library)
        self.output = Path(output)
        self.manual.mkdir(parents=True, exist_ok=True)
        self.output.mkdir(parents=True, exist_ok=True)
        self.libraries = [{"Uid": str(uuid.uuid4()), "Name": "BorgStack", "Path": str(self.manual), "Enabled": True}]
        self.processing_seconds = processing_seconds
        self.lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.failures: list[str] = []

    def reset(self) -> None:
        with self.lock:
            self.files.clear()
            self.calls.clear()
            self.failures.clear()

    # ---- the API ----

    def upload(self, fields: dict[str, str], files: dict[str, bytes]) -> str:
        for name in ("chunkNumber", "totalChunks", "fileName"):
            if name not in fields:
                raise HttpError(400, json.dumps({"errors": {name: [f"The {name} field is required."]}}))
        if "file" not in files:
            raise HttpError(400, json.dumps({"errors": {"file": ["The file field is required."]}}))
        try:
            chunk, total = int(fields["chunkNumber"]), int(fields["totalChunks"])
        except ValueError as exc:
            raise HttpError(400, json.dumps({"errors": {"chunkNumber": [str(exc)]}})) from exc
        safe = safe_file_name(fields["fileName"])
        temp = self.manual / (safe + ".temp")
        with open(temp, "wb" if chunk == 0 else "ab") as handle:
            handle.write(files["file"])
        if chunk != total - 1:
            return str(temp)
        final = self.manual / safe
        while final.exists():
            final = final.with_name(final.stem + time.strftime("_%I%M%S") + final.suffix)
        temp.rename(final)
        return str(final)

    def process_file(self, filename: str) -> None:
        if not filename.strip():
            raise HttpError(400, "Filename not set")
        with self.lock:
            known = next((f for f in self.files.values() if f["Name"] == filename), None)
            if known is not None:
                if known["Status"] < PROCESSING:
                    return
                known.update(Status=UNPROCESSED, FailureReason="")
                self._schedule(known["Uid"])
                return
            library = next((lib for lib in self.libraries if lib["Enabled"] and filename.startswith(lib["Path"])), None)
            if library is None:
                raise HttpError(400, f"No library found for file: {filename}")
            uid = str(uuid.uuid4())
            size = os.path.getsize(filename) if os.path.exists(filename) else 0
            self.files[uid] = {"Uid": uid, "Name": filename, "RelativePath": filename[len(library["Path"]):].lstrip("/"),
                               "Status": UNPROCESSED, "OutputPath": "", "OriginalSize": size, "FinalSize": 0,
                               "FlowName": "BorgStack", "LibraryName": library["Name"], "ProcessingStarted": None,
                               "ProcessingEnded": None, "FailureReason": ""}
            self._schedule(uid)

    def _schedule(self, uid: str) -> None:
        timer = threading.Timer(self.processing_seconds, self._process, args=(uid,))
        timer.daemon = True
        timer.start()

    def _process(self, uid: str) -> None:
        with self.lock:
            item = self.files[uid]
            item.update(Status=PROCESSING, ProcessingStarted=iso(time.time()))
            reason = self.failures.pop(0) if self.failures else None
        time.sleep(self.processing_seconds)
        with self.lock:
            item["ProcessingEnded"] = iso(time.time())
            source = Path(item["Name"])
            if reason is None and not source.exists():
                reason = f"File not found: {source}"
            if reason is not None:
                item.update(Status=PROCESSING_FAILED, FailureReason=reason)
                return
            data = source.read_bytes()
            target = self.output / f"{source.stem}.processed{source.suffix}"
            target.write_bytes(b"PROCESSED:" + data)
            source.unlink()
            item.update(Status=PROCESSED, OutputPath=str(target), FinalSize=target.stat().st_size)

    def search(self, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict):
            raise HttpError(400, "A non-empty request body is required.")
        unknown = set(body) - SEARCH_FIELDS
        if unknown:
            # System.Text.Json ignores unknown members by default; the contract refuses them so a typo shows.
            raise HttpError(400, f"unknown members {sorted(unknown)} (LibraryFileSearchModel)")
        with self.lock:
            found = [dict(f) for f in self.files.values() if str(body.get("Path") or "") in f["Name"]
                     and (body.get("Status") is None or f["Status"] == body["Status"])]
        limit = int(body.get("Limit") or 0)
        return found[:limit] if limit > 0 else found

    def get(self, uid: str) -> dict[str, Any] | None:
        with self.lock:
            item = self.files.get(uid)
            return dict(item) if item else None

    def download(self, uid: str) -> tuple[bytes, str]:
        item = self.get(uid)
        if item is None:
            raise HttpError(404, "File not found.")
        for path in (item["Name"], item["OutputPath"]):
            if path and os.path.exists(path):
                return Path(path).read_bytes(), Path(path).name
        raise HttpError(404, "File not found.")


def parse_form(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + raw)
    if not message.is_multipart():
        raise HttpError(415, "Unsupported Media Type")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_param("filename", header="content-disposition") is not None:
            files[name] = data
        else:
            fields[name] = data.decode("utf-8")
    return fields, files


def make_handler(state: FileFlows):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            for key, value in getattr(self, "extra_headers", {}).items():
                self.send_header(key, value)
            self.extra_headers = {}
            if body:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value).encode(), "application/json; charset=utf-8")

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type") or ""
            call = {"at": time.time(), "method": method, "path": url.path, "query": query, "status": None,
                    "rejected_reason": None}
            if url.path.startswith("/_"):
                return self._control(method, url.path, raw)
            with state.lock:
                state.calls.append(call)
            try:
                status, body, kind = self._route(method, url.path, query, raw, ctype)
            except HttpError as exc:
                status, body, kind = exc.status, str(exc).encode(), "text/plain; charset=utf-8"
                if exc.status == 404 and str(exc) == "":
                    call["rejected_reason"] = "not in the documented API"
                elif exc.status in (400, 415):
                    call["rejected_reason"] = str(exc)
            call["status"] = status
            self._send(status, body, kind)

        def _route(self, method: str, path: str, query: dict[str, str], raw: bytes, ctype: str
                   ) -> tuple[int, bytes, str]:
            text = "text/plain; charset=utf-8"
            if method == "POST" and path == "/api/library-file/upload":
                fields, files = parse_form(ctype, raw)
                return 200, state.upload(fields, files).encode(), text
            if method == "POST" and path == "/api/library-file/process-file":
                if raw:
                    raise HttpError(400, "process-file takes the file name in the query string, not a body")
                state.process_file(query.get("filename", ""))
                return 200, b"", text
            if method == "POST" and path == "/api/library-file/search":
                if not ctype.startswith("application/json"):
                    raise HttpError(415, "Unsupported Media Type")
                try:
                    body = json.loads(raw or b"null")
                except ValueError as exc:
                    raise HttpError(400, f"invalid JSON: {exc}") from exc
                return 200, json.dumps(state.search(body)).encode(), "application/json; charset=utf-8"
            match = re.fullmatch(r"/api/library-file/download/([0-9a-fA-F-]{36})", path)
            if method == "GET" and match:
                data, name = state.download(match.group(1))
                self.extra_headers = {"Content-Disposition": f'attachment; filename="{name}"'}
                return 200, data, "application/octet-stream"
            match = re.fullmatch(r"/api/library-file/([0-9a-fA-F-]{36})", path)
            if method == "GET" and match:
                item = state.get(match.group(1))
                if item is None:
                    return 204, b"", text
                return 200, json.dumps(item).encode(), "application/json; charset=utf-8"
            raise HttpError(404, "")

        def _control(self, method: str, path: str, raw: bytes) -> None:
            if path == "/_health":
                return self._json(200, {"ok": True})
            if path == "/_calls" and method == "GET":
                with state.lock:
                    return self._json(200, list(state.calls))
            if path == "/_files" and method == "GET":
                with state.lock:
                    return self._json(200, list(state.files.values()))
            if path == "/_fail" and method == "POST":
                spec = json.loads(raw or b"{}")
                with state.lock:
                    state.failures.extend([spec.get("reason", "simulated failure")] * int(spec.get("times", 1)))
                return self._json(200, {"pending": len(state.failures)})
            if path == "/_reset" and method == "POST":
                state.reset()
                return self._json(200, {})
            return self._json(404, {"error": "unknown control path"})

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

    return Handler


def start(library: str, output: str, port: int = 0, bind: str = "127.0.0.1", processing_seconds: float = 0.3
          ) -> tuple[ThreadingHTTPServer, FileFlows]:
    """Serve in a background thread; returns (server, state). ``server.server_address[1]`` is the port."""
    state = FileFlows(library, output, processing_seconds)
    server = ThreadingHTTPServer((bind, port), make_handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--library", default="/tmp/fileflows/manual")
    parser.add_argument("--output", default="/tmp/fileflows/output")
    parser.add_argument("--processing-seconds", type=float, default=0.3)
    args = parser.parse_args()
    server = start(args.library, args.output, args.port, args.bind, args.processing_seconds)[0]
    print(f"FileFlows contract on {args.bind}:{server.server_address[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
