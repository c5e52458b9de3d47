#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Wall-clock comparison: provisioning 4 application tenants (owner role + password, database, 4 extensions,
# CONNECT/TEMPORARY revoked from PUBLIC, schema public for the owner) the way roles/postgresql does - one
# borgstack.stack.postgresql_tenant call with every tenant (tests/benchmark/ours.yml) - versus community.postgresql
# (postgresql_user + postgresql_db + postgresql_ext + postgresql_privs + postgresql_schema, 32 module calls:
# tests/benchmark/community.yml). Each tool gets a first run and a no-op run against a throwaway container of the
# lab PostgreSQL image. The two tools use their own tenant names (ours_*, comm_*) in the same cluster, so both start
# from nothing. Prints figures and the machine's load (figures taken on a loaded machine are indicative only); no
# pass/fail on timing.
#
# Usage: scripts/benchmark-tenants.sh            (env BORGSTACK_POSTGRESQL_IMAGE overrides the image)
set -euo pipefail

readonly image=${BORGSTACK_POSTGRESQL_IMAGE:-borgstack-lab/postgresql:17}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo_root
readonly container="borgstack-bench-pg-$$"
python_bin=$(command -v python3)
readonly python_bin

die() { printf 'benchmark-tenants: %s\n' "$*" >&2; exit 1; }

docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing; build it with lab/build-images.sh"

workdir=$(mktemp -d)
cleanup() {
    docker rm --force --volumes "$container" >/dev/null 2>&1 || true
    rm -rf "$workdir"
}
trap cleanup EXIT

socket_dir="$workdir/sock"
mkdir "$socket_dir"
chown 999:999 "$socket_dir"

superuser_password=$("$python_bin" -c 'import secrets; print(secrets.token_urlsafe(24))')
docker run --detach --name "$container" --env "POSTGRES_PASSWORD=$superuser_password" \
    --volume "$socket_dir:/var/run/postgresql" "$image" >/dev/null

# The entrypoint's initdb server listens on the socket only; the final server also listens on TCP.
for _ in $(seq 1 120); do
    if docker exec "$container" pg_isready --quiet --host 127.0.0.1 --username postgres; then
        break
    fi
    [[ "$(docker inspect --format '{{.State.Running}}' "$container")" == "true" ]] \
        || die "container stopped: $(docker logs "$container" 2>&1 | tail -5)"
    sleep 0.5
done
docker exec "$container" pg_isready --quiet --host 127.0.0.1 --username postgres || die "PostgreSQL not ready"

# Tenants and their random passwords, readable by this user only.
umask 077
"$python_bin" - "$workdir/vars.json" "$socket_dir" <<'PY'
import json, secrets, sys
path, socket_dir = sys.argv[1:3]
tenants = [{"name": name, "password": secrets.token_urlsafe(18)} for name in ("n8n", "chatwoot", "evolution", "directus")]
with open(path, "w", encoding="utf-8") as handle:
    json.dump({"bench_socket_dir": socket_dir,
               "bench_extensions": ["vector", "pg_trgm", "pgcrypto", "pg_stat_statements"],
               "bench_tenants": tenants}, handle)
PY

declare -A seconds changed
run() {
    local key=$1 playbook=$2 start end log
    log="$workdir/$key.log"
    start=$(date +%s.%N)
    if ! (cd "$repo_root" && ANSIBLE_NOCOLOR=1 ansible-playbook --inventory localhost, \
            --extra-vars "ansible_python_interpreter=$python_bin" --extra-vars "@$workdir/vars.json" \
            "tests/benchmark/$playbook") >"$log" 2>&1; then
        cat "$log" >&2
        die "$playbook failed ($key)"
    fi
    end=$(date +%s.%N)
    seconds[$key]=$("$python_bin" -c "print(f'{$end - $start:.2f}')")
    changed[$key]=$(sed -n 's/^localhost *:.* changed=\([0-9]*\).*/\1/p' "$log")
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run ours_first ours.yml
run ours_noop ours.yml
run comm_first community.yml
run comm_noop community.yml

ratio() { "$python_bin" -c "print(f'{$1 / $2:.1f}x')"; }
printf '\n%-5s | %-32s | %-32s | %s\n' "run" "borgstack.stack (1 module call)" "community.postgresql (32 calls)" \
    "community/ours"
printf '%s\n' "------+----------------------------------+----------------------------------+---------------"
for phase in first noop; do
    printf '%-5s | %7ss  (changed tasks: %2s)    | %7ss  (changed tasks: %2s)    | %s\n' "$phase" \
        "${seconds[ours_$phase]}" "${changed[ours_$phase]}" "${seconds[comm_$phase]}" "${changed[comm_$phase]}" \
        "$(ratio "${seconds[comm_$phase]}" "${seconds[ours_$phase]}")"
done
printf '\nImage %s, 4 tenants x 4 extensions; wall-clock seconds of one ansible-playbook run each.\n' "$image"
printf '"changed tasks" counts tasks (not loop items) in the play recap; a no-op run must show 0.\n'
printf 'Load average (1, 5, 15 min) before: %s, after: %s on %s CPUs; other work on the machine slows both tools.\n' \
    "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
