#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The whole test suite, from a clean clone on a fresh machine:
#   1. prepare this machine (Docker engine + Compose v2, debootstrap, Python toolchain)   scripts/setup-host.sh
#   2. build the lab images (cached: rebuilt only when their inputs change)               lab/build-images.sh
#   3. lint: ansible-lint (production profile) and ansible-test sanity, no ignore files
#   4. unit tests (filters, modules) and integration tests against real PostgreSQL, Redis, Caddy
#   5. molecule scenarios on disposable lab hosts: bootstrap (trixie + bookworm), stack (data + n8n + Caddy + drift),
#      and the PostgreSQL 15 -> 17 major upgrade on a lab host of its own
# Usage: scripts/test.sh [step...]   steps: setup images lint sanity unit integration molecule upgrade lab cluster
#   (with no step named, lint runs in the background beside the steps after it; named steps run in order)
# The default is setup images lint lab, where `lab` runs two lanes side by side, each scenario on its own lab host:
# the stack scenario (the longest) and sanity -> unit -> bootstrap -> upgrade -> integration.
# The same tests as running the steps one after the other, in less wall time. Named on the command line, `lab` runs
# the lab-host parts only (sanity and unit are steps of their own). `cluster` (the three-host Docker Swarm scenario,
# molecule/cluster, every test) is not a default step: as a third lane it does not fit two cores (docs/multi-servidor.md,
# "Laboratório"); `side_lane --beside cluster` adds it as one (cluster_lane) on a machine with more cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/collections" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
export BORGSTACK_REQUIRE_INTEGRATION=1

steps=("$@")
lab_parts=(bootstrap upgrade integration)
[ ${#steps[@]} -gt 0 ] || { steps=(setup images lint lab); lab_parts=(sanity unit bootstrap upgrade integration); }
declare -A took
order=()
run_step() {
  local name=$1; shift
  local t0=$SECONDS
  printf '\n=== %s ===\n' "$name"
  order+=("$name")
  "$@"
  took[$name]=$((SECONDS - t0))
}

step_setup() { bash scripts/setup-host.sh; }
step_images() { bash lab/build-images.sh && lab/lab.sh secret >/dev/null; }
step_lint() { ansible-lint --profile production; }
step_sanity() {
  # ansible-test needs the collection at ansible_collections/<ns>/<name>; its pip bootstrap script is fetched from a
  # host this machine cannot reach, so a local stand-in (ensurepip + PyPI) is put in its cache.
  local cache work
  cache=$HOME/.ansible/test/cache
  mkdir -p "$cache"
  for v in 24_2 24_3 25_0 25_1; do [ -f "$cache/get_pip_$v.py" ] || cp scripts/ansible-test-get-pip.py "$cache/get_pip_$v.py"; done
  work=$(mktemp -d)
  mkdir -p "$work/ansible_collections/borgstack/stack"
  git ls-files -z --cached --others --exclude-standard | grep -zv '^collections/' \
    | xargs -0 -I{} cp --parents {} "$work/ansible_collections/borgstack/stack/"
  (cd "$work/ansible_collections/borgstack/stack" && git init -q && git add -A \
    && ansible-test sanity --color no --python 3.11)
  rm -rf "$work"
}
step_unit() { python3 -m pytest -q tests/unit; }
step_integration() {
  # Real servers (PostgreSQL, Redis, Caddy containers) come from the lab images; the mongodb role's real runs need a
  # lab host with its own Docker engine (there is no MongoDB image to run, see that test's docstring).
  local host=borgstack-it
  lab/lab.sh destroy "$host" >/dev/null 2>&1 || true
  lab/lab.sh create "$host" --ip 80 >/dev/null
  ansible-playbook site.yml -i inventories/lab -e ansible_host="$host" --tags docker >/dev/null
  # The PostgreSQL major-upgrade test (targets/postgresql_upgrade) runs in the molecule step, on its own host.
  BORGSTACK_LAB_HOST=$host python3 -m pytest -q tests/integration --ignore=tests/integration/targets/postgresql_upgrade \
    || { lab/lab.sh destroy "$host" >/dev/null; return 1; }
  lab/lab.sh destroy "$host" >/dev/null
}
step_upgrade() {
  # The PostgreSQL major upgrade (15 from bookworm -> 17 from trixie) on a fresh lab host of its own: the test
  # converges a small stack (PostgreSQL 15, Redis, n8n, Caddy) and upgrades it (tests/integration/targets/
  # postgresql_upgrade). Run by the molecule step beside the scenarios, or alone: scripts/test.sh upgrade.
  local host=borgstack-pgup rc=0
  lab/lab.sh destroy "$host" >/dev/null 2>&1 || true
  lab/lab.sh create "$host" --ip 81 >/dev/null
  BORGSTACK_PGUP_HOST=$host BORGSTACK_PGUP_IP=198.51.100.81 \
    python3 -m pytest -q tests/integration/targets/postgresql_upgrade || rc=$?
  lab/lab.sh destroy "$host" >/dev/null 2>&1 || true
  return "$rc"
}
# Copies a molecule log, each action's "Executing" line prefixed with the seconds since $1 (a SECONDS value).
stamp_actions() {
  local start=$1 line
  while IFS= read -r line; do
    case $line in
      *'] Executing'*) printf '[lane +%ss] %s\n' "$((SECONDS - start))" "$line" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}
# "converge at +60s idempotence at +700s ...": the stamped start of each action of scenario $1 in log $2.
phases_of() {
  grep -o "^\[lane +[0-9]*s\] INFO *\[$1 > [a-z]*\] Executing" "$2" \
    | sed -E 's/^\[lane \+([0-9]+)s\].*> ([a-z]+)\].*/\2 at +\1s/' | tr '\n' ' ' || true
}
# The molecule scenarios run beside the side lane: the stack scenario (data + n8n + Caddy + drift) always, and with
# --beside cluster the cluster (three lab hosts in a Docker Swarm, 198.51.100.47-49) as cluster_lane runs it.
scenario() {
  case $1 in
    stack) molecule test -s stack ;;
    cluster) cluster_lane ;;
  esac
}
# The cluster as a lane: molecule test's sequence without its `check` step (--check on a bare cluster) and with the
# tests marked slow deselected (pytest prints how many); scripts/test.sh cluster runs both.
cluster_lane() {
  local rc=0
  molecule destroy -s cluster || return 1
  { molecule create -s cluster && molecule converge -s cluster && molecule idempotence -s cluster \
      && PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} -m 'not slow'" molecule verify -s cluster; } || rc=$?
  molecule destroy -s cluster || rc=1
  return "$rc"
}
side_lane() {
  # Usage: side_lane [--beside SCENARIO]... PART...
  # The stack scenario (and each --beside one) runs in the background; the named parts run one after the other beside
  # them, each on its own lab host with its own log (printed, with its exit code and time, when it ends). Fails when
  # any part or scenario failed.
  local logs rc part t0 failed=0 lane0=$SECONDS name beside=(stack)
  local -A pids=()
  while [ "${1:-}" = --beside ]; do beside+=("$2"); shift 2; done
  logs=$(mktemp -d)
  # Each molecule action's start is stamped with the lane's elapsed seconds (its phases are in the timings).
  for name in "${beside[@]}"; do
    { scenario "$name" 2>&1; echo "molecule-exit $?"; } | stamp_actions "$lane0" >"$logs/$name.log" &
    pids[$name]=$!
  done
  for part in "$@"; do
    t0=$SECONDS rc=0
    order+=("lab:$part")
    case $part in
      sanity) step_sanity >"$logs/$part.log" 2>&1 || rc=$? ;;
      unit) step_unit >"$logs/$part.log" 2>&1 || rc=$? ;;
      bootstrap) molecule test -s bootstrap >"$logs/$part.log" 2>&1 || rc=$? ;;
      upgrade) step_upgrade >"$logs/$part.log" 2>&1 || rc=$? ;;
      integration) step_integration >"$logs/$part.log" 2>&1 || rc=$? ;;
    esac
    took[lab:$part]=$((SECONDS - t0))
    printf '\n--- %s (exit %s, %ss) ---\n' "$part" "$rc" "${took[lab:$part]}"; cat "$logs/$part.log"
    [ "$rc" -eq 0 ] || failed=1
  done
  for name in "${beside[@]}"; do
    rc=0
    wait "${pids[$name]}" || rc=$?
    [ "$(tail -n 1 "$logs/$name.log")" = "molecule-exit 0" ] || rc=1
    took[lab:$name]=$((SECONDS - lane0))
    order+=("lab:$name")
    phases+=("$name phases: $(phases_of "$name" "$logs/$name.log")")
    printf '\n--- molecule %s (exit %s, %ss) ---\n' "$name" "$rc" "${took[lab:$name]}"; cat "$logs/$name.log"
    [ "$rc" -eq 0 ] || failed=1
  done
  rm -rf "$logs"
  [ "$failed" -eq 0 ]
}
# The two scenarios use their own lab hosts and molecule state: they run side by side (the stack scenario is the
# long one; the bootstrap one mostly waits on package downloads, then the PostgreSQL upgrade test runs on its own
# host while the stack scenario goes on).
step_molecule() { side_lane bootstrap upgrade; }
# Everything that needs lab hosts: the stack scenario and the side lane (the integration tests after the upgrade
# test; in the default run, sanity and unit lead it: they need no lab host).
step_lab() { side_lane "${lab_parts[@]}"; }

# Three lab hosts form a Docker Swarm (molecule/cluster): the whole scenario, `check` and every test of its verifier.
step_cluster() { molecule test -s cluster; }

# In the default run, lint (one CPU for ~8 minutes, reading files only) runs in the background from the moment the
# machine is set up, beside the steps that follow; its log, exit code and time are printed at the end, and a lint
# failure fails the run. Named on the command line, every step runs in the foreground, in order.
lint_bg=false
[ $# -gt 0 ] || lint_bg=true
lint_pid='' lint_log=''
phases=()
stop_lint() { [ -z "$lint_pid" ] || { pkill -P "$lint_pid" 2>/dev/null; kill "$lint_pid" 2>/dev/null; } || true; }
# Printed last whatever failed, so that the tail of a CI log holds where the time went.
print_timings() {
  local name
  printf '\n=== timings (total %ss) ===\n' "$SECONDS"
  for name in "${order[@]}"; do printf '%-16s %5ss\n' "$name" "${took[$name]:-?}"; done
  [ ${#phases[@]} -eq 0 ] || printf '%s\n' "${phases[@]}"
}
trap 'rc=$?; stop_lint; print_timings; exit $rc' EXIT
for s in "${steps[@]}"; do
  if $lint_bg && [ "$s" = lint ]; then
    lint_log=$(mktemp)
    printf '\n=== lint (in the background; its log is printed at the end) ===\n'
    ( t0=$SECONDS; rc=0; step_lint >"$lint_log" 2>&1 || rc=$?; echo "$rc $((SECONDS - t0))" >"$lint_log.done" ) &
    lint_pid=$!
    continue
  fi
  run_step "$s" "step_$s"
done
if [ -n "$lint_pid" ]; then
  wait "$lint_pid" || true
  lint_pid=''
  read -r lint_rc took[lint] <"$lint_log.done"
  order+=(lint)
  printf '\n=== lint (exit %s, %ss, beside the other steps) ===\n' "$lint_rc" "${took[lint]}"
  cat "$lint_log"
  rm -f "$lint_log" "$lint_log.done"
fi
[ "${lint_rc:-0}" -eq 0 ] || { echo "lint failed (log above)" >&2; exit 1; }
