# SPDX-License-Identifier: GPL-3.0-or-later
"""Sizing filters for BorgStack: kernel sysctls, PostgreSQL tuning and the host RAM plan.

All functions are pure: the same input gives the same output, nothing is read from the host. Sizes are MiB as
integers unless a name says otherwise. Bad input raises ``AnsibleFilterError`` naming the argument.

The user-facing documentation of each filter lives in the sidecar files ``<filter_name>.yml`` beside this file
(what ``ansible-doc -t filter borgstack.stack.<filter_name>`` shows); the rationale for every number is in
``docs/sizing.md``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

# ---------------------------------------------------------------------------------------------------------------
# Input checks shared by the filters
# ---------------------------------------------------------------------------------------------------------------


def _int_arg(filter_name: str, arg: str, value: Any, minimum: Optional[int] = None) -> int:
    """Return ``value`` as an int, refusing bools, strings and fractional floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnsibleFilterError(
            f"{filter_name}: {arg} must be an integer, got {type(value).__name__} "
            f"(convert it with '| int' if it comes from a string)"
        )
    if isinstance(value, float):
        if not value.is_integer():
            raise AnsibleFilterError(f"{filter_name}: {arg} must be a whole number, got {value}")
        value = int(value)
    if minimum is not None and value < minimum:
        raise AnsibleFilterError(f"{filter_name}: {arg} must be at least {minimum}, got {value}")
    return value


def _number_arg(filter_name: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise AnsibleFilterError(f"{filter_name}: {arg} must be a number, got {type(value).__name__}")
    return float(value)


def _choice_arg(filter_name: str, arg: str, value: Any, choices: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise AnsibleFilterError(
            f"{filter_name}: {arg} must be one of {', '.join(choices)}; got {value!r}"
        )
    return str(value)


# ---------------------------------------------------------------------------------------------------------------
# kernel_sysctl / sysctl_scope
# ---------------------------------------------------------------------------------------------------------------

# MemTotal (ansible_memtotal_mb) is always below the installed RAM (firmware, kernel and crash-kernel
# reservations), so each tier starts a little below the nominal size: a "16 GB" VPS reports ~15.6 GiB.
_TIER_MEDIUM_MB = 15 * 1024  # 16 GB class
_TIER_LARGE_MB = 30 * 1024  # 32-36 GB class
_TIER_XLARGE_MB = 60 * 1024  # 64 GB and up

_TIERS = ("small", "medium", "large", "xlarge")

# Values per tier, in the order of _TIERS.
_SOMAXCONN = (4096, 8192, 16384, 65535)
_NETDEV_MAX_BACKLOG = (4096, 8192, 16384, 32768)
_INOTIFY_WATCHES = (262144, 524288, 1048576, 1048576)
_MAX_MAP_COUNT = (262144, 262144, 524288, 1048576)
_SWAPPINESS = (10, 10, 10, 1)

_FILE_MAX_FLOOR = 1048576
_INOTIFY_INSTANCES = 1024

#: Keys whose value is a lower bound: a host that already has a higher value should keep it (systemd >= 240
#: raises fs.file-max to LONG_MAX at boot; some distributions ship vm.max_map_count = 2147483642).
SYSCTL_FLOOR_KEYS = frozenset(
    (
        "fs.file-max",
        "fs.inotify.max_user_watches",
        "fs.inotify.max_user_instances",
        "vm.max_map_count",
    )
)


def _ram_tier(ram_mb: int) -> int:
    if ram_mb >= _TIER_XLARGE_MB:
        return 3
    if ram_mb >= _TIER_LARGE_MB:
        return 2
    if ram_mb >= _TIER_MEDIUM_MB:
        return 1
    return 0


def kernel_sysctl(ram_mb: Any, cpus: Any = None) -> Dict[str, int]:
    """Return the sysctl settings for a BorgStack host with ``ram_mb`` MiB of RAM.

    Rationale per key (docs/sizing.md has the long form):

    - ``vm.overcommit_memory = 1``: Redis forks for BGSAVE/AOF rewrite; with the heuristic mode the fork of a
      large instance can fail ("Can't save in background: fork: Cannot allocate memory").
    - ``vm.swappiness``: 10 keeps the database caches in RAM but still lets idle pages of JVM/Node processes
      go to swap; hosts of 64 GB and more get 1 (swap only to avoid the OOM killer).
    - ``net.core.somaxconn`` / ``net.ipv4.tcp_max_syn_backlog``: accept and SYN queue lengths; never below the
      4096 that kernels >= 5.4 use by default, scaled up with the host class (65535 is the classic u16 ceiling).
    - ``net.core.netdev_max_backlog``: per-CPU input queue before the network stack; the default 1000 drops
      packets in bursts behind a reverse proxy.
    - ``fs.file-max``: about RAM_KiB / 10 (the kernel's own heuristic) with a floor of 1048576 (the per
      container ``nofile`` limit Docker gives); a floor only, see SYSCTL_FLOOR_KEYS.
    - ``fs.inotify.max_user_watches`` / ``max_user_instances``: n8n, Directus and other Node services watch
      files; Docker containers share the host's per-user inotify budget.
    - ``vm.max_map_count``: MongoDB (WiredTiger mmaps) and JVM services (Lowcoder) need far more than 65530.
    - ``net.ipv4.ip_forward = 1``: Docker's bridge networking routes container traffic through the host; a
      hardening profile that sets 0 cuts every container off the network.

    ``cpus`` is accepted (and checked) so that roles can pass ``ansible_processor_vcpus`` today; no value
    depends on it yet.
    """
    name = "kernel_sysctl"
    ram_mb = _int_arg(name, "ram_mb", ram_mb, minimum=1)
    if cpus is not None:
        _int_arg(name, "cpus", cpus, minimum=1)
    if ram_mb < 1024:
        raise AnsibleFilterError(f"{name}: ram_mb must be at least 1024 for a BorgStack host, got {ram_mb}")

    tier = _ram_tier(ram_mb)
    return {
        "vm.overcommit_memory": 1,
        "vm.swappiness": _SWAPPINESS[tier],
        "vm.max_map_count": _MAX_MAP_COUNT[tier],
        "fs.file-max": max(_FILE_MAX_FLOOR, ram_mb * 1024 // 10),
        "fs.inotify.max_user_watches": _INOTIFY_WATCHES[tier],
        "fs.inotify.max_user_instances": _INOTIFY_INSTANCES,
        "net.core.somaxconn": _SOMAXCONN[tier],
        "net.ipv4.tcp_max_syn_backlog": _SOMAXCONN[tier],
        "net.core.netdev_max_backlog": _NETDEV_MAX_BACKLOG[tier],
        "net.ipv4.ip_forward": 1,
    }


# net.* keys that the kernel registers only for the initial network namespace (one value for the whole host).
# Everything else under net.* has one copy per network namespace (checked against net/core/sysctl_net_core.c,
# net/ipv4/sysctl_net_ipv4.c and net/netfilter of Linux 5.10-6.x).
_HOST_WIDE_NET_KEYS = frozenset(
    (
        "net.core.netdev_max_backlog",
        "net.core.netdev_budget",
        "net.core.netdev_budget_usecs",
        "net.core.netdev_tstamp_prequeue",
        "net.core.netdev_rss_key",
        "net.core.dev_weight",
        "net.core.dev_weight_rx_bias",
        "net.core.dev_weight_tx_bias",
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.rmem_default",
        "net.core.wmem_default",
        "net.core.message_cost",
        "net.core.message_burst",
        "net.core.busy_poll",
        "net.core.busy_read",
        "net.core.default_qdisc",
        "net.core.max_skb_frags",
        "net.core.rps_sock_flow_entries",
        "net.core.flow_limit_cpu_bitmap",
        "net.core.flow_limit_table_len",
        "net.core.bpf_jit_enable",
        "net.core.bpf_jit_harden",
        "net.core.bpf_jit_kallsyms",
        "net.core.bpf_jit_limit",
        "net.core.high_order_alloc_disable",
        "net.core.skb_defer_max",
        "net.core.warnings",
        "net.core.devconf_inherit_init_net",
        "net.core.fb_tunnels_only_for_init_net",
        "net.ipv4.tcp_mem",
        "net.ipv4.udp_mem",
        "net.ipv4.route.max_size",
        "net.ipv4.inet_peer_threshold",
        "net.ipv4.inet_peer_minttl",
        "net.ipv4.inet_peer_maxttl",
        "net.netfilter.nf_conntrack_max",
        "net.nf_conntrack_max",
    )
)

# Non-net keys that live in the IPC or UTS namespace (what Docker accepts in a container's ``sysctls``).
_NAMESPACED_OTHER_KEYS = frozenset(
    (
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.hostname",
        "kernel.domainname",
    )
)

_HOST_PREFIXES = ("vm.", "fs.", "kernel.", "dev.", "abi.", "debug.", "crypto.", "sunrpc.", "user.")


def sysctl_scope(key: Any) -> str:
    """Return ``namespaced`` when each network/IPC namespace (each container) has its own copy of ``key``,
    ``host`` when the kernel keeps one value for the whole machine.

    A namespaced key set on the host changes only the host's namespace (which is what Docker's own routing
    needs for ``net.ipv4.ip_forward``); containers get theirs from ``sysctls:`` in their Compose service.
    """
    name = "sysctl_scope"
    if not isinstance(key, str) or not key.strip():
        raise AnsibleFilterError(f"{name}: key must be a non-empty string such as 'vm.swappiness', got {key!r}")
    norm = key.strip().replace("/", ".")
    if norm.startswith("net."):
        return "host" if norm in _HOST_WIDE_NET_KEYS else "namespaced"
    if norm in _NAMESPACED_OTHER_KEYS or norm.startswith("fs.mqueue."):
        return "namespaced"
    if norm.startswith(_HOST_PREFIXES):
        return "host"
    raise AnsibleFilterError(f"{name}: key {key!r} is not a known sysctl hierarchy (vm., fs., kernel., net., ...)")


# ---------------------------------------------------------------------------------------------------------------
# pgtune
# ---------------------------------------------------------------------------------------------------------------

_KB_PER_MB = 1024
_KB_PER_GB = 1024 * 1024

_STORAGE_IO_CONCURRENCY = {"ssd": 200, "nvme": 1000, "san": 300, "hdd": 2}
_WORKLOAD_WAL = {"web": (1024, 4096), "oltp": (2048, 8192), "mixed": (1024, 4096)}
# PostgreSQL's own defaults, used when the host has fewer than 4 CPUs (pgtune leaves them alone there).
_PG_DEFAULT_WORKERS = 8
_PG_DEFAULT_PER_GATHER = 2
_PG_DEFAULT_MAINTENANCE_WORKERS = 2


def _pg_size(kb: int) -> str:
    """Format a size in kB the way postgresql.conf accepts it: whole MB when exact, else kB."""
    if kb % _KB_PER_MB == 0:
        return f"{kb // _KB_PER_MB}MB"
    return f"{kb}kB"


def pgtune(
    ram_mb: Any,
    cpus: Any,
    max_connections: Any = 200,
    storage: Any = "ssd",
    workload: Any = "mixed",
    pg_version: Any = 18,
) -> Dict[str, str]:
    """Return postgresql.conf settings (strings, sizes as ``NMB``/``NkB``) for ``ram_mb`` MiB given to PostgreSQL.

    Follows the rules of current pgtune (le0pard/pgtune) for PostgreSQL 18 on Linux, with the "DB size between
    RAM and disk" assumption (no work_mem boost or cut):

    - shared_buffers = RAM/4, effective_cache_size = 3/4 RAM, maintenance_work_mem = RAM/16 capped at 8 GB,
      autovacuum_work_mem capped at 2 GB when maintenance_work_mem reaches 2 GB (else -1 = same as it).
    - wal_buffers = 3 % of shared_buffers, at most 16 MB (rounded up to 16 MB above 14 MB), at least 32 kB.
    - work_mem = (RAM - shared_buffers) / ((max_connections + max_worker_processes) * 3), halved for ``mixed``,
      never below 4 MB.
    - Parallel workers from ``cpus`` when cpus >= 4 (per gather and maintenance: ceil(cpus/2) capped at 4);
      below 4 CPUs PostgreSQL's defaults (8/2/8/2) are written out explicitly so the keys are always present.
    - huge_pages = try once shared_buffers reaches 2 GB (falls back to normal pages when the host reserved
      none), jit = off, wal_compression = lz4 (``on``, i.e. pglz, before PostgreSQL 15).
    - io_method = worker, not pgtune's io_uring: Docker's default seccomp profile blocks io_uring, and
      PostgreSQL refuses to start when the method cannot be set up.
    """
    name = "pgtune"
    ram_mb = _int_arg(name, "ram_mb", ram_mb, minimum=0)
    if ram_mb < 256:
        raise AnsibleFilterError(f"{name}: ram_mb must be at least 256 (MiB for PostgreSQL), got {ram_mb}")
    cpus = _int_arg(name, "cpus", cpus, minimum=1)
    max_connections = _int_arg(name, "max_connections", max_connections, minimum=1)
    if max_connections > 262143:
        raise AnsibleFilterError(f"{name}: max_connections must be at most 262143, got {max_connections}")
    storage = _choice_arg(name, "storage", storage, tuple(_STORAGE_IO_CONCURRENCY))
    workload = _choice_arg(name, "workload", workload, tuple(_WORKLOAD_WAL))

    ram_kb = ram_mb * _KB_PER_MB
    shared_buffers = ram_kb // 4
    effective_cache_size = ram_kb * 3 // 4
    maintenance_work_mem = min(ram_kb // 16, 8 * _KB_PER_GB)
    autovacuum_work_mem = "-1"
    if maintenance_work_mem >= 2 * _KB_PER_GB:
        autovacuum_work_mem = _pg_size(2 * _KB_PER_GB)

    wal_buffers = 3 * shared_buffers // 100
    if wal_buffers > 14 * _KB_PER_MB:
        wal_buffers = 16 * _KB_PER_MB
    wal_buffers = max(wal_buffers, 32)

    if cpus >= 4:
        workers = cpus
        per_gather = min(4, math.ceil(cpus / 2))
        maintenance_workers = min(4, math.ceil(cpus / 2))
    else:
        workers = _PG_DEFAULT_WORKERS
        per_gather = _PG_DEFAULT_PER_GATHER
        maintenance_workers = _PG_DEFAULT_MAINTENANCE_WORKERS

    work_mem = (ram_kb - shared_buffers) // ((max_connections + workers) * 3)
    if workload == "mixed":
        work_mem //= 2
    work_mem = max(work_mem, 4 * _KB_PER_MB)

    if cpus >= 32:
        autovacuum_max_workers = 5
    elif cpus >= 16:
        autovacuum_max_workers = 4
    else:
        autovacuum_max_workers = 3

    min_wal, max_wal = _WORKLOAD_WAL[workload]
    pg_version = _int_arg("pgtune", "pg_version", pg_version, minimum=13)
    settings = {
        "max_connections": str(max_connections),
        "shared_buffers": _pg_size(shared_buffers),
        "effective_cache_size": _pg_size(effective_cache_size),
        "maintenance_work_mem": _pg_size(maintenance_work_mem),
        "autovacuum_work_mem": autovacuum_work_mem,
        "autovacuum_max_workers": str(autovacuum_max_workers),
        "work_mem": _pg_size(work_mem),
        "wal_buffers": _pg_size(wal_buffers),
        "min_wal_size": _pg_size(min_wal * _KB_PER_MB),
        "max_wal_size": _pg_size(max_wal * _KB_PER_MB),
        "checkpoint_completion_target": "0.9",
        # lz4 (faster than pglz) is accepted from PostgreSQL 15; before, wal_compression is a boolean.
        "wal_compression": "lz4" if pg_version >= 15 else "on",
        "default_statistics_target": "100",
        "random_page_cost": "4" if storage == "hdd" else "1.1",
        "effective_io_concurrency": str(_STORAGE_IO_CONCURRENCY[storage]),
        "io_method": "worker",
        "io_workers": str(min(32, max(3, cpus // 4))),
        "huge_pages": "try" if shared_buffers >= 2 * _KB_PER_GB else "off",
        "jit": "off",
        "max_worker_processes": str(workers),
        "max_parallel_workers_per_gather": str(per_gather),
        "max_parallel_workers": str(workers),
        "max_parallel_maintenance_workers": str(maintenance_workers),
    }
    if pg_version < 18:  # asynchronous I/O settings appeared in PostgreSQL 18
        del settings["io_method"], settings["io_workers"]
    return settings


# ---------------------------------------------------------------------------------------------------------------
# ram_budget
# ---------------------------------------------------------------------------------------------------------------

_POSTGRESQL_SHARE = 0.75  # of the container limit, handed to pgtune (the rest: backends, extensions, page tables)
_REDIS_SHARE = 0.75  # maxmemory of the container limit (headroom for fork copy-on-write and fragmentation)
_MONGODB_MIN_CACHE_GB = 0.25


def _service_specs(filter_name: str, services: Any) -> Dict[str, Dict[str, Any]]:
    """Normalise ``services`` ({container: {weight, min_mb[, max_mb][, count]}}, from the registry's memory_specs
    filter) into {name: {weight, min_mb, max_mb, count}}, in input order."""
    if not isinstance(services, Mapping):
        raise AnsibleFilterError(
            f"{filter_name}: services must be a dict container -> {{weight, min_mb, max_mb, count}} (the registry's "
            f"borgstack.stack.memory_specs), got {type(services).__name__}"
        )
    specs: Dict[str, Dict[str, Any]] = {}
    for svc, settings in services.items():
        if not isinstance(settings, Mapping):
            raise AnsibleFilterError(
                f"{filter_name}: services.{svc} must be a dict (weight, min_mb, max_mb, count), "
                f"got {type(settings).__name__}"
            )
        extra = sorted(set(settings) - {"weight", "min_mb", "max_mb", "count"})
        if extra:
            raise AnsibleFilterError(f"{filter_name}: services.{svc} has unknown key(s) {', '.join(map(str, extra))}")
        for key in ("weight", "min_mb"):
            if key not in settings:
                raise AnsibleFilterError(f"{filter_name}: services.{svc}.{key} is required")
        weight = _number_arg(filter_name, f"services.{svc}.weight", settings["weight"])
        if weight <= 0:
            raise AnsibleFilterError(f"{filter_name}: services.{svc}.weight must be positive, got {weight:g}")
        min_mb = _int_arg(filter_name, f"services.{svc}.min_mb", settings["min_mb"], 1)
        max_mb = settings.get("max_mb")
        if max_mb is not None:
            max_mb = _int_arg(filter_name, f"services.{svc}.max_mb", max_mb, 1)
            if max_mb < min_mb:
                raise AnsibleFilterError(
                    f"{filter_name}: services.{svc}.max_mb ({max_mb}) is below its min_mb ({min_mb})"
                )
        count = _int_arg(filter_name, f"services.{svc}.count", settings.get("count", 1), 0)
        if count == 0:
            continue
        specs[str(svc)] = {"weight": weight, "min_mb": min_mb, "max_mb": max_mb, "count": count}
    return specs


def _allocated(specs: Mapping[str, Mapping[str, Any]], scale: float) -> Dict[str, float]:
    """Per-container limit at ``scale`` (one replica's)."""
    out = {}
    for svc, spec in specs.items():
        value = max(float(spec["min_mb"]), spec["weight"] * scale)
        if spec["max_mb"] is not None:
            value = min(value, float(spec["max_mb"]))
        out[svc] = value
    return out


def _total(specs: Mapping[str, Mapping[str, Any]], limits: Mapping[str, float]) -> float:
    return sum(limits[svc] * specs[svc]["count"] for svc in specs)


def _distribute(specs: Mapping[str, Mapping[str, Any]], budget_mb: int) -> Dict[str, int]:
    """Weighted water-filling: limit = clamp(weight * scale, min, max) with the largest scale whose total fits."""
    if not specs:
        return {}
    # Upper bound for the scale: every service at max (or at budget when uncapped) is reached by then.
    high = max(max(budget_mb, spec["max_mb"] or 0) / spec["weight"] for spec in specs.values())
    if _total(specs, _allocated(specs, high)) <= budget_mb:
        scale = high
    else:
        low = 0.0  # at scale 0 every service sits at its minimum, which the caller checked fits
        for _step in range(200):
            mid = (low + high) / 2
            if _total(specs, _allocated(specs, mid)) <= budget_mb:
                low = mid
            else:
                high = mid
        scale = low
    # The bisection stops a hair below an exact result (1663.9999... for 1664): the epsilon keeps such values
    # whole. The sum of count * floor(v + eps) stays <= floor(sum(count * v) + n * eps) = budget_mb as n * eps < 1.
    return {svc: int(math.floor(value + 1e-6)) for svc, value in _allocated(specs, scale).items()}


def ram_budget(
    total_mb: Any,
    services: Any,
    reserve_mb: Any = None,
    cap_ratio: Any = 0.85,
) -> Dict[str, Any]:
    """Split the host's RAM into container memory limits for the enabled services' containers.

    ``services`` is the registry's memory catalogue (filter ``memory_specs``): {container: {weight, min_mb,
    max_mb, count}}; a worker with ``count`` replicas gets one limit per replica, all counted in the sum.

    The OS keeps ``reserve_mb`` (default max(1024, 10 % of RAM)); the sum of container limits never exceeds
    ``cap_ratio * total_mb`` nor ``total_mb - reserve_mb``. Each enabled service gets at least its ``min_mb``;
    what is left is shared by weight (capped by ``max_mb``). Derived settings: the RAM pgtune should assume for
    PostgreSQL (75 % of its limit, rounded down to 16 MiB), Redis ``maxmemory`` (75 % of its limit) and MongoDB's WiredTiger cache
    (50 % of (limit - 1 GiB), at least 0.25 GB, rounded down to 2 decimals - mongod's own rule applied to the
    container limit).
    """
    name = "ram_budget"
    total_mb = _int_arg(name, "total_mb", total_mb, minimum=1)
    cap = _number_arg(name, "cap_ratio", cap_ratio)
    if not 0 < cap <= 1:
        raise AnsibleFilterError(f"{name}: cap_ratio must be greater than 0 and at most 1, got {cap:g}")
    if reserve_mb is None:
        reserve = max(1024, total_mb // 10)
    else:
        reserve = _int_arg(name, "reserve_mb", reserve_mb, minimum=0)
    if reserve >= total_mb:
        raise AnsibleFilterError(
            f"{name}: reserve_mb ({reserve}) leaves nothing of total_mb ({total_mb}) for the services"
        )
    specs = _service_specs(name, services)

    budget = min(int(math.floor(total_mb * cap)), total_mb - reserve)
    minimum_total = sum(spec["min_mb"] * spec["count"] for spec in specs.values())
    if minimum_total > budget:
        detail = ", ".join(f"{svc}={spec['min_mb']}" + (f"x{spec['count']}" if spec["count"] > 1 else "")
                           for svc, spec in specs.items())
        raise AnsibleFilterError(
            f"{name}: the minimums of the enabled services ({detail}; sum {minimum_total} MiB) do not fit the "
            f"budget of {budget} MiB (total_mb {total_mb}, reserve_mb {reserve}, cap_ratio {cap:g}); "
            f"disable services, lower their min_mb or use a larger host"
        )

    limits = _distribute(specs, budget)
    plan: Dict[str, Any] = {
        "total_mb": total_mb,
        "reserve_mb": reserve,
        "budget_mb": budget,
        "allocated_mb": sum(limit * specs[svc]["count"] for svc, limit in limits.items()),
        "services": {svc: {"limit_mb": limit, "count": specs[svc]["count"]} for svc, limit in limits.items()},
    }
    if "postgresql" in limits:
        # Rounded down to 16 MiB so that pgtune's sizes come out in whole MB.
        plan["postgresql"] = {"ram_mb": int(limits["postgresql"] * _POSTGRESQL_SHARE) // 16 * 16}
    if "redis" in limits:
        plan["redis"] = {"maxmemory_mb": int(limits["redis"] * _REDIS_SHARE)}
    if "mongodb" in limits:
        # Integer arithmetic in hundredths of a GiB, so the rounding down is exact.
        cache_centi_gb = (limits["mongodb"] - 1024) * 50 // 1024
        plan["mongodb"] = {"wiredtiger_cache_gb": max(_MONGODB_MIN_CACHE_GB, round(cache_centi_gb / 100, 2))}
    return plan


def sysctl_floor(wanted: Any, live: Any) -> Dict[str, Any]:
    """Keep a host's higher value for keys that are lower bounds (SYSCTL_FLOOR_KEYS).

    ``wanted`` is the dict from kernel_sysctl (possibly with overrides); ``live`` maps keys to the values the host
    has now (strings as read from /proc/sys, or numbers; missing keys are ignored). Returns a new dict.
    """
    if not isinstance(wanted, Mapping):
        raise AnsibleFilterError(f"sysctl_floor: the input must be a dict of sysctl settings, got {type(wanted).__name__}")
    if not isinstance(live, Mapping):
        raise AnsibleFilterError(f"sysctl_floor: 'live' must be a dict of current values, got {type(live).__name__}")
    result = dict(wanted)
    for key in SYSCTL_FLOOR_KEYS & set(result):
        current = str(live.get(key, "")).strip()
        if current.isdigit() and str(result[key]).strip().isdigit() and int(current) > int(result[key]):
            result[key] = int(current)
    return result


class FilterModule(NamedFilters):
    """BorgStack sizing filters."""

    FILTERS = (kernel_sysctl, sysctl_scope, sysctl_floor, pgtune, ram_budget)
