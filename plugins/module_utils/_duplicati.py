# SPDX-License-Identifier: GPL-3.0-or-later
"""Private helpers for the ``borgstack.stack.duplicati_*`` modules: the few REST calls of Duplicati 2.1's API v1.

The play reaches Duplicati with a credential it owns: a pre-authenticated token (server option
``--webservice-pre-auth-tokens``, Duplicati/Server/WebServerLoader.cs at v2.1.1.102_canary_2025-09-23), sent as
``Authorization: PreAuth <token>`` (WebserverCore/Services/PreAuthTokenHandler.cs; the policy scheme in
WebserverCore/DuplicatiWebserver.cs picks it by the exact prefix ``PreAuth ``). The web UI's password stays the
operator's. Logging in with the password (``POST /api/v1/auth/login``, a Bearer token) remains possible for callers
that have no token.
"""
from __future__ import annotations

import json
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.borgstack.stack.plugins.module_utils._netns import enter_module_netns

# WebServerLoader.TryRunServer keeps only tokens of at least 10 characters made of ASCII letters, digits, '-' and '_'
# (the others are dropped without a word).
PRE_AUTH_TOKEN_MIN_LENGTH = 10
PRE_AUTH_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

AUTH_ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "container": {"type": "str"},
    "host": {"type": "str"},
    "token": {"type": "str", "no_log": True},
    "password": {"type": "str", "no_log": True},
    "timeout": {"type": "int", "default": 30},
}


class DuplicatiError(Exception):
    """A request failed; the message names it and the server's answer."""


def valid_pre_auth_token(token: str) -> bool:
    """Whether Duplicati 2.1.1.102 would keep ``token`` in its list of pre-authenticated tokens."""
    return len(token) >= PRE_AUTH_TOKEN_MIN_LENGTH and all(c in PRE_AUTH_TOKEN_CHARS for c in token)


class Client:
    """HTTP client of ``/api/v1/`` (WebserverCore/Endpoints/V1), authenticated by a PreAuth token or a login."""

    def __init__(self, url: str, host: str | None, timeout: int) -> None:
        self.base = url.rstrip("/") + "/api/v1/"
        self.host = host
        self.timeout = timeout
        self.authorization: str | None = None
        self.calls: list[str] = []

    def request(self, method: str, path: str, body: object = None) -> object:
        headers = {"Accept": "application/json"}
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.host:
            headers["Host"] = self.host
        if self.authorization:
            headers["Authorization"] = self.authorization
        self.calls.append(f"{method} /api/v1/{path.split('?')[0]}")
        try:
            response = open_url(self.base + path, data=data, headers=headers, method=method, timeout=self.timeout,
                                follow_redirects="none")
            text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("Error", detail)
            except (ValueError, AttributeError):
                pass
            raise DuplicatiError(f"{method} /api/v1/{path.split('?')[0]} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DuplicatiError(f"cannot reach Duplicati at {self.base}: {exc}") from exc
        return json.loads(text) if text.strip() else None

    def use_token(self, token: str) -> None:
        """Authenticate every call with the pre-authenticated ``token`` (checked by the first call)."""
        if not valid_pre_auth_token(token):
            raise DuplicatiError("the pre-authenticated token must have at least 10 characters, only ASCII letters, "
                                 "digits, '-' and '_' (Duplicati ignores any other; the secret duplicati_api_token)")
        self.authorization = f"PreAuth {token}"

    def login(self, password: str) -> None:
        try:
            answer = self.request("POST", "auth/login", {"Password": password, "RememberMe": False})
        except DuplicatiError as exc:
            if " answered 401" in str(exc):
                raise DuplicatiError("Duplicati refused the web password (the operator may have changed it in the "
                                     "UI: give the module the play's pre-authenticated token instead)") from exc
            raise
        if not isinstance(answer, dict) or not answer.get("AccessToken"):
            raise DuplicatiError("the login answer has no AccessToken")
        self.authorization = f"Bearer {answer['AccessToken']}"

    def authenticate(self, params: dict) -> None:
        """The module's credential: the token when given, else the password."""
        if params.get("token"):
            self.use_token(params["token"])
        else:
            self.login(params["password"])

    def explain_401(self, exc: DuplicatiError) -> DuplicatiError:
        """A clearer message when the server refused the token."""
        if self.authorization and self.authorization.startswith("PreAuth ") and " answered 401" in str(exc):
            return DuplicatiError(f"{exc} - Duplicati refused the play's pre-authenticated token (the secret "
                                  "duplicati_api_token, given to the server at start-up through "
                                  "DUPLICATI__WEBSERVICE_PRE_AUTH_TOKENS: rerun the play so the container is "
                                  "recreated with it)")
        return exc


def run_module(module, run) -> None:
    """Exit the module with ``run(module)``'s result, or fail with the message of a DuplicatiError it raised. With
    ``container`` (a swarm task's container on this host, whose overlay address the host cannot reach), every request
    is made from inside that container's network namespace (module_utils/_netns.py), where ``url`` is e.g.
    ``http://127.0.0.1:8200``."""
    container = module.params.get("container")
    if container:
        enter_module_netns(module, container, "container")
    try:
        result = run(module)
    except DuplicatiError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)
