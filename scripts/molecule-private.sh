#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A private copy of the molecule stack scenario, for a developer who runs it beside another checkout on the same
# machine: same converge, inventory and tests, but its own lab host name and address.
#   scripts/molecule-private.sh NAME N     -> molecule/stack-NAME (host borgstack-mol-NAME, 198.51.100.N)
# Then: molecule converge -s stack-NAME; BORGSTACK_MOL_HOST=borgstack-mol-NAME BORGSTACK_MOL_IP=198.51.100.N
#       molecule verify -s stack-NAME   (or pytest on a test file with the same environment); molecule destroy -s stack-NAME.
# The copy is not committed (git ignores molecule/stack-*/); CI runs molecule/stack as it is.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 NAME N (N in 10..127)" >&2; exit 2; }
name=$1 n=$2
[[ $name =~ ^[a-z0-9-]+$ ]] || { echo "NAME: lowercase letters, digits, dashes" >&2; exit 2; }
[[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 10 ] && [ "$n" -le 127 ] || { echo "N: 10..127" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
dst=$root/molecule/stack-$name
rm -rf "$dst"
mkdir -p "$dst/inventory"
cp "$root/molecule/stack/converge.yml" "$dst/"
ln -s ../stack/tests "$dst/tests"
sed -e "s/borgstack-mol-stack/borgstack-mol-$name/" -e "s/198\.51\.100\.31/198.51.100.$n/" \
  "$root/molecule/stack/molecule.yml" > "$dst/molecule.yml"
sed -e "s/borgstack-mol-stack/borgstack-mol-$name/" -e "s/198\.51\.100\.31/198.51.100.$n/" \
  "$root/molecule/stack/inventory/hosts.yml" > "$dst/inventory/hosts.yml"
echo "molecule/stack-$name: export BORGSTACK_MOL_HOST=borgstack-mol-$name BORGSTACK_MOL_IP=198.51.100.$n"
