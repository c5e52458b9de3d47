# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared documentation of the PostgreSQL login options used by borgstack.stack PostgreSQL modules."""
from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  login_unix_socket:
    description:
      - Directory that holds the server's Unix socket (for example V(/var/run/postgresql), or a host directory
        bind-mounted over the container's socket directory).
      - Preferred on the database host itself; mutually exclusive with O(login_host).
      - When neither O(login_unix_socket) nor O(login_host) is set, libpq's default socket directory is used.
    type: path
  login_host:
    description:
      - Host name or IP address of the server, for a TCP connection.
      - Mutually exclusive with O(login_unix_socket).
    type: str
  login_port:
    description:
      - TCP port of the server; with a Unix socket it selects the socket file (C(.s.PGSQL.<port>)).
    type: int
    default: 5432
  login_user:
    description:
      - Role the module connects as. It must be a superuser, because the module reads C(pg_authid) to check
        passwords and creates extensions that only a superuser may create.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Not needed over a Unix socket with C(peer) or C(trust) authentication.
    type: str
  login_db:
    description:
      - Maintenance database the module connects to for cluster-wide work (roles, databases).
    type: str
    default: postgres
  connect_timeout:
    description:
      - Seconds to wait for a connection before failing.
    type: int
    default: 10
requirements:
  - psycopg 3 (Python package C(psycopg); Debian package C(python3-psycopg)) on the managed node.
"""
