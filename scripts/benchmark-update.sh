#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Requests lost at the proxy while n8n is updated: a bounded loop of webhook requests through Caddy (from the public
# side, the way the internet reaches the lab host) runs while `ansible-playbook site.yml --tags n8n` changes n8n's
# image - the lab build re-tagged with another label (borgstack-lab/n8n:<version>-bench, built in the lab host's
# engine from a one-line Dockerfile) - and then changes it back. Prints the requests sent and failed (target: 0
# failed) with the slowest answer, and the time each update took. Asserts nothing about time.
#
#   scripts/benchmark-update.sh [--inventory DIR] [--host NAME] [--workers N] [--requests N]
#   scripts/benchmark-update.sh --inventory DIR --node-loss [--node NAME] [--workers N]
#
# Defaults: the lab inventory (inventories/lab, host borgstack-lab, its container and public address read from the
# inventory), 4 concurrent clients, at most 3000 requests per update. The lab stack must be converged first
# (scripts/lab-up.sh). The webhook is POST /webhook/borgstack/replay of the shipped customer-service workflows
# (n8n_customer_service_workflows: true in the lab): through Caddy it answers at once and does nothing.
# A cluster (two or more hosts in the inventory's borgstack group, e.g. molecule/cluster's inventory directory):
# the requests go to the edge node (the first host with borgstack_node_edge; --host is ignored), the "new version" is
# built on every node, the playbook runs on all hosts (a swarm update is one deploy from the first manager), and
# the webhook is a workflow the benchmark creates through Caddy as n8n's owner and deletes at the end.
# --node-loss (a cluster only): no update; --workers requests a second (each sent on its own: a request Caddy holds
# does not hold back the next) run while the lab host of a node with neither data nor
# the edge (--node, default the last such host) is stopped (docker stop): the requests lost in flight at the loss and
# after it (target: 0) are counted, and the seconds until every swarm service is back at its replica count; then the
# node is started again and rejoins.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/collections" ANSIBLE_FORCE_COLOR=0
# A molecule inventory looks the stack's master secret up through lab/lab.sh in the project directory.
export MOLECULE_PROJECT_DIRECTORY="${MOLECULE_PROJECT_DIRECTORY:-$ROOT}" ANSIBLE_ROLES_PATH="$ROOT/roles"
inventory=inventories/lab host=borgstack-lab workers=4 requests=3000 node_loss=0 lost=""
while [ $# -gt 0 ]; do
  case $1 in
    --inventory) inventory=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --node-loss) node_loss=1; shift ;;
    --node) lost=$2; shift 2 ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done

# The hosts of the borgstack group, in inventory order; on a cluster: the edge node, and the first manager.
members=$(ansible-inventory -i "$inventory" --list | python3 -c '
import json, sys
inv = json.load(sys.stdin)
def hosts(group):
    found = list(inv.get(group, {}).get("hosts", []))
    for child in inv.get(group, {}).get("children", []):
        found += [h for h in hosts(child) if h not in found]
    return found
print(" ".join(hosts("borgstack")))')
read -r -a cluster <<<"$members"
if [ "${#cluster[@]}" -gt 1 ]; then
  manager=${cluster[0]}
  host=$(for name in "${cluster[@]}"; do
    ansible-inventory -i "$inventory" --host "$name" | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin).get("borgstack_node_edge") else 1)' && { echo "$name"; break; }
  done)
  [ -n "$host" ] || { echo "benchmark: no host with borgstack_node_edge in $inventory" >&2; exit 1; }
  if [ -z "$lost" ]; then
    for name in "${cluster[@]}"; do
      ansible-inventory -i "$inventory" --host "$name" | python3 -c '
import json, sys
v = json.load(sys.stdin)
sys.exit(1 if v.get("borgstack_node_edge") or v.get("borgstack_node_data") else 0)' && lost=$name
    done
  fi
  [ "$node_loss" -eq 0 ] || [ -n "$lost" ] || { echo "benchmark: no host without data and edge to stop" >&2; exit 1; }
else
  cluster=()
  [ "$node_loss" -eq 0 ] || { echo "benchmark: --node-loss needs a cluster inventory (2+ hosts)" >&2; exit 2; }
fi

vars=$(ansible-inventory -i "$inventory" --host "$host")
get() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$vars" "$1"; }
lab=$(get ansible_host); lab=${lab:-$host}
ip=$(get lab_public_ip); ip=${ip:-$(docker inspect -f '{{(index .NetworkSettings.Networks "borgstack-lab-public").IPAddress}}' "$lab")}
domain=$(get borgstack_domain)
# The inventory's services with n8n's image replaced (-e replaces the whole dict, so every other key is kept).
services_with() {
  python3 -c '
import json, sys
services = json.loads(sys.argv[1]).get("borgstack_services") or {}
services.setdefault("n8n", {})["image"] = sys.argv[2]
print(json.dumps({"borgstack_services": services}))' "$vars" "$1"
}

# n8n's image in the inventory (else the registry's default).
base=$(python3 -c 'import json,sys; print(((json.loads(sys.argv[1]).get("borgstack_services") or {}).get("n8n") or {}).get("image", ""))' "$vars")
[ -n "$base" ] || base=$(grep -A6 '^  n8n:' playbooks/group_vars/all/services.yml | sed -n 's/^ *image: //p' | head -1)
bench="${base}-bench"
work=$(mktemp -d)
workflow=""
cleanup() {
  if [ -n "$workflow" ]; then
    python3 scripts/benchmark_webhooks.py webhook-delete "$ip" "n8n.$domain" "$work/root.crt" "$email" \
      "$work/owner-password" "$workflow" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ "${#cluster[@]}" -gt 0 ]; then
  running=$(docker exec "$manager" docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' borgstack_n8n)
else
  running=$(docker exec "$lab" docker inspect -f '{{.Config.Image}}' borgstack-n8n)
fi
[ "$running" = "$base" ] || { echo "benchmark: n8n runs $running, not the inventory's $base: converge first" >&2; exit 1; }
# The "new version": the same build with another label, so another image id and another reference (on a cluster, on
# every node: a task may land on any of them, and there is no registry).
label="update $(date -u +%FT%TZ)"
for node in "${cluster[@]:-$lab}"; do
  [ "$node_loss" -eq 0 ] || break
  printf 'FROM %s\nLABEL org.borgstack.benchmark="%s"\n' "$base" "$label" \
    | docker exec -i "$node" docker build --quiet --tag "$bench" - >/dev/null
done
if [ "${#cluster[@]}" -gt 0 ]; then
  # Caddy's internal CA root, from the Caddy task on the edge node (no copy of it on a swarm yet).
  caddy=$(docker exec "$lab" docker ps -q --filter label=com.docker.swarm.service.name=borgstack_caddy | head -1)
  docker exec "$lab" docker exec "$caddy" cat /data/caddy/pki/authorities/local/root.crt >"$work/root.crt"
  email=$(get borgstack_admin_email)
  docker exec "$manager" cat /opt/borgstack/services/n8n/owner-password >"$work/owner-password"
  chmod 600 "$work/owner-password"
  read -r workflow path < <(python3 scripts/benchmark_webhooks.py webhook-create "$ip" "n8n.$domain" "$work/root.crt" \
    "$email" "$work/owner-password")
  [ -n "$workflow" ] || exit 1
  playbook=(ansible-playbook site.yml -i "$inventory" --tags n8n)
else
  docker exec "$lab" cat /opt/borgstack/services/caddy/root.crt >"$work/root.crt"
  path=webhook/borgstack/replay
  playbook=(ansible-playbook site.yml -i "$inventory" --limit "$host" --tags n8n)
fi

if [ "$node_loss" -eq 1 ]; then
  [ "$lost" != "$manager" ] || manager=${cluster[1]}
  echo "node loss under webhook load through Caddy on $host ($ip), $workers requests/s, POST https://n8n.$domain/$path"
  echo "cluster of ${#cluster[@]} (${cluster[*]}); load: $(uptime | sed 's/.*load average: //')"
  echo "target: failed=0 after the loss"
  python3 scripts/benchmark_webhooks.py node-loss "$work" "$ip" "n8n.$domain" "$path" "$workers" "$manager" "$lost"
  exit
fi

measure() {  # measure LABEL IMAGE: the request loop around one `--tags n8n` run that sets n8n's image to IMAGE
  services_with "$2" >"$work/extra.json"
  python3 scripts/benchmark_webhooks.py update "$work" "$1" "$ip" "n8n.$domain" "$path" "$workers" "$requests" \
    -- "${playbook[@]}" -e "@$work/extra.json"
}

echo "n8n update through Caddy on $host ($ip), $workers clients, POST https://n8n.$domain/$path"
[ "${#cluster[@]}" -eq 0 ] || echo "cluster of ${#cluster[@]} (${cluster[*]}); load: $(uptime | sed 's/.*load average: //')"
echo "target: failed=0"
measure "update to $bench" "$bench"
measure "update back to $base" "$base"
for node in "${cluster[@]:-$lab}"; do
  # On a swarm the old tasks' stopped containers still hold the image for a while: left in place then.
  docker exec "$node" docker image rm "$bench" >/dev/null 2>&1 || [ "${#cluster[@]}" -gt 0 ]
done
