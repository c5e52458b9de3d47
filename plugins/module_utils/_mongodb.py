# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared pieces of the BorgStack MongoDB modules: connection options and a thin pymongo wrapper.

All pymongo calls live in ``MongoAdminClient``, so module logic can be tested with a fake object that has
the same methods. pymongo errors leave this file as ``MongoCommandError`` (with the server's error code),
so callers never import pymongo.
"""
from __future__ import annotations

import traceback
from typing import Any

try:
    from pymongo import MongoClient
    from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
except ImportError:
    HAS_PYMONGO = False
    PYMONGO_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PYMONGO = True
    PYMONGO_IMPORT_ERROR = None

# MongoDB server error codes used by the modules.
ERROR_USER_NOT_FOUND = 11
ERROR_UNAUTHORIZED = 13
ERROR_AUTHENTICATION_FAILED = 18

APP_NAME = "borgstack.stack"


class MongoCommandError(Exception):
    """A MongoDB command or connection failed. ``code`` is the server error code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def mongodb_common_argument_spec() -> dict[str, dict[str, Any]]:
    """Connection options shared by the MongoDB modules (documented in each module)."""
    return dict(
        login_host=dict(type="str", default="localhost"),
        login_container=dict(type="str"),
        login_port=dict(type="int", default=27017),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_database=dict(type="str", default="admin"),
        auth_mechanism=dict(type="str", choices=["SCRAM-SHA-256", "SCRAM-SHA-1"]),
        tls=dict(type="bool", default=False),
        tls_ca_file=dict(type="path"),
        tls_certificate_key_file=dict(type="path"),
        tls_allow_invalid_certificates=dict(type="bool", default=False),
        connect_timeout=dict(type="int", default=10),
    )


MONGODB_REQUIRED_TOGETHER = [["login_user", "login_password"]]


def connection_kwargs(
    params: dict[str, Any],
    username: str | None = None,
    password: str | None = None,
    auth_source: str | None = None,
    auth_mechanism: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``MongoClient`` from the module parameters.

    Without ``username`` the login options are used; with it, the given user authenticates against
    ``auth_source`` (the check used by ``can_authenticate``). A TLS file implies TLS.
    """
    timeout_ms = int(params.get("connect_timeout") or 10) * 1000
    kwargs: dict[str, Any] = dict(
        host=params.get("login_host") or "localhost",
        port=int(params.get("login_port") or 27017),
        appname=APP_NAME,
        connectTimeoutMS=timeout_ms,
        serverSelectionTimeoutMS=timeout_ms,
    )
    if username is None:
        username = params.get("login_user")
        password = params.get("login_password")
        auth_source = params.get("login_database") or "admin"
        auth_mechanism = params.get("auth_mechanism")
    if username:
        kwargs.update(username=username, password=password, authSource=auth_source or "admin")
        if auth_mechanism:
            kwargs["authMechanism"] = auth_mechanism

    ca_file = params.get("tls_ca_file")
    cert_key_file = params.get("tls_certificate_key_file")
    if params.get("tls") or ca_file or cert_key_file:
        kwargs["tls"] = True
        if ca_file:
            kwargs["tlsCAFile"] = ca_file
        if cert_key_file:
            kwargs["tlsCertificateKeyFile"] = cert_key_file
        if params.get("tls_allow_invalid_certificates"):
            kwargs["tlsAllowInvalidCertificates"] = True
    return kwargs


def describe_error(exc: Exception, params: dict[str, Any]) -> str:
    """A short message for a pymongo error; connection failures name the server and the options to check."""
    if HAS_PYMONGO and isinstance(exc, ConnectionFailure):
        # Server selection errors append the whole topology description; the first part says enough.
        reason = str(exc).split(", Timeout:", 1)[0]
        return (f"cannot reach MongoDB at {params.get('login_host')}:{params.get('login_port')} ({reason}); "
                f"check login_host, login_port and the tls options")
    return str(exc)


class MongoAdminClient:
    """The only place that talks to MongoDB. One method per command the modules need."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._params = params
        self._client: Any = None

    def _db(self, name: str) -> Any:
        if self._client is None:
            self._client = MongoClient(**connection_kwargs(self._params))
        return self._client[name]

    def _command(self, db: str, command: dict[str, Any]) -> dict[str, Any]:
        verb = next(iter(command))
        try:
            return self._db(db).command(command)
        except OperationFailure as exc:
            details = exc.details or {}
            raise MongoCommandError(f"{verb} on {db} failed: {details.get('errmsg') or exc}", code=exc.code) from None
        except PyMongoError as exc:
            raise MongoCommandError(f"{verb} on {db} failed: {describe_error(exc, self._params)}") from None

    def users_info(self, db: str, name: str, show_credentials: bool = True) -> dict[str, Any] | None:
        """The ``usersInfo`` document of ``name`` in ``db`` (with ``credentials`` if asked), or None."""
        reply = self._command(
            db, {"usersInfo": {"user": name, "db": db}, "showCredentials": bool(show_credentials)}
        )
        users = reply.get("users") or []
        return dict(users[0]) if users else None

    def create_user(
        self, db: str, name: str, password: str, roles: list[dict[str, str]], mechanisms: list[str]
    ) -> None:
        self._command(db, {"createUser": name, "pwd": password, "roles": roles, "mechanisms": mechanisms})

    def update_user(
        self,
        db: str,
        name: str,
        password: str | None = None,
        roles: list[dict[str, str]] | None = None,
        mechanisms: list[str] | None = None,
    ) -> None:
        command: dict[str, Any] = {"updateUser": name}
        if password is not None:
            command["pwd"] = password
        if roles is not None:
            command["roles"] = roles
        if mechanisms is not None:
            command["mechanisms"] = mechanisms
        self._command(db, command)

    def drop_user(self, db: str, name: str) -> None:
        self._command(db, {"dropUser": name})

    def can_authenticate(self, db: str, user: str, password: str, mechanism: str | None = None) -> bool:
        """Whether ``user``/``password`` can log in to ``db``, tried with a fresh connection.

        The fallback when stored credentials are not readable. Only an authentication failure answers
        False; any other error (server unreachable, TLS) raises MongoCommandError.
        """
        probe = MongoClient(
            **connection_kwargs(self._params, username=user, password=password, auth_source=db,
                                auth_mechanism=mechanism)
        )
        try:
            probe[db].command("ping")
        except OperationFailure as exc:
            if exc.code == ERROR_AUTHENTICATION_FAILED:
                return False
            raise MongoCommandError(
                f"authentication check for {user} on {db} failed: {exc}", code=exc.code
            ) from None
        except PyMongoError as exc:
            raise MongoCommandError(
                f"authentication check for {user} on {db} failed: {describe_error(exc, self._params)}"
            ) from None
        finally:
            probe.close()
        return True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
