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
