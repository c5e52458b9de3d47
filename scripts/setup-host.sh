#!/usr/bin/env bash
# Prepares the machine that runs the tests: Docker engine + Compose v2, debootstrap, ruby, the Python toolchain, and the
# load tools of scripts/benchmark-targets.sh (hey, wrk).
# Idempotent: every step checks before it acts. Never touches this machine's firewall, kernel or disks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[setup-host] %s\n' "$*"; }

export DEBIAN_FRONTEND=noninteractive
# Every program the test command runs on this machine beyond the base system (Debian's Essential and "required"
# packages) and the console scripts of requirements.txt: "program package", one a line. Only the missing ones are
# installed. tests/unit/scripts/test_host_programs.py collects what the tests and scripts run and fails, naming the
# program, when one is missing here.
PROGRAMS='
dockerd      docker.io
docker       docker.io
iptables     iptables
debootstrap  debootstrap
cryptsetup   cryptsetup-bin
jq           jq
curl         curl
git          git
ip           iproute2
python3      python3
dpkg-query   dpkg
node         nodejs
npm          npm
ruby         ruby
ssh          openssh-client
ssh-keygen   openssh-client
hey          hey
wrk          wrk
uptime       procps
pkill        procps
'
need_pkgs=()
while read -r program package; do
  [ -n "$program" ] || continue
  command -v "$program" >/dev/null || need_pkgs+=("$package")
done <<<"$PROGRAMS"
python3 -m pip --version >/dev/null 2>&1 || need_pkgs+=(python3-pip)
if ((${#need_pkgs[@]})); then
  mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
  log "apt: ${need_pkgs[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Compose v2: Debian trixie's docker-compose installs on bookworm (checked); pinned low so nothing else comes from trixie.
if ! docker compose version >/dev/null 2>&1; then
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" != trixie ] && [ ! -f /etc/apt/sources.list.d/borgstack-trixie.sources ]; then
    log "apt: adding trixie source (pinned to priority 100) for docker-compose v2"
    cat > /etc/apt/sources.list.d/borgstack-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/borgstack-trixie
    apt-get update -qq
  fi
  apt-get install -y -qq --no-install-recommends -t trixie docker-compose >/dev/null 2>&1 \
    || apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

# dockerd: nothing starts it on this kind of machine.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/borgstack-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/borgstack-dockerd.log"; exit 1; }
fi

# Python side, pinned.
if ! python3 -m pip install -q -r "$here/requirements.txt" 2>/tmp/borgstack-pip.err; then
  cat /tmp/borgstack-pip.err >&2; exit 1
fi
log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short | sed 's/^/compose /'), $(ansible --version 2>/dev/null | sed -n 1p)"
