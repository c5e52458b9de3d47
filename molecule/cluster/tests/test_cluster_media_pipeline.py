# SPDX-License-Identifier: GPL-3.0-or-later
"""The media pipeline (docs/directus-fileflows.md) on the lab cluster (issue 24): a file uploaded through the edge's
Caddy to Directus' media folder comes back processed.

On a cluster the play ran Directus' side of the pipeline (its account, token, folders and flow) in one Directus task's
container, and n8n's workflow (BorgStackMedia01) in the n8n main's (compose_service_step_containers: one host per
service, even with several Directus replicas); the flow's webhook reaches n8n over the overlay and a worker runs the
workflow, which asks FileFlows and writes the result back to Directus (stored in SeaweedFS on the data node).

What ran: the real Directus, n8n (main, webhook processors, workers), PostgreSQL, Redis, SeaweedFS and Caddy on the
swarm. What did not: FileFlows - no image of it here; lab/contract/fileflows_contract.py plays its web API on the
overlay under the stack name the inventory gives n8n (borgstack-fileflows:5000), its "processing" prefixes the bytes
with ``PROCESSED:``. The failure path (an error the operator sees) is tested on one host
(molecule/stack/tests/test_media_pipeline.py): the same workflow. The scenario's inventory turns the pipeline on
(borgstack_media_pipeline, molecule.yml).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from test_cluster_customer_service import DATA, EDGE, NETWORK, NODES, STACK, contract, sh, wait_for  # noqa: E402

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
FILEFLOWS = "borgstack-fileflows-contract"
SOURCE = PROJECT / "lab" / "contract" / "fileflows_contract.py"
LAB_DIR = "/opt/borgstack-lab-fileflows"
FOLDER, PROCESSED_FOLDER = "Mídia", "Mídia processada"
DIRECTUS_HOST = "directus.lab.borgstack.test"
ADMIN = "admin@example.com"
ROOT_CERT = "/opt/borgstack/services/caddy/root.crt"
PASSWORD_FILE = "/opt/borgstack/services/directus/admin-password"


def _pipeline_on() -> bool:
    """Is BorgStackMedia01 in n8n's database (the play installs it only with the pipeline on)?"""
    container = sh(DATA, "docker", "ps", "--quiet", "--filter",
                   f"label=com.docker.swarm.service.name={STACK}_postgresql").stdout.split()
    if not container:
        return False
    run = sh(DATA, "docker", "exec", container[0], "psql", "-U", "postgres", "-d", "n8n", "-tA", "-c",
             "SELECT count(*) FROM workflow_entity WHERE id = 'BorgStackMedia01' AND active", check=False)
    return run.stdout.strip() == "1"


def _curl(path: str, *extra: str, stdin: bytes | None = None) -> tuple[int, bytes]:
    """HTTPS through the edge node's Caddy, from the data node (the internal root there); the body comes back
    base64-free through a file in the node."""
    out = "/tmp/borgstack-media-body"
    argv = ["docker", "exec", *(["-i"] if stdin is not None else []), DATA, "curl", "--silent", "--show-error",
            "--max-time", "60", "--output", out, "--write-out", "%{http_code}", "--resolve",
            f"{DIRECTUS_HOST}:443:{NODES[EDGE]}", "--cacert", ROOT_CERT, *extra, f"https://{DIRECTUS_HOST}{path}"]
    run = subprocess.run(argv, input=stdin, capture_output=True, timeout=120, check=False)
    assert run.returncode == 0, f"{path}: curl failed: {run.stderr.decode(errors='replace')}"
    body = subprocess.run(["docker", "exec", DATA, "cat", out], capture_output=True, timeout=60, check=True).stdout
    return int(run.stdout.decode()), body


def _json(path: str, *extra: str, stdin: bytes | None = None) -> tuple[int, dict]:
    status, body = _curl(path, *extra, stdin=stdin)
    return status, json.loads(body or b"{}")


@pytest.fixture(scope="module")
def fileflows():
    assert _pipeline_on(), ("n8n has no active BorgStackMedia01: the play did not install the media pipeline's workflow "
                            "(borgstack_media_pipeline on in molecule.yml, Directus and SeaweedFS on)")
    contract.load_image(DATA)
    sh(DATA, "docker", "rm", "-f", FILEFLOWS, check=False)
    sh(DATA, "install", "-d", "-m", "0755", LAB_DIR)
    subprocess.run(["docker", "cp", str(SOURCE), f"{DATA}:{LAB_DIR}/fileflows_contract.py"], capture_output=True,
                   check=True, timeout=60)
    sh(DATA, "docker", "run", "-d", "--name", FILEFLOWS, "--network", NETWORK, "--network-alias",
       "borgstack-fileflows", "--memory", "128m", "--label", "org.borgstack.lab=contract-server", "--mount",
       f"type=bind,source={LAB_DIR},target=/opt/ff,readonly", "--entrypoint", "python3", contract.IMAGE,
       "/opt/ff/fileflows_contract.py", "--port", "5000", "--bind", "0.0.0.0", "--library", "/tmp/ff/manual",
       "--output", "/tmp/ff/output", "--processing-seconds", "0.2")
    wait_for("the FileFlows contract answers", lambda: sh(
        DATA, "docker", "exec", FILEFLOWS, "python3", "-c",
        "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/_health', timeout=2)", check=False
    ).returncode == 0, timeout=60)
    yield
    sh(DATA, "docker", "rm", "-f", FILEFLOWS, check=False)
    sh(DATA, "rm", "-rf", LAB_DIR, check=False)


def _folder(token: str, name: str) -> str:
    query = urllib.parse.quote(f"filter[name][_eq]={name}", safe="=&")
    status, body = _json(f"/folders?{query}&fields=id", "-H", f"Authorization: Bearer {token}")
    assert status == 200 and len(body["data"]) == 1, f"the play did not create the folder {name}: {body}"
    return body["data"][0]["id"]


def _file(token: str, file_id: str) -> dict:
    status, body = _json(f"/files/{file_id}?fields=id,tags,metadata,folder", "-H", f"Authorization: Bearer {token}")
    assert status == 200, body
    return body["data"]


def test_an_upload_through_the_edge_comes_back_processed(fileflows):
    password = sh(DATA, "cat", PASSWORD_FILE).stdout.strip()
    status, body = _json("/auth/login", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-",
                         stdin=json.dumps({"email": ADMIN, "password": password}).encode())
    assert status == 200, body
    token = body["data"]["access_token"]
    source, processed_folder = _folder(token, FOLDER), _folder(token, PROCESSED_FOLDER)
    data = os.urandom(16 * 1024)
    # Directus reads the fields before the file: folder first; the bytes go in on stdin.
    status, body = _json("/files", "-X", "POST", "-H", f"Authorization: Bearer {token}", "-F", f"folder={source}",
                         "-F", "file=@-;filename=foto.bin;type=application/octet-stream", stdin=data)
    assert status == 200, body
    original = body["data"]["id"]
    started = time.monotonic()

    def tagged():
        info = _file(token, original)
        return info if "processado" in (info["tags"] or []) else None

    done = wait_for("the original tagged processado", tagged, timeout=90)
    media = done["metadata"]["borgstack_media"]
    assert media["status"] == "processed", media
    assert _file(token, media["processed_file"])["folder"] == processed_folder
    status, body = _curl(f"/assets/{media['processed_file']}", "-H", f"Authorization: Bearer {token}")
    assert status == 200 and body == b"PROCESSED:" + data, (status, body[:40])
    print(f"processed {time.monotonic() - started:.1f} s after the upload")
