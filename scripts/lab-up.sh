#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The main job on the embedded lab: prepare this machine, build the lab images (cached), create the lab server if it
# does not exist, and run site.yml against it. Extra arguments go to ansible-playbook (e.g. --check --diff,
# --tags n8n). Rerun it to converge drift; `lab/lab.sh destroy` throws the lab server away.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup-host.sh
bash lab/build-images.sh
if ! docker inspect borgstack-lab >/dev/null 2>&1; then
  lab/lab.sh create borgstack-lab
fi
exec ansible-playbook site.yml -i inventories/lab "$@"
