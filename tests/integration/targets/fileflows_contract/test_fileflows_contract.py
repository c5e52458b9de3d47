# SPDX-License-Identifier: GPL-3.0-or-later
"""The FileFlows 25.09 contract server (lab/contract/fileflows_contract.py) must refuse what FileFlows refuses and
answer as its LibraryFileController does, or the media pipeline's test proves nothing. Runs on this machine (no lab
host): upload -> process-file -> search -> download, a failure, and the calls FileFlows has no route for."""
from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "lab" / "contract"))
import fileflows_contract  # noqa: E402  # pylint: disable=wrong-import-position,import-error


@pytest.fixture()
def server(tmp_path):
    srv, state = fileflows_contract.start(str(tmp_path / "manual"), str(tmp_path / "out"), processing_seconds=0.05)
    yield f"http://127.0.0.1:{srv.server_address[1]}", state
    srv.shutdown()


def call(base, method, path, body=None, headers=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(base + path, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def multipart(fields, file_bytes):
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
                 'Content-Type: application/octet-stream\r\n\r\n'.encode() + file_bytes + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def wait_status(base, name, wanted, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(base, "POST", "/api/library-file/search", {"Path": name, "Limit": 1})
        assert status == 200, body
        found = json.loads(body)
        if found and found[0]["Status"] in wanted:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {wanted}")


def test_upload_process_and_download(server):
    base = server[0]
    body, hdrs = multipart({"chunkNumber": 0, "totalChunks": 1, "fileName": "foto.jpg"}, b"abc")
    status, path = call(base, "POST", "/api/library-file/upload", body, hdrs)
    assert status == 200 and path.decode().endswith("/foto.jpg")
    # The same name again: FileFlows keeps both, the second with a time stamp before the extension.
    status, second = call(base, "POST", "/api/library-file/upload", body, hdrs)
    assert status == 200 and second != path and second.decode().endswith(".jpg")
    name = path.decode()
    assert call(base, "POST", "/api/library-file/process-file?filename=" + urllib.request.quote(name))[0] == 200
    done = wait_status(base, name, {1})
    assert done["OutputPath"] and done["FailureReason"] == ""
    status, data = call(base, "GET", f"/api/library-file/download/{done['Uid']}")
    assert status == 200 and data == b"PROCESSED:abc"
    status, one = call(base, "GET", f"/api/library-file/{done['Uid']}")
    assert status == 200 and json.loads(one)["Status"] == 1


def test_a_failing_flow_reports_its_reason(server):
    base, state = server
    state.failures.append("FFmpeg exited 1")
    body, hdrs = multipart({"chunkNumber": 0, "totalChunks": 1, "fileName": "video.mp4"}, b"v")
    name = call(base, "POST", "/api/library-file/upload", body, hdrs)[1].decode()
    call(base, "POST", "/api/library-file/process-file?filename=" + urllib.request.quote(name))
    failed = wait_status(base, name, {4})
    assert failed["FailureReason"] == "FFmpeg exited 1"


def test_refuses_what_fileflows_refuses(server):
    base, state = server
    assert call(base, "POST", "/api/library-file/process-file?filename=")[0] == 400
    status, text = call(base, "POST", "/api/library-file/process-file?filename=/elsewhere/a.jpg")
    assert status == 400 and b"No library found" in text
    body, hdrs = multipart({"chunkNumber": 0, "fileName": "a.jpg"}, b"a")   # totalChunks missing
    assert call(base, "POST", "/api/library-file/upload", body, hdrs)[0] == 400
    assert call(base, "POST", "/api/library-file/search", {"Pathh": "x"})[0] == 400
    assert call(base, "POST", "/api/flow/trigger", {"filename": "a"})[0] == 404   # not an API of FileFlows
    assert call(base, "GET", f"/api/library-file/download/{uuid.uuid4()}")[0] == 404
    rejected = [c for c in state.calls if c["rejected_reason"]]
    assert {c["path"] for c in rejected} >= {"/api/flow/trigger", "/api/library-file/upload"}
