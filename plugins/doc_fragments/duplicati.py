# SPDX-License-Identifier: GPL-3.0-or-later
"""How the borgstack.stack Duplicati modules reach the server's REST API (module_utils/_duplicati.py): its URL on
the Docker network, the Host header it checks, and the time each request may take. Each module documents its own
credential options (the play's token, the web password)."""
from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  url:
    description: Base URL of the server, e.g. V(http://172.18.0.9:8200) (its address on the Docker network).
    type: str
    required: true
  container:
    description:
      - A running container on this host whose network namespace the module enters (C(setns), as root - it needs
        C(CAP_SYS_ADMIN)) before any request - on a Docker Swarm, Duplicati's task container, whose address on the
        overlay the host cannot reach; O(url) is then seen from inside it, e.g. V(http://127.0.0.1:8200). Found with
        C(docker container inspect) (the C(docker) CLI is needed). Without it the requests leave from the host.
    type: str
  host:
    description:
      - Host header to send (a name in the server's allowed host names). Default - the host of O(url) (an IP
        address is always allowed by Duplicati).
    type: str
  timeout:
    description: Seconds each HTTP request may take.
    type: int
    default: 30
"""
