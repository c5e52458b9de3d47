#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmark of a no-op rerun of site.yml on the converged three-host lab cluster (molecule/cluster: converge it first,
# `molecule create -s cluster && molecule converge -s cluster`): wall time, the CPU seconds the whole machine spent
# (controller and lab hosts: this machine's cgroup counters) and each host's recap. The CPU figure is the one that
# decides how long the test command takes on two cores (docs/multi-servidor.md, "Tempo dos testes"). Prints figures;
# asserts nothing about time.
#   scripts/benchmark-cluster.sh [RUNS]    (default 1; the figures of each run)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-1}
scenario="$ROOT/molecule/cluster"
eph=$(ls -d "$HOME"/.ansible/tmp/molecule.*.cluster 2>/dev/null | head -1 || true)
[ -n "$eph" ] && [ -d "$eph/inventory" ] || {
  echo "benchmark-cluster: no converged cluster (molecule create -s cluster && molecule converge -s cluster)" >&2
  exit 2
}
tags=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['provisioner']['env']['ANSIBLE_RUN_TAGS'])" \
  "$scenario/molecule.yml")
export MOLECULE_PROJECT_DIRECTORY=$ROOT MOLECULE_EPHEMERAL_DIRECTORY=$eph MOLECULE_SCENARIO_DIRECTORY=$scenario \
  MOLECULE_INVENTORY_FILE=$eph/inventory/ansible_inventory.yml ANSIBLE_CONFIG=$eph/ansible.cfg \
  ANSIBLE_COLLECTIONS_PATH=$ROOT/collections ANSIBLE_ROLES_PATH=$ROOT/roles ANSIBLE_FORCE_COLOR=0

cpu_ns() {  # CPU nanoseconds the machine spent, all processes (cgroup v1 cpuacct, else v2 cpu.stat)
  if [ -r /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then cat /sys/fs/cgroup/cpuacct/cpuacct.usage
  else awk '/^usage_usec/ {print $2 * 1000}' /sys/fs/cgroup/cpu.stat; fi
}
log=$(mktemp -d)
for i in $(seq "$runs"); do
  c0=$(cpu_ns); t0=$(date +%s.%N)
  rc=0
  (cd "$scenario" && ansible-playbook "$ROOT/site.yml" -i "$eph/inventory" --tags "$tags") >"$log/run$i.log" 2>&1 || rc=$?
  t1=$(date +%s.%N); c1=$(cpu_ns)
  python3 -c "import sys; print(f'no-op rerun {sys.argv[1]}: rc {sys.argv[2]}, {float(sys.argv[4]) - float(sys.argv[3]):.1f} s wall, '
                                f'{(int(sys.argv[6]) - int(sys.argv[5])) / 1e9:.0f} CPU s (machine)')" \
    "$i" "$rc" "$t0" "$t1" "$c0" "$c1"
  grep -A4 'PLAY RECAP' "$log/run$i.log" | grep -E '^borgstack' | sed -E 's/ +unreachable.*skipped=([0-9]+).*/ skipped=\1/; s/^/  /'
done
echo "load average (1 min, at the end): $(cut -d' ' -f1 /proc/loadavg); logs: $log"
