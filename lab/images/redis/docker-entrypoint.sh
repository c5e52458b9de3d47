#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Entrypoint of borgstack-lab/redis: run redis-server as the redis user.
set -euo pipefail

# `docker run IMAGE --port 7000` or `docker run IMAGE /path/redis.conf` mean redis-server.
if [[ $# -eq 0 || "${1:0:1}" == "-" || "$1" == *.conf ]]; then
    set -- redis-server "$@"
fi

if [[ "$1" != "redis-server" ]]; then
    exec "$@"
fi

if [[ "$(id -u)" == "0" ]]; then
    if [[ "$(stat -c %u /data)" != "$(id -u redis)" ]]; then
        chown -R redis:redis /data
    fi
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Protected mode off by default, as in the official image: unless an argument or the
# config file given as first argument says otherwise.
protected_set=""
for arg in "${@:2}"; do
    [[ "$arg" == *protected-mode* ]] && protected_set=1
done
if [[ $# -ge 2 && -f "$2" ]] && grep -Eq '^[[:space:]]*protected-mode[[:space:]]' "$2"; then
    protected_set=1
fi
if [[ -z "$protected_set" ]]; then
    set -- "$@" --protected-mode no
fi

exec "$@"
