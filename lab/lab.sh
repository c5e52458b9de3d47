#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# A disposable "server" for BorgStack: a container that boots systemd (image
# borgstack-lab/host:<os>, see lab/build-images.sh) and can run its own Docker
# engine, reachable from a public-looking network the way the internet sees a VPS.
#
#   lab/lab.sh create [NAME] [--os trixie|bookworm] [--ip N]   start a lab host
#   lab/lab.sh reset [NAME] [--os ...] [--ip N]                destroy + create
#   lab/lab.sh destroy [NAME]                                  remove it and its Docker data
#   lab/lab.sh cluster create PREFIX --ip N [--count C] [--os ...]
#                                                              C lab hosts PREFIX-1..C (default 3) at
#                                                              N, N+1, ...: one public network, so
#                                                              each reaches the others' swarm ports
#   lab/lab.sh cluster destroy PREFIX [--count C]              remove PREFIX-1..C
#   lab/lab.sh status [NAME]                                   state, OS, address, systemd
#   lab/lab.sh load-images [NAME] IMAGE...                     copy images into its engine
#   lab/lab.sh probe [NAME] PORT [--ipv6]                      TCP port open, closed
#                                                              (refused/filtered) or error,
#                                                              seen from the public network
#   lab/lab.sh ipv6 [NAME]                                     attach it to the IPv6 public
#                                                              network too (and let its Docker
#                                                              use IPv6); print its address
#   lab/lab.sh secret                                          print the lab master secret
#   lab/lab.sh ssh-key                                         print the path of the lab's SSH
#                                                              private key (made once; create
#                                                              puts its public key in root's
#                                                              authorized_keys, as a provider does)
#   lab/lab.sh address [NAME]                                  print the host's public address
#   lab/lab.sh bridge-gateway                                  print this machine's address on Docker's
#                                                              default bridge (what lab hosts reach
#                                                              it at, e.g. the tests' SMTP server)
#
# NAME defaults to borgstack-lab, --os to trixie. --ip picks the host's address on
# the public network 198.51.100.0/24: N or 198.51.100.N, N in 10..127 (default: the
# first free one from .10). `probe` prints "IP:PORT open" (exit 0), "IP:PORT closed
# (refused)" or "IP:PORT closed (filtered)" (exit 1), or "IP:PORT error: ..." (exit 3);
# with --ipv6 ([IP]:PORT) it probes the host's address on the IPv6 public network 2001:db8:b0a6::/64
# (host N there too; `ipv6` attaches it). Other errors exit 3 with a message.
#
# The container gets the capabilities and mounts systemd and an inner dockerd need,
# and no more: never --privileged, never systempaths=unconfined (that would let it
# rewrite the real machine's kernel settings). Data is disposable: destroy removes
# the container and its NAME-docker volume; images and the network stay.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly LAB_DIR
readonly CACHE_DIR="$LAB_DIR/cache"
readonly SECRET_FILE="$CACHE_DIR/master-secret"
# The lab's SSH key pair: a VPS provider puts the customer's public key in root's authorized_keys; every lab host gets
# this one, so that the play (which reaches the lab through docker exec) can prove a key login over real SSH.
readonly SSH_KEY_DIR="$CACHE_DIR/ssh"
readonly SSH_KEY_FILE="$SSH_KEY_DIR/id_ed25519"

readonly DEFAULT_NAME=borgstack-lab
readonly DEFAULT_OS=trixie
readonly LABEL=org.borgstack.lab
readonly PUBLIC_NET=borgstack-lab-public
readonly PUBLIC_SUBNET=198.51.100.0/24
readonly PUBLIC_GATEWAY=198.51.100.1
readonly PUBLIC_PREFIX=198.51.100
# Docker hands out .128-.254 to containers attached without an address (the prober);
# lab hosts take fixed addresses from .10-.127, so the two never collide.
readonly PUBLIC_DYNAMIC_RANGE=198.51.100.128/25
readonly PROBE_IMAGE=borgstack-lab/debian:trixie
# A second public network, dual-stack (Docker wants IPv4 on every network), for IPv6 tests. Separate from
# $PUBLIC_NET so that hosts and scripts made for the IPv4-only one keep working unchanged. Host N of the
# public network gets 172.31.250.N and 2001:db8:b0a6::N here. Not 203.0.113.0/24: this sandbox serves its
# package mirrors there (checked below for every range, with subnet_holds_registry).
readonly PUBLIC6_NET=borgstack-lab-public6
readonly PUBLIC6_SUBNET4=172.31.250.0/24
readonly PUBLIC6_GATEWAY4=172.31.250.1
readonly PUBLIC6_DYNAMIC_RANGE4=172.31.250.128/25
readonly PUBLIC6_PREFIX4=172.31.250
readonly PUBLIC6_SUBNET=2001:db8:b0a6::/64
readonly PUBLIC6_GATEWAY=2001:db8:b0a6::1
readonly PUBLIC6_PREFIX=2001:db8:b0a6:
readonly BOOT_TIMEOUT=60
# Seconds a probe waits for an answer before it calls the port filtered.
readonly PROBE_TIMEOUT=3

LAB_LOG_PREFIX=lab
# shellcheck source=lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '8,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# ---- Helpers -----------------------------------------------------------------------

container_exists() {
    docker container inspect "$1" >/dev/null 2>&1
}

# Refuse to touch a container this script did not create.
require_lab_container() {
    local name=$1
    container_exists "$name" || die "no lab host named '$name' (create it with: lab/lab.sh create $name)"
    local mark
    mark=$(docker container inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$name")
    [[ "$mark" == "1" ]] || die "container '$name' was not created by lab/lab.sh; not touching it"
}

require_running() {
    local name=$1 state
    require_lab_container "$name"
    state=$(docker container inspect --format '{{ .State.Status }}' "$name")
    [[ "$state" == running ]] || die "lab host '$name' is $state, not running (lab/lab.sh reset $name)"
}

# Does any route of this machine other than the default one overlap SUBNET?
subnet_routed() {
    local subnet=$1
    ip -4 route show | awk '$1 != "default" { print $1 }' | python3 -c '
import ipaddress, sys
wanted = ipaddress.ip_network(sys.argv[1])
for line in sys.stdin:
    try:
        net = ipaddress.ip_network(line.strip(), strict=False)
    except ValueError:
        continue
    if net.overlaps(wanted):
        print(net)
        sys.exit(0)
sys.exit(1)
' "$subnet"
}

# Which package registry (by name) resolves into SUBNET? A Docker network over such a range would take the
# machine's route to that registry (this sandbox serves its mirrors from documentation ranges).
REGISTRY_HOSTS=(deb.debian.org security.debian.org pypi.org files.pythonhosted.org registry.npmjs.org)
subnet_holds_registry() {
    local subnet=$1 host
    for host in "${REGISTRY_HOSTS[@]}"; do
        getent ahosts "$host" | awk -v h="$host" '{ print h, $1 }'
    done | sort -u | python3 -c '
import ipaddress, sys
wanted = ipaddress.ip_network(sys.argv[1])
for line in sys.stdin:
    host, _, address = line.strip().partition(" ")
    try:
        if ipaddress.ip_address(address) in wanted:
            print(f"{host} ({address})")
            sys.exit(0)
    except ValueError:
        continue
sys.exit(1)
' "$subnet"
}

ensure_public_network() {
    local subnet routed
    if docker network inspect "$PUBLIC_NET" >/dev/null 2>&1; then
        subnet=$(docker network inspect --format '{{ range .IPAM.Config }}{{ .Subnet }}{{ end }}' "$PUBLIC_NET")
        [[ "$subnet" == "$PUBLIC_SUBNET" ]] ||
            die "network $PUBLIC_NET exists with subnet '$subnet', expected $PUBLIC_SUBNET; remove it by hand"
        return 0
    fi
    if routed=$(subnet_routed "$PUBLIC_SUBNET"); then
        die "$PUBLIC_SUBNET overlaps $routed, already routed on this machine (ip route); refusing to create $PUBLIC_NET"
    fi
    docker network create --driver bridge --subnet "$PUBLIC_SUBNET" --gateway "$PUBLIC_GATEWAY" \
        --ip-range "$PUBLIC_DYNAMIC_RANGE" --label "$LABEL=1" "$PUBLIC_NET" >/dev/null
    note "created network $PUBLIC_NET ($PUBLIC_SUBNET)"
}

ensure_public6_network() {
    local subnets
    if docker network inspect "$PUBLIC6_NET" >/dev/null 2>&1; then
        subnets=$(docker network inspect --format '{{ range .IPAM.Config }}{{ .Subnet }} {{ end }}' "$PUBLIC6_NET")
        [[ "$subnets" == *"$PUBLIC6_SUBNET "* && "$subnets" == *"$PUBLIC6_SUBNET4 "* ]] ||
            die "network $PUBLIC6_NET exists with subnets '$subnets', expected $PUBLIC6_SUBNET4 $PUBLIC6_SUBNET; remove it by hand"
        return 0
    fi
    local routed subnet
    if routed=$(subnet_routed "$PUBLIC6_SUBNET4"); then
        die "$PUBLIC6_SUBNET4 overlaps $routed, already routed on this machine (ip route); refusing to create $PUBLIC6_NET"
    fi
    ip -6 route show | grep -q '^2001:db8:b0a6:' &&
        die "$PUBLIC6_SUBNET is already routed on this machine (ip -6 route); refusing to create $PUBLIC6_NET"
    for subnet in "$PUBLIC6_SUBNET4" "$PUBLIC6_SUBNET"; do
        if routed=$(subnet_holds_registry "$subnet"); then
            die "$routed resolves into $subnet: a network there would cut this machine off from it; refusing to create $PUBLIC6_NET"
        fi
    done
    docker network create --driver bridge --ipv6 \
        --subnet "$PUBLIC6_SUBNET4" --gateway "$PUBLIC6_GATEWAY4" --ip-range "$PUBLIC6_DYNAMIC_RANGE4" \
        --subnet "$PUBLIC6_SUBNET" --gateway "$PUBLIC6_GATEWAY" --label "$LABEL=1" "$PUBLIC6_NET" >/dev/null
    note "created network $PUBLIC6_NET ($PUBLIC6_SUBNET4, $PUBLIC6_SUBNET)"
}

public6_ip_of() {
    docker container inspect --format "{{ with index .NetworkSettings.Networks \"$PUBLIC6_NET\" }}{{ .GlobalIPv6Address }}{{ end }}" "$1"
}

# Addresses the lab hosts already hold on the public network.
used_public_ips() {
    docker network inspect --format '{{ range .Containers }}{{ .IPv4Address }} {{ end }}' "$PUBLIC_NET" |
        tr ' ' '\n' | sed -n 's|/.*||p'
}

pick_ip() {
    local wanted=$1 used n
    used=$(used_public_ips)
    if [[ -n "$wanted" ]]; then
        wanted=${wanted#"$PUBLIC_PREFIX."}
        if ! [[ "$wanted" =~ ^[0-9]{1,3}$ ]] || ((10#$wanted < 10 || 10#$wanted > 127)); then
            die "--ip must be N or $PUBLIC_PREFIX.N with N in 10..127, got '$1'"
        fi
        wanted=$((10#$wanted))
        grep -qx "$PUBLIC_PREFIX.$wanted" <<<"$used" &&
            die "$PUBLIC_PREFIX.$wanted is already used on $PUBLIC_NET"
        echo "$PUBLIC_PREFIX.$wanted"
        return 0
    fi
    for n in $(seq 10 127); do
        if ! grep -qx "$PUBLIC_PREFIX.$n" <<<"$used"; then
            echo "$PUBLIC_PREFIX.$n"
            return 0
        fi
    done
    die "no free address left on $PUBLIC_NET"
}

public_ip_of() {
    docker container inspect --format "{{ with index .NetworkSettings.Networks \"$PUBLIC_NET\" }}{{ .IPAddress }}{{ end }}" "$1"
}

system_state() {
    docker exec "$1" systemctl is-system-running 2>/dev/null || true
}

# ---- Commands ----------------------------------------------------------------------

cmd_create() {
    local name=$1 os=$2 ip_arg=$3 image ip start state i
    case "$os" in
        trixie | bookworm) ;;
        *) die "--os must be trixie or bookworm, got '$os'" ;;
    esac
    [[ "$name" =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || die "invalid NAME '$name'"
    image="borgstack-lab/host:$os"
    docker image inspect "$image" >/dev/null 2>&1 ||
        die "image $image is missing: build it with lab/build-images.sh host-$os"
    container_exists "$name" && die "'$name' already exists (lab/lab.sh reset $name to start afresh)"
    start=$(date +%s)

    # Lab hosts may be created side by side (the test suite runs its scenarios in parallel): one at a time makes the
    # shared public network and picks an address.
    exec 9>/tmp/borgstack-lab.lock
    flock 9
    ensure_public_network
    ip=$(pick_ip "$ip_arg")

    # The inner engine's data: a labelled volume, so destroy removes only ours.
    docker volume create --label "$LABEL=1" "$name-docker" >/dev/null

    # Bridge first, then the public network: the first network holds the default route.
    docker run --detach --name "$name" --hostname "$name" \
        --label "$LABEL=1" --label "$LABEL.os=$os" --label "$LABEL.ip=$ip" \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --cgroupns host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
        --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
        --env container=docker \
        --volume "$name-docker:/var/lib/docker" \
        --stop-signal SIGRTMIN+3 \
        --network bridge \
        "$image" >/dev/null
    docker network connect --ip "$ip" "$PUBLIC_NET" "$name"
    flock --unlock 9

    state=""
    for ((i = 0; i < BOOT_TIMEOUT; i++)); do
        state=$(system_state "$name")
        [[ "$state" == running || "$state" == degraded ]] && break
        if [[ "$(docker container inspect --format '{{ .State.Status }}' "$name")" != running ]]; then
            docker logs --tail 20 "$name" >&2 || true
            die "'$name' stopped while booting (see above; lab/lab.sh destroy $name)"
        fi
        sleep 1
    done
    if [[ "$state" != running && "$state" != degraded ]]; then
        docker exec "$name" systemctl list-jobs >&2 || true
        die "'$name' did not finish booting in ${BOOT_TIMEOUT}s (state '$state'); inspect it, then lab/lab.sh destroy $name"
    fi
    lab_ssh_key >/dev/null
    docker exec -i "$name" sh -c 'umask 077 && mkdir -p /root/.ssh && cat >>/root/.ssh/authorized_keys' \
        <"$SSH_KEY_FILE.pub" || die "could not install the lab SSH key in $name"
    if [[ "$state" == degraded ]]; then
        note "failed units in $name:"
        docker exec "$name" systemctl --failed --no-legend >&2 || true
    fi
    note "created $name ($os, $ip) in $(($(date +%s) - start))s"
    cmd_status "$name"
}

cmd_destroy() {
    local name=$1 ours=""
    if container_exists "$name"; then
        ours=1
        require_lab_container "$name"
        # SIGRTMIN+3 lets systemd stop the inner containers cleanly (no stale cgroups).
        docker stop --time 30 "$name" >/dev/null 2>&1 || true
        docker rm --force --volumes "$name" >/dev/null
        note "removed container $name"
    fi
    if docker volume inspect "$name-docker" >/dev/null 2>&1; then
        # Ours if it carries the label, or if it belonged to the lab container just removed.
        if [[ -z "$ours" && "$(docker volume inspect --format "{{ index .Labels \"$LABEL\" }}" "$name-docker")" != "1" ]]; then
            die "volume $name-docker was not created by lab/lab.sh; not touching it"
        fi
        docker volume rm "$name-docker" >/dev/null
        note "removed volume $name-docker"
    fi
}

cmd_status() {
    local name=$1 fmt
    if ! container_exists "$name"; then
        printf '%s: absent\n' "$name"
        return 0
    fi
    require_lab_container "$name"
    fmt="{{ .State.Status }} {{ index .Config.Labels \"$LABEL.os\" }}"
    read -r state os < <(docker container inspect --format "$fmt" "$name")
    printf 'name:     %s\n' "$name"
    printf 'state:    %s\n' "$state"
    printf 'os:       %s\n' "$os"
    printf 'public:   %s (network %s)\n' "$(public_ip_of "$name")" "$PUBLIC_NET"
    if [[ "$state" == running ]]; then
        printf 'systemd:  %s\n' "$(system_state "$name")"
        if docker exec "$name" docker version --format '{{ .Server.Version }}' >/dev/null 2>&1; then
            printf 'docker:   %s, %s images\n' \
                "$(docker exec "$name" docker version --format '{{ .Server.Version }}')" \
                "$(docker exec "$name" docker image ls --quiet | sort -u | wc -l)"
        else
            printf 'docker:   not installed or not running\n'
        fi
    fi
}

cmd_load_images() {
    local name=$1 image host_id inner_id
    shift
    (($# > 0)) || die "load-images needs at least one IMAGE"
    require_running "$name"
    docker exec "$name" docker info >/dev/null 2>&1 ||
        die "no Docker engine runs inside '$name' yet (install docker.io there first)"
    for image in "$@"; do
        host_id=$(docker image inspect --format '{{ .Id }}' "$image" 2>/dev/null) ||
            die "image $image is not on this machine (lab/build-images.sh)"
        inner_id=$(docker exec "$name" docker image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
        if [[ "$inner_id" == "$host_id" ]]; then
            printf '%s: present\n' "$image"
            continue
        fi
        docker save "$image" | docker exec -i "$name" docker load >/dev/null
        inner_id=$(docker exec "$name" docker image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
        [[ "$inner_id" == "$host_id" ]] || die "loading $image into $name failed (ID '$inner_id', expected $host_id)"
        printf '%s: loaded\n' "$image"
    done
}

cmd_probe() {
    local name=$1 port=$2 family=${3:-4} ip verdict network=$PUBLIC_NET
    if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
        die "PORT must be 1..65535, got '$port'"
    fi
    require_running "$name"
    if [[ "$family" == 6 ]]; then
        network=$PUBLIC6_NET
        ip=$(public6_ip_of "$name")
        [[ -n "$ip" ]] || die "'$name' has no address on $PUBLIC6_NET (lab/lab.sh ipv6 $name)"
    else
        ip=$(public_ip_of "$name")
        [[ -n "$ip" ]] || die "'$name' is not on $PUBLIC_NET"
    fi
    docker image inspect "$PROBE_IMAGE" >/dev/null 2>&1 ||
        die "image $PROBE_IMAGE is missing: build it with lab/build-images.sh debian-trixie"
    # A throwaway container on the public network only: it sees the lab host as the
    # internet would (no bridge, no shortcut through the host). It prints one verdict:
    # open (connected), refused (RST: nothing listens, nothing filters), filtered (no
    # answer within PROBE_TIMEOUT: dropped), or error: <what bash said> for anything else.
    # shellcheck disable=SC2016  # expanded by the probe's own bash
    verdict=$(docker run --rm --network "$network" "$PROBE_IMAGE" bash -c '
        err=$(timeout "$3" bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); rc=$?
        if ((rc == 0)); then echo open
        elif ((rc == 124)); then echo filtered
        elif [[ "$err" == *"Connection refused"* ]]; then echo refused
        else printf "error: rc=%s %s\n" "$rc" "$(printf %s "$err" | tr "\n" " ")"
        fi' probe "$ip" "$port" "$PROBE_TIMEOUT" 2>&1) || verdict="error: docker run failed: ${verdict//$'\n'/ }"
    [[ "$family" == 6 ]] && ip="[$ip]"
    case "$verdict" in
        open) printf '%s:%s open\n' "$ip" "$port" ;;
        refused | filtered) printf '%s:%s closed (%s)\n' "$ip" "$port" "$verdict"; return 1 ;;
        *) printf '%s:%s %s\n' "$ip" "$port" "${verdict:-error: no verdict}"; return 3 ;;
    esac
}

cmd_ipv6() {
    local name=$1 ip4 n
    require_running "$name"
    ensure_public6_network
    if [[ -z "$(public6_ip_of "$name")" ]]; then
        ip4=$(public_ip_of "$name")
        [[ -n "$ip4" ]] || die "'$name' is not on $PUBLIC_NET"
        n=${ip4##*.}
        docker network connect --ip "$PUBLIC6_PREFIX4.$n" --ip6 "$PUBLIC6_PREFIX:$n" "$PUBLIC6_NET" "$name"
        note "attached $name to $PUBLIC6_NET as $PUBLIC6_PREFIX:$n"
    fi
    # Docker's IPv6 writes net.ipv6.* keys (docker0's disable_ipv6), and /proc/sys is read-only in the lab host.
    # net.* keys belong to the host's own network namespace, so /proc/sys/net alone is made writable; the rest of
    # /proc/sys (vm.*, fs.*: the real machine's) stays read-only.
    docker exec "$name" sh -c 'grep -q " /proc/sys/net rw," /proc/self/mountinfo ||
        { mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net; }' ||
        die "could not make /proc/sys/net writable in $name"
    public6_ip_of "$name"
}

cmd_secret() {
    # Created once, race-free: several hosts of one molecule scenario may ask at the same moment. Each caller writes
    # its own candidate and tries to hard-link it into place; the first link wins, every caller reads the winner.
    if [[ ! -s "$SECRET_FILE" ]]; then
        mkdir -p "$CACHE_DIR"
        local candidate="$SECRET_FILE.$$"
        (
            umask 077
            python3 -c '
import secrets, string, sys
alphabet = string.ascii_letters + string.digits
sys.stdout.write("".join(secrets.choice(alphabet) for _ in range(48)) + "\n")
' >"$candidate"
        )
        ln "$candidate" "$SECRET_FILE" 2>/dev/null || true
        rm -f "$candidate"
    fi
    cat "$SECRET_FILE"
}

# The lab's SSH key pair, made once and race-free like the secret: each caller makes its own pair in a private
# directory and tries to hard-link it into place; the first link of the private key wins.
lab_ssh_key() {
    if [[ ! -s "$SSH_KEY_FILE.pub" ]]; then
        mkdir -p "$SSH_KEY_DIR"
        chmod 700 "$SSH_KEY_DIR"
        local candidate="$SSH_KEY_DIR/.new.$$"
        rm -rf "$candidate"
        mkdir -m 700 "$candidate"
        ssh-keygen -q -t ed25519 -N '' -C borgstack-lab -f "$candidate/key" >/dev/null ||
            die "ssh-keygen failed (is openssh-client installed? scripts/setup-host.sh installs it)"
        if ln "$candidate/key" "$SSH_KEY_FILE" 2>/dev/null; then
            ln -f "$candidate/key.pub" "$SSH_KEY_FILE.pub"
        fi
        rm -rf "$candidate"
        for _ in 1 2 3 4 5; do
            [[ -s "$SSH_KEY_FILE.pub" ]] && break
            sleep 0.2
        done
    fi
    [[ -s "$SSH_KEY_FILE" && -s "$SSH_KEY_FILE.pub" ]] || die "the lab SSH key $SSH_KEY_FILE is incomplete; remove $SSH_KEY_DIR"
    printf '%s\n' "$SSH_KEY_FILE"
}

cmd_address() {
    local name=$1 ip
    require_lab_container "$name"
    ip=$(public_ip_of "$name")
    [[ -n "$ip" ]] || die "'$name' is not on $PUBLIC_NET"
    printf '%s\n' "$ip"
}

# A cluster: C lab hosts PREFIX-1..C on the public network at consecutive addresses. They share that network (a
# bridge with inter-container traffic on), as the private network of a provider's VPSes does, so nothing but their
# own firewalls stands between their swarm ports.
cmd_cluster() {
    local action=${1:-} prefix=${2:-} ip="" count=3 os=$DEFAULT_OS i n
    (($# >= 2)) || die "usage: lab/lab.sh cluster create|destroy PREFIX [--ip N] [--count C] [--os OS]"
    shift 2
    while (($# > 0)); do
        case "$1" in
            --ip) ip=${2:?--ip needs a value}; shift 2 ;;
            --count) count=${2:?--count needs a value}; shift 2 ;;
            --os) os=${2:?--os needs a value}; shift 2 ;;
            *) die "unknown cluster option '$1'" ;;
        esac
    done
    [[ "$count" =~ ^[2-9]$ ]] || die "--count must be 2..9, got '$count'"
    case "$action" in
        create)
            [[ -n "$ip" ]] || die "cluster create needs --ip N (the first host's address; the others follow)"
            ip=${ip#"$PUBLIC_PREFIX."}
            [[ "$ip" =~ ^[0-9]{1,3}$ ]] || die "--ip must be N or $PUBLIC_PREFIX.N, got '$ip'"
            for ((i = 1; i <= count; i++)); do
                n=$((10#$ip + i - 1))
                cmd_create "$prefix-$i" "$os" "$n" >/dev/null
                note "cluster member $prefix-$i at $PUBLIC_PREFIX.$n"
            done
            ;;
        destroy)
            for ((i = 1; i <= count; i++)); do
                cmd_destroy "$prefix-$i"
            done
            ;;
        *) die "cluster takes create or destroy, got '$action'" ;;
    esac
}

# This machine's address on Docker's default bridge: the gateway its IPAM records, or - when the engine records
# only the subnet (seen with docker.io 20.10 on a new machine) - the bridge interface's own IPv4 address.
cmd_bridge_gateway() {
    local gateway bridge
    gateway=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
    if [[ -z "$gateway" ]]; then
        bridge=$(docker network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}')
        gateway=$(ip -4 -o addr show dev "${bridge:-docker0}" | awk '{print $4}' | cut -d/ -f1 | head -n 1)
    fi
    [[ -n "$gateway" ]] || die "no IPv4 address on Docker's default bridge"
    echo "$gateway"
}

# ---- Arguments ---------------------------------------------------------------------

main() {
    (($# > 0)) || {
        usage
        exit 2
    }
    local cmd=$1
    shift
    case "$cmd" in
        -h | --help | help)
            usage
            return 0
            ;;
        secret)
            (($# == 0)) || die "secret takes no argument"
            cmd_secret
            return 0
            ;;
        ssh-key)
            (($# == 0)) || die "ssh-key takes no argument"
            lab_ssh_key
            return 0
            ;;
    esac
    command -v docker >/dev/null || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is dockerd running?)"

    local name="" os=$DEFAULT_OS ip="" args=()
    case "$cmd" in
        create | reset)
            while (($# > 0)); do
                case "$1" in
                    --os) os=${2:?--os needs a value}; shift 2 ;;
                    --os=*) os=${1#--os=}; shift ;;
                    --ip) ip=${2:?--ip needs a value}; shift 2 ;;
                    --ip=*) ip=${1#--ip=}; shift ;;
                    -*) die "unknown option '$1'" ;;
                    *) [[ -z "$name" ]] || die "too many arguments: '$1'"; name=$1; shift ;;
                esac
            done
            name=${name:-$DEFAULT_NAME}
            [[ "$cmd" == reset ]] && cmd_destroy "$name"
            cmd_create "$name" "$os" "$ip"
            ;;
        cluster)
            cmd_cluster "$@"
            ;;
        bridge-gateway)
            (($# == 0)) || die "bridge-gateway takes no argument"
            cmd_bridge_gateway
            ;;
        destroy | status | address)
            (($# <= 1)) || die "$cmd takes at most one NAME"
            name=${1:-$DEFAULT_NAME}
            "cmd_$cmd" "$name"
            ;;
        load-images)
            # A NAME has no '/' or ':'; every image reference here has one of them.
            if (($# > 0)) && [[ "$1" != */* && "$1" != *:* ]]; then
                name=$1
                shift
            fi
            cmd_load_images "${name:-$DEFAULT_NAME}" "$@"
            ;;
        probe)
            local rc=0 family=4
            for arg in "$@"; do
                case "$arg" in
                    -6 | --ipv6) family=6 ;;
                    -*) die "unknown option '$arg'" ;;
                    *) args+=("$arg") ;;
                esac
            done
            case ${#args[@]} in
                1) cmd_probe "$DEFAULT_NAME" "${args[0]}" "$family" || rc=$? ;;
                2) cmd_probe "${args[0]}" "${args[1]}" "$family" || rc=$? ;;
                *) die "usage: lab/lab.sh probe [NAME] PORT [--ipv6]" ;;
            esac
            exit "$rc"
            ;;
        ipv6)
            (($# <= 1)) || die "ipv6 takes at most one NAME"
            cmd_ipv6 "${1:-$DEFAULT_NAME}"
            ;;
        *)
            usage >&2
            die "unknown command '$cmd'"
            ;;
    esac
}

main "$@"
