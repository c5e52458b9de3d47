#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Requests lost at the proxy while n8n is updated: a bounded loop of webhook requests through Caddy (from the public
# side, the way the internet reaches the lab host) runs while `ansible-playbook site.yml --tags n8n` changes n8n's
# image - the lab build re-tagged with another label (borgstack-lab/n8n:<version>-bench, built in the lab host's
# engine from a one-line Dockerfile) - and then changes it back. Prints the requests sent and failed (target: 0
# failed) with the slowest answer, and the time each update took. Asserts nothing about time.
#
#   scripts/benchmark-update.sh [--inventory DIR] [--host NAME] [--workers N] [--requests N]
#
# Defaults: the lab inventory (inventories/lab, host borgstack-lab, its container and public address read from the
# inventory), 4 concurrent clients, at most 3000 requests per update. The lab stack must be converged first
# (scripts/lab-up.sh). The webhook is POST /webhook/borgstack/replay of the shipped customer-service workflows
# (n8n_customer_service_workflows: true in the lab): through Caddy it answers at once and does nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/collections" ANSIBLE_FORCE_COLOR=0
inventory=inventories/lab host=borgstack-lab workers=4 requests=3000
while [ $# -gt 0 ]; do
  case $1 in
    --inventory) inventory=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done

vars=$(ansible-inventory -i "$inventory" --host "$host")
get() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$vars" "$1"; }
lab=$(get ansible_host); lab=${lab:-$host}
ip=$(get lab_public_ip); ip=${ip:-$(docker inspect -f '{{(index .NetworkSettings.Networks "borgstack-lab-public").IPAddress}}' "$lab")}
domain=$(get borgstack_domain)
# The inventory's services with n8n's image replaced (-e replaces the whole dict, so every other key is kept).
services_with() {
  python3 - "$inventory" "$1" <<'PY'
import json, sys, yaml
from pathlib import Path
services = {}
for path in sorted(Path(sys.argv[1], "group_vars").rglob("*.yml")):
    services.update((yaml.safe_load(path.read_text()) or {}).get("borgstack_services") or {})
services.setdefault("n8n", {})["image"] = sys.argv[2]
print(json.dumps({"borgstack_services": services}))
PY
}

# n8n's image in the inventory (else the registry's default).
base=$(python3 - "$inventory" <<'PY'
import sys, yaml
from pathlib import Path
for path in sorted(Path(sys.argv[1], "group_vars").rglob("*.yml")):
    image = ((yaml.safe_load(path.read_text()) or {}).get("borgstack_services") or {}).get("n8n", {}).get("image")
    if image:
        print(image)
        break
PY
)
[ -n "$base" ] || base=$(grep -A6 '^  n8n:' playbooks/group_vars/all/services.yml | sed -n 's/^ *image: //p' | head -1)
bench="${base}-bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

running=$(docker exec "$lab" docker inspect -f '{{.Config.Image}}' borgstack-n8n)
[ "$running" = "$base" ] || { echo "benchmark: n8n runs $running, not the inventory's $base: converge first" >&2; exit 1; }
# The "new version": the same build with another label, so another image id and another reference.
printf 'FROM %s\nLABEL org.borgstack.benchmark="update %s"\n' "$base" "$(date -u +%FT%TZ)" \
  | docker exec -i "$lab" docker build --quiet --tag "$bench" - >/dev/null
docker exec "$lab" cat /opt/borgstack/services/caddy/root.crt >"$work/root.crt"

measure() {  # measure LABEL IMAGE: the request loop around one `--tags n8n` run that sets n8n's image to IMAGE
  local label=$1 image=$2
  services_with "$image" >"$work/extra.json"
  python3 - "$work" "$label" "$ip" "n8n.$domain" "$workers" "$requests" \
    ansible-playbook site.yml -i "$inventory" --limit "$host" --tags n8n -e "@$work/extra.json" <<'PY'
import http.client, json, re, socket, ssl, subprocess, sys, threading, time
work, label, ip, hostname, workers, limit = sys.argv[1:7]
log_path = f"{work}/{re.sub('[^A-Za-z0-9.-]+', '_', label)}.log"
workers, limit = int(workers), int(limit)
command = sys.argv[7:]
context = ssl.create_default_context(cafile=f"{work}/root.crt")

class Connection(http.client.HTTPSConnection):
    """HTTPS to the lab host's public address with the site's name (SNI and certificate check): curl --resolve."""
    def connect(self):
        self.sock = self._context.wrap_socket(socket.create_connection((ip, 443), self.timeout),
                                              server_hostname=self.host)

lock, stop = threading.Lock(), threading.Event()
results = []  # (status or error, seconds)

def client():
    while not stop.is_set():
        with lock:
            if len(results) >= limit:
                return
        started = time.monotonic()
        try:
            conn = Connection(hostname, 443, context=context, timeout=150)
            conn.request("POST", "/webhook/borgstack/replay", body=b"{}",
                         headers={"Content-Type": "application/json", "Connection": "close"})
            answer = conn.getresponse()
            answer.read()
            outcome = answer.status
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
        with lock:
            results.append((outcome, time.monotonic() - started))

threads = [threading.Thread(target=client, daemon=True) for _ in range(workers)]
for thread in threads:
    thread.start()
time.sleep(3)  # requests already flowing before the update starts
started = time.monotonic()
with open(log_path, "w") as log:
    rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
took = time.monotonic() - started
time.sleep(5)  # and after it ended
stop.set()
for thread in threads:
    thread.join()
failed = [r for r in results if not (isinstance(r[0], int) and 200 <= r[0] < 300)]
kinds = {}
for outcome, _secs in failed:
    kinds[str(outcome)] = kinds.get(str(outcome), 0) + 1
slowest = max((secs for _o, secs in results), default=0.0)
recap = [line for line in open(log_path) if " changed=" in line]
print(f"{label:<28} playbook rc={rc} in {took:6.1f} s ({recap[-1].split(':', 1)[1].split()[1] if recap else '?'})  "
      f"requests sent={len(results)} failed={len(failed)}{' ' + json.dumps(kinds) if kinds else ''}  "
      f"slowest answer={slowest:.1f} s")
if rc != 0:
    print(open(log_path).read()[-3000:], file=sys.stderr)
sys.exit(rc)
PY
}

echo "n8n update through Caddy on $host ($ip), $workers clients, POST https://n8n.$domain/webhook/borgstack/replay"
echo "target: failed=0"
measure "update to $bench" "$bench"
measure "update back to $base" "$base"
docker exec "$lab" docker image rm "$bench" >/dev/null
