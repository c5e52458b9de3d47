# SPDX-License-Identifier: GPL-3.0-or-later
"""The media pipeline (docs/directus-fileflows.md): a file uploaded to Directus' media folder comes back processed,
and a FileFlows failure shows as an error, through the lab's real Directus (its flow created by the play), n8n (the
shipped workflow BorgStackMedia01), PostgreSQL (the error table) and SeaweedFS (Directus' bucket).

What did not run: FileFlows. No image of it can be had here; lab/contract/fileflows_contract.py plays its 25.09 web
API (upload, process-file, search, download of /api/library-file, as its LibraryFileController defines them) under
the stack name the lab inventory gives n8n (borgstack-fileflows:5000). Its "processing" prefixes the bytes with
``PROCESSED:``; a real flow (FFmpeg, ImageMagick...) and FileFlows' libraries are not exercised. The upload to
Directus is made as a user would (through Caddy, HTTPS, as the administrator); everything after it is the stack's.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from conftest import HOST, wait_for
from test_data_redis_seaweedfs import s3  # noqa: F401  pylint: disable=unused-import
from test_directus import _curl, _json, token  # noqa: F401  pylint: disable=unused-import

import contract

FILEFLOWS = "borgstack-fileflows-contract"
SOURCE = Path(__file__).resolve().parents[3] / "lab" / "contract" / "fileflows_contract.py"
LAB_DIR = "/opt/borgstack-lab-fileflows"
FOLDER, PROCESSED_FOLDER = "Mídia", "Mídia processada"
BUCKET = "directus"


def _lab(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", *(["-i"] if stdin is not None else []), HOST, *args], input=stdin,
                          capture_output=True, text=True, check=False, timeout=120)


def _control(method: str, path: str, body=None):
    """The contract's control API, from inside its container."""
    script = ("import json,sys,urllib.request as u; s=json.load(sys.stdin); "
              "r=u.Request('http://127.0.0.1:5000'+s['p'], data=None if s['b'] is None else json.dumps(s['b']).encode(),"
              " method=s['m'], headers={'Content-Type':'application/json'}); print(u.urlopen(r, timeout=10).read().decode())")
    run = _lab("docker", "exec", "-i", FILEFLOWS, "python3", "-c", script,
               stdin=json.dumps({"m": method, "p": path, "b": body}))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def fileflows():
    """The FileFlows contract on the stack network as borgstack-fileflows (the contract image's python3)."""
    contract.load_image(HOST)
    _lab("docker", "rm", "-f", FILEFLOWS)
    _lab("install", "-d", "-m", "0755", LAB_DIR)
    copy = subprocess.run(["docker", "cp", str(SOURCE), f"{HOST}:{LAB_DIR}/fileflows_contract.py"],
                          capture_output=True, text=True, check=False)
    assert copy.returncode == 0, copy.stderr
    run = _lab("docker", "run", "-d", "--name", FILEFLOWS, "--network", contract.NETWORK,
               "--network-alias", "borgstack-fileflows", "--memory", "128m", "--label",
               "org.borgstack.lab=contract-server", "--mount", f"type=bind,source={LAB_DIR},target=/opt/ff,readonly",
               "--entrypoint", "python3", contract.IMAGE, "/opt/ff/fileflows_contract.py", "--port", "5000",
               "--bind", "0.0.0.0", "--library", "/tmp/ff/manual", "--output", "/tmp/ff/output",
               "--processing-seconds", "0.2")
    assert run.returncode == 0, run.stderr
    wait_for("the FileFlows contract answers", lambda: _lab("docker", "exec", FILEFLOWS, "python3", "-c",
             "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/_health', timeout=2)").returncode == 0, 30)
    yield
    _lab("docker", "rm", "-f", FILEFLOWS)
    _lab("rm", "-rf", LAB_DIR)


def _folder(host, root_cert, tok, name: str) -> str:
    query = urllib.parse.quote(f"filter[name][_eq]={name}", safe="=&")
    status, body = _json(host, root_cert, f"/folders?{query}&fields=id", "-H", f"Authorization: Bearer {tok}")
    assert status == 200 and len(body["data"]) == 1, f"the play did not create the folder {name}: {body}"
    return body["data"][0]["id"]


def _upload(host, root_cert, tok, tmp_path: Path, name: str, data: bytes, folder: str) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    # Directus reads the fields before the file: folder first.
    status, body = _json(host, root_cert, "/files", "-X", "POST", "-H", f"Authorization: Bearer {tok}",
                         "-F", f"folder={folder}", "-F", f"file=@{path};type=application/octet-stream")
    assert status == 200, body
    return body["data"]["id"]


def _file(host, root_cert, tok, file_id: str) -> dict:
    status, body = _json(host, root_cert, f"/files/{file_id}?fields=id,tags,metadata,folder,filename_disk",
                         "-H", f"Authorization: Bearer {tok}")
    assert status == 200, body
    return body["data"]


def _tagged(info: dict, tag: str) -> dict | None:
    return info if tag in (info["tags"] or []) else None


def test_an_upload_comes_back_processed(host, root_cert, token, fileflows, tmp_path, s3):  # noqa: F811
    source, processed_folder = _folder(host, root_cert, token, FOLDER), _folder(host, root_cert, token, PROCESSED_FOLDER)
    data = os.urandom(64 * 1024)
    original = _upload(host, root_cert, token, tmp_path, "foto.bin", data, source)
    done = wait_for("the original tagged processado",
                    lambda: _tagged(_file(host, root_cert, token, original), "processado"), timeout=60, every=1)
    media = done["metadata"]["borgstack_media"]
    assert media["status"] == "processed", media
    result = _file(host, root_cert, token, media["processed_file"])
    assert result["folder"] == processed_folder
    status, body = _curl(host, root_cert, f"/assets/{media['processed_file']}", "-H", f"Authorization: Bearer {token}")
    assert status == 200 and body == b"PROCESSED:" + data
    found = s3([{"name": "head", "method": "HEAD", "path": f"/{BUCKET}/{result['filename_disk']}", "auth": "stack"}])
    assert found["head"]["status"] == 200, f"the processed file is not in SeaweedFS: {found}"
    calls = _control("GET", "/_calls")
    assert [c for c in calls if c["rejected_reason"]] == [], calls
    assert [c["path"] for c in calls][:3] == [
        "/api/library-file/upload", "/api/library-file/process-file", "/api/library-file/search"]
    # The processed folder is not watched: the result was not sent to FileFlows again.
    assert sum(c["path"] == "/api/library-file/upload" for c in calls) == 1


def test_a_fileflows_failure_is_an_error_the_operator_sees(host, root_cert, token, fileflows, tmp_path):
    source = _folder(host, root_cert, token, FOLDER)
    _control("POST", "/_fail", {"reason": "FFmpeg saiu com código 1", "times": 1})
    original = _upload(host, root_cert, token, tmp_path, "video.bin", b"x" * 2048, source)
    failed = wait_for("the original tagged erro-processamento",
                      lambda: _tagged(_file(host, root_cert, token, original), "erro-processamento"), timeout=60, every=1)
    media = failed["metadata"]["borgstack_media"]
    assert media["status"] == "failed" and "FFmpeg saiu com código 1" in media["error"], media
    rows = host.check_output(
        "docker exec borgstack-postgresql psql -U postgres -d n8n -tA -F '|' -c "
        + shlex.quote(f"SELECT step, error FROM borgstack_cs_errors WHERE webhook_path = 'borgstack/media' "
                      f"AND payload->>'file' = '{original}'"))
    assert "fileflows|" in rows and "FFmpeg saiu com código 1" in rows, rows
