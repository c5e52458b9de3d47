#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmark of the lab stack on a fresh, disposable lab host: first converge, no-op rerun (and its changed count),
# `--tags n8n`, and the ratios. Prints figures; asserts nothing about time (targets are shown beside them).
#   scripts/benchmark-lab.sh [--keep] [--existing] [--name NAME] [--ip N]
#     --keep leaves the lab host running; --name and --ip pick another lab host (default borgstack-bench, .90),
#     e.g. when several people share the machine. --existing measures only the no-op rerun and `--tags n8n` on a lab
#     host converged before (e.g. by an earlier --keep run) and leaves it running: on a shared machine the first
#     converge can run while others work, and these two in a quiet minute. Set ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks to see
#     where the time goes (the logs keep each task's time).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/collections" ANSIBLE_FORCE_COLOR=0
NAME=borgstack-bench
IP=90
keep=false
existing=false
while (($#)); do
  case $1 in
    --keep) keep=true; shift ;;
    --existing) existing=true; keep=true; shift ;;
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --ip) IP=${2:?--ip needs a value}; shift 2 ;;
    *) echo "usage: $0 [--keep] [--existing] [--name NAME] [--ip N]" >&2; exit 2 ;;
  esac
done

if $existing; then
  docker inspect "$NAME" >/dev/null 2>&1 || { echo "benchmark: --existing needs the lab host $NAME (converged)" >&2; exit 2; }
else
  bash scripts/setup-host.sh >/dev/null
  bash lab/build-images.sh >/dev/null
  lab/lab.sh destroy "$NAME" >/dev/null 2>&1 || true
  lab/lab.sh create "$NAME" --ip "$IP" >/dev/null
fi
cleanup() { $keep || lab/lab.sh destroy "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

log=$(mktemp -d)
run() {  # run LABEL ARGS... → sets secs, changed and tasks (tasks that ran: ok + changed + failed, skipped apart)
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  if ! ansible-playbook site.yml -i inventories/lab -e ansible_host="$NAME" "$@" >"$log/$label.log" 2>&1; then
    echo "benchmark: the $label run failed; see $log/$label.log" >&2
    tail -30 "$log/$label.log" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  changed=$(grep -Eo 'changed=[0-9]+' "$log/$label.log" | tail -1 | cut -d= -f2)
  local recap
  recap=$(grep -E "^$NAME|^borgstack-lab +:" "$log/$label.log" | tail -1)
  tasks=$(sed -E 's/.*ok=([0-9]+).*skipped=([0-9]+).*/\1+\2 skipped/' <<<"$recap")
}

if $existing; then
  first_s=0 first_c=- first_t=-
else
  run first;  first_s=$secs;  first_c=$changed; first_t=$tasks
fi
run noop;   noop_s=$secs;   noop_c=$changed; noop_t=$tasks
run tagged --tags n8n; tag_s=$secs; tag_c=$changed; tag_t=$tasks

python3 - "$first_s" "$first_c" "$noop_s" "$noop_c" "$tag_s" "$tag_c" "$first_t" "$noop_t" "$tag_t" <<'PY'
import sys
first, first_c, noop, noop_c, tag, tag_c = (float(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4],
                                            float(sys.argv[5]), sys.argv[6])
first_t, noop_t, tag_t = sys.argv[7:10]
rows = [
    ("no-op rerun", f"{noop:7.1f} s", f"changed={noop_c}", f"tasks {noop_t}; target: changed=0, < 30 s"),
    ("--tags n8n", f"{tag:7.1f} s", f"changed={tag_c}", f"tasks {tag_t}; target: < 8 s"),
    ("tags n8n / no-op", f"{tag / noop:7.2f}", "", "target: <= 0.20"),
]
if first:  # not measured with --existing
    rows[:0] = [("first converge", f"{first:7.1f} s", f"changed={first_c}", f"tasks {first_t}")]
    rows.append(("no-op / first", f"{noop / first:7.2f}", "", "target: <= 0.25"))
with open("/proc/loadavg", encoding="ascii") as handle:
    rows.append(("load average", handle.read().split()[0], "", "(1 min, at the end; figures on a busy machine say little)"))

print(f"{'run':<18} {'time':>9}  {'':<11} {'':<}")
for r in rows:
    print(f"{r[0]:<18} {r[1]:>9}  {r[2]:<11} {r[3]}")
PY
echo "logs: $log"
