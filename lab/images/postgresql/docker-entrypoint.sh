#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Entrypoint of borgstack-lab/postgresql: prepare directories as root, drop to the
# postgres user, initialise PGDATA on first start, then exec the server.
set -euo pipefail

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }

# `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`.
if [[ $# -eq 0 || "${1:0:1}" == "-" ]]; then
    set -- postgres "$@"
fi

if [[ "$1" != "postgres" ]]; then
    exec "$@"
fi

readonly socket_dir=/var/run/postgresql

# As root: own the data and socket directories (they may be fresh volumes or bind
# mounts owned by someone else), then re-run this script as postgres.
if [[ "$(id -u)" == "0" ]]; then
    mkdir -p "$PGDATA" "$socket_dir"
    if [[ "$(stat -c %u "$PGDATA")" != "$(id -u postgres)" ]]; then
        chown -R postgres:postgres "$PGDATA"
    fi
    chmod 700 "$PGDATA"
    if [[ "$(stat -c %u "$socket_dir")" != "$(id -u postgres)" ]]; then
        chown postgres:postgres "$socket_dir"
    fi
    chmod 2775 "$socket_dir"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

run_initdb_scripts() {
    local db=$1 f
    for f in /docker-entrypoint-initdb.d/*; do
        [[ -e "$f" ]] || continue
        case "$f" in
            *.sh)  log "running $f"; bash "$f" ;;
            *.sql) log "running $f"; psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$db" -f "$f" ;;
            *)     log "ignoring $f" ;;
        esac
    done
}

# POSTGRES_PASSWORD_FILE names a file holding the password (read by the postgres user), as in the official image:
# the password then never appears in the container's environment.
read_password_file() {
    if [[ -n "${POSTGRES_PASSWORD_FILE:-}" ]]; then
        if [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
            log "error: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set; set one of them."
            exit 1
        fi
        [[ -r "$POSTGRES_PASSWORD_FILE" ]] || { log "error: cannot read $POSTGRES_PASSWORD_FILE"; exit 1; }
        POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE")
    fi
}

initialise() {
    read_password_file
    if [[ -z "${POSTGRES_PASSWORD:-}" ]]; then
        log "error: $PGDATA is empty and neither POSTGRES_PASSWORD nor POSTGRES_PASSWORD_FILE is set."
        log "Set one of them (the superuser's password) to initialise the database."
        exit 1
    fi
    export POSTGRES_USER=${POSTGRES_USER:-postgres}
    local db=${POSTGRES_DB:-$POSTGRES_USER}
    local pwfile
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words on purpose
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"

    cat >> "$PGDATA/postgresql.conf" <<CONF

# Added by the borgstack-lab entrypoint
listen_addresses = '*'
password_encryption = 'scram-sha-256'
CONF
    printf '\n# Added by the borgstack-lab entrypoint\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

    # A private server (no TCP) for the database and init scripts.
    pg_ctl --pgdata="$PGDATA" --wait --silent -o "-c listen_addresses='' -c unix_socket_directories=$socket_dir" start
    if [[ "$db" != "postgres" ]]; then
        psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
            --set db="$db" <<<'CREATE DATABASE :"db";'
    fi
    run_initdb_scripts "$db"
    pg_ctl --pgdata="$PGDATA" --wait --silent -m fast stop
    log "initialised $PGDATA (superuser $POSTGRES_USER, database $db)"
}

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    initialise
fi

exec "$@"
