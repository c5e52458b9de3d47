#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The architecture's performance targets, measured against a converged lab host and printed beside the figures, with
# the machine they ran on (nproc, RAM, load). Prints figures; asserts nothing about time. docs/desempenho.md explains
# each measurement and keeps the figures.
#   scripts/benchmark-targets.sh [--host NAME] [--ip ADDRESS] [--domain DOMAIN] [--duration S] [--rate R]
#                                [--only LIST] [--no-save] [--plan]
#     --host     the lab host (a container of lab/lab.sh or of a molecule scenario; default borgstack-lab)
#     --ip       its public-looking address (default: what `lab/lab.sh address HOST` prints)
#     --domain   borgstack_domain of its inventory (default lab.borgstack.test)
#     --duration seconds of each HTTP load (default 30); --rate the webhook's requests/s (default 100)
#     --only     comma-separated subset of: webhook,caddy,directus,redis,postgresql (default all)
#     --no-save  the benchmark's workflow does not save its successful executions (n8n saves them all by default)
#     --plan     print what would be measured, with which settings, and exit (touches nothing)
# Load tools (Debian hey and wrk, installed by scripts/setup-host.sh) run on this machine against the host's public
# address, as the internet would reach it: hey sends the site's name as Host and TLS SNI; wrk (no SNI option) only
# measures Caddy's plain-HTTP static answer. The TLS certificate is checked once with curl against the lab's root CA.
# The webhook measurement imports its own workflow (webhook -> INSERT into a table of n8n's database) through n8n's
# public API with the play's API key, and removes the workflow, its executions and the table afterwards. Redis is
# measured with a temporary ACL user limited to the benchmark's key in an unused database (the stack's password is
# read on the host from the root-only file and never printed), PostgreSQL with pgbench -S on a temporary database.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ALL_MEASURES=(webhook caddy directus redis postgresql)
usage() {
  sed -n '6,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "benchmark-targets: $*" >&2; exit 2; }

# --- summaries of the load tools' raw output (also reachable as --summarize KIND FILE, for the unit tests) ---------
summarize() {  # summarize hey|pgbench|wrk|redis FILE → one line of KEY=VALUE
  python3 - "$1" "$2" <<'PY'
import csv, re, sys
kind, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8", errors="replace").read()

def pct(values, p):
    """Nearest-rank percentile of a non-empty list."""
    values = sorted(values)
    rank = max(1, -(-len(values) * p // 100))
    return values[int(rank) - 1]

if kind == "hey":
    # hey's summary: Requests/sec, the latency distribution (seconds), status codes and transport errors.
    rate = re.search(r"^\s*Requests/sec:\s+([0-9.]+)", text, re.M)
    lat = dict(re.findall(r"^\s*(\d+)% in ([0-9.]+) secs", text, re.M))
    codes = {int(c): int(n) for c, n in re.findall(r"^\s*\[(\d{3})\]\s+(\d+) responses", text, re.M)}
    block = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    transport = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", block, re.M))
    def ms(q):
        return f"{float(lat[q]) * 1000:.0f}" if q in lat else "-"
    other = ",".join(f"{c}:{n}" for c, n in sorted(codes.items()) if not 200 <= c < 300) or "0"
    print(f"requests={sum(codes.values()) + transport} rate={float(rate.group(1)) if rate else 0:.1f} "
          f"p50={ms('50')} p95={ms('95')} p99={ms('99')} non2xx={other} transport_errors={transport}")
elif kind == "pgbench":
    # pgbench -l: client_id transaction_no time_us script_no time_epoch time_us_part; plus its report on stdout
    times = [int(line.split()[2]) / 1000 for line in text.splitlines()
             if re.match(r"^\d+ \d+ \d+ \d+ \d+ \d+", line)]
    tps = re.search(r"^tps = ([0-9.]+)", text, re.M)
    if not times:
        print("queries=0 tps=- p50=- p95=- p99=-")
        sys.exit(0)
    print(f"queries={len(times)} tps={float(tps.group(1)) if tps else 0:.0f} "
          f"p50={pct(times, 50):.2f} p95={pct(times, 95):.2f} p99={pct(times, 99):.2f}")
elif kind == "wrk":
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    codes = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs = re.search(r"Socket errors: (.*)", text)
    p = {q: re.search(rf"^\s+{q}%\s+([0-9.]+)(us|ms|s)", text, re.M) for q in ("50", "99")}
    def ms(m):
        if not m:
            return "-"
        return f"{float(m.group(1)) * {'us': 0.001, 'ms': 1, 's': 1000}[m.group(2)]:.1f}"
    print(f"rate={float(rate.group(1)) if rate else 0:.0f} p50={ms(p['50'])} p99={ms(p['99'])} "
          f"bad={codes.group(1) if codes else 0} socket_errors={(errs.group(1).replace(' ', '') if errs else 'none')}")
elif kind == "redis":
    # redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95…","p99…","max…"
    out = []
    for row in csv.reader(text.splitlines()):
        if row and row[0] != "test" and len(row) >= 7:
            out.append(f"{row[0].lower()}={float(row[1]):.0f}/p99={row[6]}")
    print(" ".join(out) if out else "none")
else:
    sys.exit(f"unknown summary kind {kind}")
PY
}

HOST=borgstack-lab IP="" DOMAIN=lab.borgstack.test DURATION=30 RATE=100 ONLY="" PLAN=false SAVE=all
while (($#)); do
  case $1 in
    --host) HOST=${2:-}; [[ $HOST =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || die "--host needs a container name"; shift 2 ;;
    --ip) IP=${2:-}; [[ $IP =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "--ip needs an IPv4 address"; shift 2 ;;
    --domain) DOMAIN=${2:-}; [[ $DOMAIN =~ ^[a-z0-9.-]+\.[a-z]+$ ]] || die "--domain needs a domain name"; shift 2 ;;
    --duration) DURATION=${2:-}; [[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 5 && DURATION <= 600)) \
                  || die "--duration needs seconds, 5..600"; shift 2 ;;
    --rate) RATE=${2:-}; [[ $RATE =~ ^[0-9]+$ ]] && ((RATE >= 10 && RATE <= 5000 && RATE % 10 == 0)) \
              || die "--rate needs requests/s, a multiple of 10 in 10..5000"; shift 2 ;;
    --only) ONLY=${2:-}; [[ $ONLY =~ ^[a-z,]+$ ]] || die "--only needs a list"; shift 2 ;;
    --no-save) SAVE=none; shift ;;
    --plan) PLAN=true; shift ;;
    --summarize) (($# == 3)) || die "--summarize KIND FILE"; summarize "$2" "$3"; exit ;;
    -h|--help) usage ;;
    *) echo "benchmark-targets: unknown argument '$1'" >&2; usage ;;
  esac
done
MEASURES=()
if [ -n "$ONLY" ]; then
  IFS=, read -r -a wanted <<<"$ONLY"
  for m in "${wanted[@]}"; do
    [[ " ${ALL_MEASURES[*]} " == *" $m "* ]] || die "--only: '$m' is not one of ${ALL_MEASURES[*]}"
    MEASURES+=("$m")
  done
else
  MEASURES=("${ALL_MEASURES[@]}")
fi
wants() { [[ " ${MEASURES[*]} " == *" $1 "* ]]; }
# hey's fixed rate is per worker (-q); workers = rate/2 keeps 2 req/s each, so up to 500 ms per answer still holds
# the rate (a slower answer lowers it: the achieved rate is printed).
WORKERS=$((RATE / 2))

if $PLAN; then
  echo "host=$HOST ip=${IP:-(lab/lab.sh address $HOST)} domain=$DOMAIN duration=${DURATION}s rate=${RATE}/s" \
       "workers=$WORKERS save_success=$SAVE measures=${MEASURES[*]}"
  exit 0
fi

for tool in hey wrk curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup-host.sh"
done
docker inspect "$HOST" >/dev/null 2>&1 || die "no lab host named $HOST (lab/lab.sh status)"
if [ -z "$IP" ]; then
  IP=$("$ROOT/lab/lab.sh" address "$HOST" | grep -Eo '[0-9]+(\.[0-9]+){3}' | head -1)
  [ -n "$IP" ] || die "cannot find $HOST's public address: give --ip"
fi

on_host() { docker exec -i "$HOST" "$@"; }
psql_n8n() { on_host docker exec -i borgstack-postgresql psql -U postgres -d n8n -v ON_ERROR_STOP=1 -Atq "$@"; }
work=$(mktemp -d)
chmod 700 "$work"
cleanups=()
cleanup() {
  local i
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[i]}" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

on_host cat /opt/borgstack/services/caddy/root.crt >"$work/root.crt"
curl_site() {  # curl_site NAME PATH ARGS… → verifies the certificate with the lab's root CA
  local name=$1 path=$2
  shift 2
  curl --silent --show-error --max-time 20 --cacert "$work/root.crt" \
    --resolve "$name.$DOMAIN:443:$IP" "$@" "https://$name.$DOMAIN$path"
}

results=()
row() { results+=("$(printf '%-34s %-30s %s' "$1" "$2" "$3")"); }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

cpu_ticks() {  # cpu_ticks CONTAINER → CPU time (1/100 s) its live processes have used (user + system)
  on_host docker exec "$1" sh -c 'cat /proc/[0-9]*/stat 2>/dev/null' | awk '{ s += $14 + $15 } END { print s + 0 }'
}

# --- n8n webhook that writes to PostgreSQL, through Caddy ---------------------------------------------------------
bench_webhook() {
  local path key id answer
  if [ "$(psql_n8n -c "SELECT count(*) FROM credentials_entity WHERE id = 'BorgStackCrPg001'")" != 1 ]; then
    row "n8n webhook -> PostgreSQL" "p95 < 500 ms at ${RATE} req/s" \
      "not measured: the play's PostgreSQL credential (BorgStackCrPg001) is missing"
    return
  fi
  path="borgstack-bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  # The table the workflow writes to, owned by n8n's database owner (the credential's login).
  psql_n8n -c "CREATE TABLE IF NOT EXISTS borgstack_bench (id bigserial PRIMARY KEY,
                 received timestamptz NOT NULL DEFAULT now(), body jsonb);
               DO \$\$ BEGIN EXECUTE format('ALTER TABLE borgstack_bench OWNER TO %I',
                 (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database())); END \$\$;"
  cleanups+=("psql_n8n -c 'DROP TABLE IF EXISTS borgstack_bench'")
  # The play's own public-API key (roles/n8n/files/workflows_sync.js), into a 0600 header file: never printed.
  key=$(psql_n8n -c "SELECT \"apiKey\" FROM user_api_keys WHERE id = 'BorgStackPlayApiKey'")
  [ -n "$key" ] || { row "n8n webhook -> PostgreSQL" "" "not measured: the play's API key is missing"; return; }
  printf 'X-N8N-API-KEY: %s\n' "$key" >"$work/api-header"
  unset key
  python3 - "$path" "$SAVE" >"$work/workflow.json" <<'PY'
import json, sys, uuid
path, save = sys.argv[1], sys.argv[2]
print(json.dumps({
    "name": f"BorgStack benchmark ({path}, temporary)",
    "nodes": [
        {"id": str(uuid.uuid4()), "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
         "position": [0, 0], "webhookId": str(uuid.uuid4()),
         "parameters": {"httpMethod": "POST", "path": path, "responseMode": "lastNode", "options": {}}},
        {"id": str(uuid.uuid4()), "name": "Insert", "type": "n8n-nodes-base.postgres", "typeVersion": 2.6,
         "position": [240, 0],
         "parameters": {"operation": "executeQuery",
                        "query": "INSERT INTO borgstack_bench (body) VALUES ($1::jsonb) RETURNING id",
                        "options": {"queryReplacement": "={{ JSON.stringify($json.body) }}"}},
         "credentials": {"postgres": {"id": "BorgStackCrPg001", "name": "BorgStack n8n database"}}},
    ],
    "connections": {"Webhook": {"main": [[{"node": "Insert", "type": "main", "index": 0}]]}},
    "settings": {"executionOrder": "v1", "saveDataSuccessExecution": save},
}))
PY
  answer=$(curl_site n8n /api/v1/workflows -H @"$work/api-header" -H 'Content-Type: application/json' \
    --data @"$work/workflow.json")
  id=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("id") or "")' <<<"$answer" 2>/dev/null || true)
  [ -n "$id" ] || { row "n8n webhook -> PostgreSQL" "" "not measured: n8n refused the workflow: ${answer:0:200}"; return; }
  cleanups+=("curl_site n8n /api/v1/workflows/$id -X DELETE -H @$work/api-header")
  curl_site n8n "/api/v1/workflows/$id/activate" -X POST -H @"$work/api-header" -o /dev/null --fail
  # One request at a time first: the latency with no queue in front of n8n (the floor the load adds to).
  local single=() i
  for i in 1 2 3 4 5; do
    single+=("$(curl_site n8n "/webhook/$path" -o /dev/null --fail -H 'Content-Type: application/json' \
      --data '{"single":true}' --write-out '%{time_total}' | awk '{printf "%.0f", $1 * 1000}')")
  done
  # Warm-up: the first answers (route lookup, connection pool, JIT) are not what the target is about.
  hey -z 5s -c 5 -q 2 -m POST -T application/json -d '{"warmup":true}' -host "n8n.$DOMAIN" \
    "https://$IP/webhook/$path" >/dev/null
  local c before=() after=() cost=()
  for c in n8n postgresql caddy; do before+=("$(cpu_ticks "borgstack-$c")"); done
  hey -z "${DURATION}s" -c "$WORKERS" -q 2 -m POST -T application/json -d '{"bench":true,"text":"ola"}' \
    -host "n8n.$DOMAIN" "https://$IP/webhook/$path" >"$work/webhook.txt"
  for c in n8n postgresql caddy; do after+=("$(cpu_ticks "borgstack-$c")"); done
  local s rows n
  s=$(summarize hey "$work/webhook.txt")
  n=$(grep -Eo '^requests=[0-9]+' <<<"$s" | cut -d= -f2)
  for i in 0 1 2; do cost+=("$(awk -v b="${before[i]}" -v a="${after[i]}" -v n="$n" \
    'BEGIN { printf "%.0f", (n > 0 ? (a - b) * 10 / n : 0) }')"); done
  rows=$(psql_n8n -c "SELECT count(*) FROM borgstack_bench")
  row "n8n webhook -> PostgreSQL" "p95 < 500 ms at ${RATE} req/s" "$s rows_written=$rows save_success=$SAVE"
  row "n8n webhook, one at a time" "" "ms: ${single[*]}"
  row "  CPU per webhook request (ms)" "" "n8n=${cost[0]} postgresql=${cost[1]} caddy=${cost[2]}"
}

# --- Caddy's own static answer (HTTP -> HTTPS redirect), and a proxied one over TLS -------------------------------
bench_caddy() {
  wrk -t2 -c64 -d"${DURATION}s" --latency -H "Host: n8n.$DOMAIN" "http://$IP/" >"$work/caddy.txt"
  row "Caddy static answer (HTTP 308)" "> 1000 req/s" "$(summarize wrk "$work/caddy.txt")"
}

# --- Directus API, through Caddy over TLS ---------------------------------------------------------------------------
bench_directus() {
  # 25 req/s from one client: Directus' rate limiter (on in the stack, 50 requests/s per client address by default)
  # answers 429 at 50 and the figure would measure the limiter.
  local endpoint
  curl_site directus /server/ping -o /dev/null --fail
  for endpoint in /server/ping /server/health; do
    hey -z "${DURATION}s" -c 5 -q 5 -host "directus.$DOMAIN" "https://$IP$endpoint" >"$work/directus.txt"
    row "Directus GET $endpoint (25 req/s)" "p95 < 200 ms" "$(summarize hey "$work/directus.txt")"
  done
}

# --- Redis --------------------------------------------------------------------------------------------------------
bench_redis() {
  # A throwaway ACL user (random password made inside the container, dropped at the end) that may only GET/SET the
  # benchmark's key in database 15, which no service uses (the registry numbers them from 0): the stack's own
  # password stays in its root-only file and redis-benchmark's command line shows only the throwaway one.
  # shellcheck disable=SC2016
  local script='
    set -eu
    export REDISCLI_AUTH="$(awk "\$1 == \"requirepass\" {print \$2}" /run/secrets/redis-auth.conf)"
    pw=$(cat /proc/sys/kernel/random/uuid)
    trap "redis-cli --no-auth-warning ACL DELUSER borgstack-bench >/dev/null; redis-cli --no-auth-warning -n 15 DEL key:__rand_int__ >/dev/null" EXIT
    redis-cli --no-auth-warning ACL SETUSER borgstack-bench reset on ">$pw" "~key:*" -@all +get +set +select +ping +auth +hello >/dev/null
    REDISCLI_AUTH= redis-benchmark --user borgstack-bench -a "$pw" --dbnum 15 -t set,get -n "$1" -c 50 --csv 2>/dev/null
    REDISCLI_AUTH= redis-benchmark --user borgstack-bench -a "$pw" --dbnum 15 -t set,get -n "$1" -c 50 -P 16 --csv 2>/dev/null | sed "s/^\"\(SET\|GET\)\"/\"\1_pipelined_16\"/"'
  on_host docker exec borgstack-redis sh -c "$script" sh 200000 >"$work/redis.csv"
  row "Redis SET/GET ops/s (50 clients)" "> 10000 ops/s" "$(summarize redis "$work/redis.csv")"
}

# --- PostgreSQL simple query --------------------------------------------------------------------------------------
bench_postgresql() {
  local pg=(on_host docker exec -i borgstack-postgresql)
  "${pg[@]}" dropdb -U postgres --if-exists borgstack_bench
  cleanups+=("on_host docker exec borgstack-postgresql dropdb -U postgres --if-exists borgstack_bench")
  "${pg[@]}" createdb -U postgres borgstack_bench
  "${pg[@]}" pgbench -U postgres -i -q -s 1 borgstack_bench >/dev/null 2>&1
  # -S: one primary-key SELECT per transaction; -l logs each one's latency (µs) for the percentiles.
  "${pg[@]}" sh -c 'cd /tmp && rm -f borgstack-bench.* &&
    pgbench -U postgres -S -n -c 4 -j 2 -T "$1" -l --log-prefix=borgstack-bench borgstack_bench 2>/dev/null &&
    cat borgstack-bench.*; rm -f borgstack-bench.*' sh "$DURATION" >"$work/pgbench.txt"
  row "PostgreSQL SELECT by key (pgbench -S)" "p95 < 50 ms (queries)" "$(summarize pgbench "$work/pgbench.txt")"
}

curl_site n8n /healthz -o /dev/null --fail \
  || die "https://n8n.$DOMAIN/healthz does not answer at $IP with a certificate of the lab's root CA"
for m in "${MEASURES[@]}"; do
  echo "benchmark-targets: measuring $m …" >&2
  "bench_$m"
done

mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
echo "machine: $(nproc) CPUs, $mem RAM, load before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)" \
     "($(uptime | sed 's/^ *//'))"
echo "lab host: $HOST at $IP, domain $DOMAIN; each HTTP load ${DURATION} s; load tools on this same machine"
echo "times in ms; rate in requests/s; errors = answers other than 2xx (hey) or non-2xx/3xx (wrk)"
printf '%-34s %-30s %s\n' "measure" "target" "measured"
printf '%s\n' "${results[@]}"
