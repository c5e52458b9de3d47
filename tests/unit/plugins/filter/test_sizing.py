# SPDX-License-Identifier: GPL-3.0-or-later
"""Table-driven tests of the sizing filters (kernel_sysctl, sysctl_scope, pgtune, ram_budget).

Expected values were worked out by hand from the rules documented in docs/sizing.md, not copied from output.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import sizing
from ansible_collections.borgstack.stack.plugins.filter.sizing import (
    FilterModule,
    kernel_sysctl,
    pgtune,
    ram_budget,
    sysctl_floor,
    sysctl_scope,
)

from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error

# The architecture's 13 components as memory specs (test data: the registry carries the shipped ones; see
# tests/unit/plugins/filter/test_registry.py for the plan of the registry itself).
CATALOGUE = {
    "postgresql": {"weight": 30, "min_mb": 1024, "max_mb": None},
    "mongodb": {"weight": 6, "min_mb": 1024, "max_mb": None},
    "redis": {"weight": 4, "min_mb": 256, "max_mb": None},
    "seaweedfs": {"weight": 4, "min_mb": 512, "max_mb": None},
    "caddy": {"weight": 1, "min_mb": 128, "max_mb": 1024},
    "n8n": {"weight": 10, "min_mb": 1024, "max_mb": None},
    "evolution": {"weight": 5, "min_mb": 512, "max_mb": None},
    "chatwoot": {"weight": 6, "min_mb": 1024, "max_mb": None},
    "chatwoot-worker": {"weight": 5, "min_mb": 768, "max_mb": None},
    "lowcoder": {"weight": 6, "min_mb": 1536, "max_mb": None},
    "directus": {"weight": 4, "min_mb": 512, "max_mb": None},
    "fileflows": {"weight": 4, "min_mb": 512, "max_mb": None},
    "duplicati": {"weight": 2, "min_mb": 512, "max_mb": 4096},
}
ALL_SERVICES = list(CATALOGUE)


def S(names):
    """The memory specs of ``names`` from the catalogue."""
    return {name: dict(CATALOGUE[name]) for name in names}


# ---------------------------------------------------------------------------------------------------------------
# kernel_sysctl
# ---------------------------------------------------------------------------------------------------------------

# ram_mb: (swappiness, max_map_count, file-max, inotify watches, somaxconn = syn backlog, netdev_max_backlog)
SYSCTL_TABLE = {
    4096: (10, 262144, 1048576, 262144, 4096, 4096),  # 4096 * 1024 / 10 = 419430 < floor 1048576
    16384: (10, 262144, 1677721, 524288, 8192, 8192),  # 16777216 / 10 = 1677721.6
    36864: (10, 524288, 3774873, 1048576, 16384, 16384),  # 37748736 / 10
    131072: (1, 1048576, 13421772, 1048576, 65535, 32768),  # 134217728 / 10
}


@pytest.mark.parametrize("ram_mb", sorted(SYSCTL_TABLE))
def test_kernel_sysctl_table(ram_mb):
    swappiness, map_count, file_max, watches, somaxconn, netdev = SYSCTL_TABLE[ram_mb]
    assert kernel_sysctl(ram_mb) == {
        "vm.overcommit_memory": 1,
        "vm.swappiness": swappiness,
        "vm.max_map_count": map_count,
        "fs.file-max": file_max,
        "fs.inotify.max_user_watches": watches,
        "fs.inotify.max_user_instances": 1024,
        "net.core.somaxconn": somaxconn,
        "net.ipv4.tcp_max_syn_backlog": somaxconn,
        "net.core.netdev_max_backlog": netdev,
        "net.ipv4.ip_forward": 1,
    }


@pytest.mark.parametrize(
    "memtotal_mb, nominal_mb",
    [
        # What ansible_memtotal_mb reports on real hosts is below the nominal RAM: same class as nominal.
        (3915, 4096),
        (15990, 16384),
        (35800, 36864),
        (128700, 131072),
    ],
)
def test_kernel_sysctl_memtotal_lands_in_nominal_class(memtotal_mb, nominal_mb):
    got = kernel_sysctl(memtotal_mb)
    want = kernel_sysctl(nominal_mb)
    for key in ("vm.swappiness", "vm.max_map_count", "net.core.somaxconn", "fs.inotify.max_user_watches"):
        assert got[key] == want[key], key


@pytest.mark.parametrize(
    "ram_mb, somaxconn",
    [(15359, 4096), (15360, 8192), (30719, 8192), (30720, 16384), (61439, 16384), (61440, 65535)],
)
def test_kernel_sysctl_class_boundaries(ram_mb, somaxconn):
    assert kernel_sysctl(ram_mb)["net.core.somaxconn"] == somaxconn


def test_kernel_sysctl_never_disables_forwarding_or_lowers_somaxconn_below_kernel_default():
    for ram_mb in (1024, 2048, 8192, 500000):
        values = kernel_sysctl(ram_mb)
        assert values["net.ipv4.ip_forward"] == 1
        assert values["net.core.somaxconn"] >= 4096
        assert values["vm.max_map_count"] >= 262144


def test_kernel_sysctl_accepts_cpus_and_integral_float():
    assert kernel_sysctl(16384, 8) == kernel_sysctl(16384.0)


@pytest.mark.parametrize(
    "args, words",
    [
        ((-1,), "ram_mb"),
        ((0,), "ram_mb"),
        ((512,), "ram_mb"),
        (("16384",), "ram_mb"),
        ((True,), "ram_mb"),
        ((16384.5,), "ram_mb"),
        ((None,), "ram_mb"),
        ((16384, 0), "cpus"),
        ((16384, "4"), "cpus"),
    ],
)
def test_kernel_sysctl_bad_input(args, words):
    with pytest.raises(AnsibleFilterError, match=words):
        kernel_sysctl(*args)


# ---------------------------------------------------------------------------------------------------------------
# sysctl_scope
# ---------------------------------------------------------------------------------------------------------------

SCOPE_TABLE = {
    # every key kernel_sysctl emits
    "vm.overcommit_memory": "host",
    "vm.swappiness": "host",
    "vm.max_map_count": "host",
    "fs.file-max": "host",
    "fs.inotify.max_user_watches": "host",
    "fs.inotify.max_user_instances": "host",
    "net.core.somaxconn": "namespaced",  # per netns (netns_core_table)
    "net.ipv4.tcp_max_syn_backlog": "namespaced",  # per netns since 4.13
    "net.core.netdev_max_backlog": "host",  # init_net only
    "net.ipv4.ip_forward": "namespaced",
    # others
    "net.core.rmem_max": "host",
    "net.ipv4.tcp_mem": "host",
    "net.ipv4.tcp_rmem": "namespaced",
    "net.ipv4.ip_local_port_range": "namespaced",
    "net.netfilter.nf_conntrack_max": "host",
    "kernel.pid_max": "host",
    "kernel.shmmax": "namespaced",
    "kernel.sem": "namespaced",
    "fs.mqueue.msg_max": "namespaced",
    "net/core/somaxconn": "namespaced",
    "vm/swappiness": "host",
}


@pytest.mark.parametrize("key", sorted(SCOPE_TABLE))
def test_sysctl_scope_table(key):
    assert sysctl_scope(key) == SCOPE_TABLE[key]


def test_sysctl_scope_covers_every_emitted_key():
    for ram_mb in SYSCTL_TABLE:
        missing = set(kernel_sysctl(ram_mb)) - set(SCOPE_TABLE)
        assert not missing, f"classify these keys in SCOPE_TABLE: {missing}"


@pytest.mark.parametrize("key", ["", "   ", None, 42, "swappiness", "bogus.key"])
def test_sysctl_scope_bad_input(key):
    with pytest.raises(AnsibleFilterError, match="key"):
        sysctl_scope(key)


# ---------------------------------------------------------------------------------------------------------------
# pgtune
# ---------------------------------------------------------------------------------------------------------------

# Example PostgreSQL shares from small to large hosts (docs/sizing.md's own tables are checked against the filters by
# tests/unit/docs/test_sizing_doc.py); (ram_mb, cpus) -> settings that depend on RAM/CPUs.
# Arithmetic in kB: sb = ram_kb / 4; work_mem = (ram_kb - sb) // ((200 + workers) * 3) // 2 (mixed), >= 4096.
PGTUNE_HOSTS = {
    # 1248 MB: sb 319488 kB; wal 958464 // 100 = 9584 kB; work_mem 958464 // 624 // 2 = 768 -> floor 4MB
    (1248, 2): {
        "shared_buffers": "312MB", "effective_cache_size": "936MB", "maintenance_work_mem": "78MB",
        "autovacuum_work_mem": "-1", "work_mem": "4MB", "wal_buffers": "9584kB", "huge_pages": "off",
        "max_worker_processes": "8", "max_parallel_workers_per_gather": "2", "max_parallel_workers": "8",
        "max_parallel_maintenance_workers": "2", "io_workers": "3", "autovacuum_max_workers": "3",
    },
    # 3280 MB: ram_kb 3358720; sb 839680; wal 25190 kB > 16 MB -> 16MB; work_mem 2519040 // 612 // 2 = 2058 -> 4MB
    (3280, 4): {
        "shared_buffers": "820MB", "effective_cache_size": "2460MB", "maintenance_work_mem": "205MB",
        "autovacuum_work_mem": "-1", "work_mem": "4MB", "wal_buffers": "16MB", "huge_pages": "off",
        "max_worker_processes": "4", "max_parallel_workers_per_gather": "2", "max_parallel_workers": "4",
        "max_parallel_maintenance_workers": "2", "io_workers": "3", "autovacuum_max_workers": "3",
    },
    # 8096 MB: ram_kb 8290304; sb 2024 MB (< 2048: no huge pages); wal 62177 kB -> capped 16MB;
    # work_mem (8290304 - 2072576) // 624 = 9964 // 2 = 4982 kB
    (8096, 8): {
        "shared_buffers": "2024MB", "effective_cache_size": "6072MB", "maintenance_work_mem": "506MB",
        "autovacuum_work_mem": "-1", "work_mem": "4982kB", "wal_buffers": "16MB", "huge_pages": "off",
        "max_worker_processes": "8", "max_parallel_workers_per_gather": "4", "max_parallel_workers": "8",
        "max_parallel_maintenance_workers": "4", "io_workers": "3", "autovacuum_max_workers": "3",
    },
    # 28880 MB: ram_kb 29573120; sb 7220 MB; mwm 1805 MB (< 2 GB: autovacuum_work_mem -1);
    # work_mem 22179840 // 624 = 35544 // 2 = 17772 kB
    (28880, 8): {
        "shared_buffers": "7220MB", "effective_cache_size": "21660MB", "maintenance_work_mem": "1805MB",
        "autovacuum_work_mem": "-1", "work_mem": "17772kB", "wal_buffers": "16MB", "huge_pages": "try",
        "max_worker_processes": "8", "max_parallel_workers_per_gather": "4", "max_parallel_workers": "8",
        "max_parallel_maintenance_workers": "4", "io_workers": "3", "autovacuum_max_workers": "3",
    },
}

PGTUNE_CONSTANT = {
    "max_connections": "200",
    "min_wal_size": "1024MB",
    "max_wal_size": "4096MB",
    "checkpoint_completion_target": "0.9",
    "wal_compression": "lz4",
    "default_statistics_target": "100",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "io_method": "worker",
    "jit": "off",
}


@pytest.mark.parametrize("ram_mb, cpus", sorted(PGTUNE_HOSTS))
def test_pgtune_host_table(ram_mb, cpus):
    assert pgtune(ram_mb, cpus) == {**PGTUNE_CONSTANT, **PGTUNE_HOSTS[(ram_mb, cpus)]}


def test_pgtune_table_uses_the_postgresql_share_of_the_documented_plans():
    plans = {
        (1248, 2): ram_budget(4096, S(["postgresql", "redis", "caddy", "n8n"])),
        (3280, 4): ram_budget(16384, S(ALL_SERVICES)),
        (8096, 8): ram_budget(36864, S(ALL_SERVICES)),
        (28880, 8): ram_budget(131072, S(ALL_SERVICES)),
    }
    for (ram_mb, _cpus), plan in plans.items():
        assert plan["postgresql"]["ram_mb"] == ram_mb


# 16 GiB for PostgreSQL: ram_kb 16777216, sb 4194304, rest 12582912
# cpus 2 -> workers 8: 12582912 // 624 = 20164 // 2 = 10082; cpus 4 -> workers 4: // 612 = 20560 // 2 = 10280
PGTUNE_CPUS = {
    2: ("10082kB", "8", "2", "8", "2"),
    4: ("10280kB", "4", "2", "4", "2"),
    8: ("10082kB", "8", "4", "8", "4"),
    16: ("9709kB", "16", "4", "16", "4"),  # workers 16: 12582912 // 648 = 19418 // 2 = 9709
}


@pytest.mark.parametrize("cpus", sorted(PGTUNE_CPUS))
def test_pgtune_cpus_table(cpus):
    work_mem, workers, per_gather, parallel, maintenance = PGTUNE_CPUS[cpus]
    got = pgtune(16384, cpus)
    assert got["shared_buffers"] == "4096MB"
    assert got["effective_cache_size"] == "12288MB"
    assert got["maintenance_work_mem"] == "1024MB"
    assert got["wal_buffers"] == "16MB"
    assert got["huge_pages"] == "try"
    assert (
        got["work_mem"], got["max_worker_processes"], got["max_parallel_workers_per_gather"],
        got["max_parallel_workers"], got["max_parallel_maintenance_workers"],
    ) == (work_mem, workers, per_gather, parallel, maintenance)


@pytest.mark.parametrize(
    "cpus, per_gather, autovacuum_workers, io_workers",
    [(16, "4", "4", "4"), (32, "4", "5", "8"), (64, "4", "5", "16")],
)
def test_pgtune_many_cpus(cpus, per_gather, autovacuum_workers, io_workers):
    got = pgtune(16384, cpus)
    assert got["max_worker_processes"] == str(cpus)
    assert got["max_parallel_workers_per_gather"] == per_gather
    assert got["max_parallel_maintenance_workers"] == "4"
    assert got["autovacuum_max_workers"] == autovacuum_workers
    assert got["io_workers"] == io_workers


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # web does not halve work_mem: 12582912 // 612 = 20560 kB
        ({"workload": "web"}, {"work_mem": "20560kB", "min_wal_size": "1024MB", "max_wal_size": "4096MB"}),
        ({"workload": "oltp"}, {"work_mem": "20560kB", "min_wal_size": "2048MB", "max_wal_size": "8192MB"}),
        ({"storage": "hdd"}, {"random_page_cost": "4", "effective_io_concurrency": "2"}),
        ({"storage": "nvme"}, {"random_page_cost": "1.1", "effective_io_concurrency": "1000"}),
        ({"storage": "san"}, {"random_page_cost": "1.1", "effective_io_concurrency": "300"}),
        # 100 connections: 12582912 // ((100 + 4) * 3) = 40329 // 2 = 20164 kB
        ({"max_connections": 100}, {"max_connections": "100", "work_mem": "20164kB"}),
    ],
)
def test_pgtune_options(kwargs, expected):
    got = pgtune(16384, 4, **kwargs)
    for key, value in expected.items():
        assert got[key] == value, key


@pytest.mark.parametrize(
    "ram_mb, maintenance, autovacuum",
    [
        (16384, "1024MB", "-1"),
        (32768, "2048MB", "2048MB"),  # maintenance_work_mem reaches 2 GB: autovacuum capped at 2 GB
        (131072, "8192MB", "2048MB"),
        (262144, "8192MB", "2048MB"),  # RAM/16 = 16 GB, capped at 8 GB
    ],
)
def test_pgtune_maintenance_cap(ram_mb, maintenance, autovacuum):
    got = pgtune(ram_mb, 8)
    assert got["maintenance_work_mem"] == maintenance
    assert got["autovacuum_work_mem"] == autovacuum


@pytest.mark.parametrize(
    "ram_mb, wal_buffers",
    [
        (256, "1966kB"),  # sb 65536 kB, 3 % = 1966
        (1800, "13824kB"),  # sb 460800 kB, 3 % = 13824 (< 14 MB: kept)
        (2000, "16MB"),  # sb 512000 kB, 3 % = 15360 (between 14 and 16 MB: rounded up)
    ],
)
def test_pgtune_wal_buffers(ram_mb, wal_buffers):
    assert pgtune(ram_mb, 4)["wal_buffers"] == wal_buffers


def test_pgtune_huge_pages_from_two_gigabytes_of_shared_buffers():
    assert pgtune(8191, 4)["huge_pages"] == "off"
    assert pgtune(8192, 4)["huge_pages"] == "try"


def test_pgtune_sizes_are_postgresql_units():
    for ram_mb, cpus in PGTUNE_HOSTS:
        for key, value in pgtune(ram_mb, cpus).items():
            assert isinstance(value, str), key
            if key in ("shared_buffers", "effective_cache_size", "maintenance_work_mem", "work_mem", "wal_buffers"):
                number, unit = value[:-2], value[-2:]
                assert unit in ("MB", "kB") and number.isdigit(), (key, value)


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((-4096, 4), {}, "ram_mb"),
        ((100, 4), {}, "ram_mb"),
        (("4096", 4), {}, "ram_mb"),
        ((4096, 0), {}, "cpus"),
        ((4096, None), {}, "cpus"),
        ((4096, 2.5), {}, "cpus"),
        ((4096, 4), {"max_connections": 0}, "max_connections"),
        ((4096, 4), {"max_connections": 300000}, "max_connections"),
        ((4096, 4), {"storage": "floppy"}, "storage"),
        ((4096, 4), {"workload": "dw"}, "workload"),
    ],
)
def test_pgtune_bad_input(args, kwargs, words):
    with pytest.raises(AnsibleFilterError, match=words):
        pgtune(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# ram_budget
# ---------------------------------------------------------------------------------------------------------------

# host -> services enabled; 4 GB cannot hold every service, so its plan is the small set
BUDGET_HOSTS = {
    4096: ["postgresql", "redis", "caddy", "n8n"],
    16384: ALL_SERVICES,
    36864: ALL_SERVICES,
    131072: ALL_SERVICES,
}


@pytest.mark.parametrize("total_mb", sorted(BUDGET_HOSTS))
def test_ram_budget_invariants(total_mb):
    names = BUDGET_HOSTS[total_mb]
    plan = ram_budget(total_mb, S(names))
    limits = {svc: entry["limit_mb"] for svc, entry in plan["services"].items()}

    assert set(limits) == set(names)
    assert plan["total_mb"] == total_mb
    assert plan["reserve_mb"] == max(1024, total_mb // 10)
    assert plan["budget_mb"] <= 0.85 * total_mb
    assert plan["budget_mb"] <= total_mb - plan["reserve_mb"]
    assert sum(limits.values()) == plan["allocated_mb"] <= plan["budget_mb"]
    # the whole budget is handed out (a MiB per service may be lost to rounding down)
    assert plan["allocated_mb"] >= plan["budget_mb"] - len(names)
    for svc, limit in limits.items():
        assert isinstance(limit, int)
        assert limit >= CATALOGUE[svc]["min_mb"], svc
        if CATALOGUE[svc]["max_mb"] is not None:
            assert limit <= CATALOGUE[svc]["max_mb"], svc
    # services between their min and max get the same MiB per unit of weight (within rounding)
    free = [
        svc for svc, limit in limits.items()
        if limit > CATALOGUE[svc]["min_mb"] and limit != CATALOGUE[svc]["max_mb"]
    ]
    per_weight = [limits[svc] / CATALOGUE[svc]["weight"] for svc in free]
    assert max(per_weight) - min(per_weight) <= 1.0

    pg = limits["postgresql"]
    assert 0.75 * pg - 16 < plan["postgresql"]["ram_mb"] <= 0.75 * pg
    assert plan["postgresql"]["ram_mb"] % 16 == 0
    redis = limits["redis"]
    assert 0.74 * redis <= plan["redis"]["maxmemory_mb"] <= 0.75 * redis
    if "mongodb" in limits:
        cache = plan["mongodb"]["wiredtiger_cache_gb"]
        rule = (limits["mongodb"] - 1024) / 1024 / 2
        assert cache == round(cache, 2)
        assert cache >= 0.25
        assert cache == 0.25 or rule - 0.01 < cache <= rule
    else:
        assert "mongodb" not in plan


def test_ram_budget_36gb_is_proportional_to_weights():
    # At 36 GB every service is above its minimum and caddy below its 1024 cap: limit = weight * budget / 87.
    plan = ram_budget(36864, S(ALL_SERVICES))
    assert plan["budget_mb"] == 31334  # floor(36864 * 0.85); total - reserve = 33178 is larger
    weights = {"postgresql": 30, "mongodb": 6, "redis": 4, "seaweedfs": 4, "caddy": 1, "n8n": 10,
               "evolution": 5, "chatwoot": 6, "chatwoot-worker": 5, "lowcoder": 6, "directus": 4,
               "fileflows": 4, "duplicati": 2}
    for svc, weight in weights.items():
        assert abs(plan["services"][svc]["limit_mb"] - weight * 31334 / 87) < 1, svc


def test_ram_budget_4gb_small_set_by_hand():
    # budget min(3481, 4096 - 1024) = 3072; redis, caddy and n8n stay at their minimums (256 + 128 + 1024),
    # postgresql takes the rest: 1664; pgtune share 0.75 * 1664 = 1248, redis maxmemory 0.75 * 256 = 192.
    plan = ram_budget(4096, S(["postgresql", "redis", "caddy", "n8n"]))
    assert plan["budget_mb"] == 3072
    assert {svc: e["limit_mb"] for svc, e in plan["services"].items()} == {
        "postgresql": 1664, "redis": 256, "caddy": 128, "n8n": 1024,
    }
    assert plan["postgresql"] == {"ram_mb": 1248}
    assert plan["redis"] == {"maxmemory_mb": 192}
    assert "mongodb" not in plan


@pytest.mark.parametrize(
    "total_mb, services, kwargs, expected",
    [
        # 13926 split 30:4 -> 12287.6 and 1638.4
        (16384, S(["postgresql", "redis"]), {}, {"postgresql": 12287, "redis": 1638}),
        # caddy alone stops at its 1024 cap
        (16384, S(["caddy"]), {}, {"caddy": 1024}),
        # the reserve is the tighter bound: 16384 - 8192
        (16384, S(["postgresql"]), {"reserve_mb": 8192}, {"postgresql": 8192}),
        (16384, S(["postgresql"]), {"cap_ratio": 0.5}, {"postgresql": 8192}),
        # budget min(6963, 7168); redis capped at 512, postgresql the rest, n8n switched off
        (8192, {"postgresql": {"weight": 1, "min_mb": 2048}, "redis": {"weight": 1, "min_mb": 256, "max_mb": 512},
                "n8n": {"weight": 10, "min_mb": 1024, "count": 0}}, {}, {"postgresql": 6451, "redis": 512}),
        # three workers of weight 1 and one web of weight 1: each gets a quarter (13926 / 4 = 3481.5)
        (16384, {"web": {"weight": 1, "min_mb": 64}, "worker": {"weight": 1, "min_mb": 64, "count": 3}}, {},
         {"web": 3481, "worker": 3481}),
    ],
)
def test_ram_budget_cases(total_mb, services, kwargs, expected):
    plan = ram_budget(total_mb, services, **kwargs)
    assert {svc: e["limit_mb"] for svc, e in plan["services"].items()} == expected


def test_ram_budget_postgresql_share_is_rounded_down_to_16_mib():
    # limit 12287 (see the cases above): 0.75 * 12287 = 9215.25 -> 9215 -> 9200
    plan = ram_budget(16384, S(["postgresql", "redis"]))
    assert plan["postgresql"] == {"ram_mb": 9200}
    assert plan["redis"] == {"maxmemory_mb": 1228}  # 0.75 * 1638 = 1228.5


def test_ram_budget_mongodb_cache_rounds_down():
    # mongodb alone on 16 GB: limit 13926; (13926 - 1024) / 2048 = 6.2998 -> 6.29 (not 6.30)
    plan = ram_budget(16384, S(["mongodb"]))
    assert plan["mongodb"] == {"wiredtiger_cache_gb": 6.29}
    # at its 1024 minimum the rule gives 0: the floor is 0.25
    assert ram_budget(4096, S(["mongodb", "n8n"]), reserve_mb=2048)["mongodb"] == {"wiredtiger_cache_gb": 0.25}


def test_ram_budget_only_enabled_services_get_derived_settings():
    plan = ram_budget(16384, S(["n8n"]))
    assert set(plan) == {"total_mb", "reserve_mb", "budget_mb", "allocated_mb", "services"}


def test_ram_budget_all_services_do_not_fit_on_4gb():
    with pytest.raises(AnsibleFilterError) as err:
        ram_budget(4096, S(ALL_SERVICES))
    message = str(err.value)
    for svc in ALL_SERVICES:
        assert svc in message
    assert "3072" in message  # the budget it could not fit


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((16384, ["postgresql", "redis"]), {}, "memory_specs"),
        ((16384, {"mysql": {}}), {}, "services.mysql.weight is required"),
        ((16384, {"mysql": {"weight": 1}}), {}, "services.mysql.min_mb is required"),
        ((16384, "postgresql"), {}, "services"),
        ((16384, {"redis": {"weight": 1, "min_mb": 64, "count": -1}}), {}, "services.redis.count"),
        ((4096, {"w": {"weight": 1, "min_mb": 1024, "count": 4}}), {}, "w=1024x4"),
        ((-16384, ["redis"]), {}, "total_mb"),
        (("16384", ["redis"]), {}, "total_mb"),
        ((16384, ["redis"]), {"cap_ratio": 0}, "cap_ratio"),
        ((16384, ["redis"]), {"cap_ratio": 1.5}, "cap_ratio"),
        ((16384, ["redis"]), {"reserve_mb": -1}, "reserve_mb"),
        ((16384, ["redis"]), {"reserve_mb": 16384}, "reserve_mb"),
        ((16384, {"redis": {"weight": 0, "min_mb": 64}}), {}, "services.redis.weight"),
        ((16384, {"redis": {"weight": 1, "min_mb": -5}}), {}, "services.redis.min_mb"),
        ((16384, {"redis": {"weight": 1, "min_mb": 512, "max_mb": 256}}), {}, "services.redis.max_mb"),
        ((16384, {"redis": {"weight": 1, "min_mb": 64, "limit": 5}}), {}, "services.redis"),
        ((16384, {"redis": "big"}), {}, "services.redis"),
        ((2048, {"postgresql": {"weight": 1, "min_mb": 4096}}), {}, "postgresql=4096"),
    ],
)
def test_ram_budget_bad_input(args, kwargs, words):
    with pytest.raises(AnsibleFilterError, match=words):
        ram_budget(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Plugin wiring and the sidecar docs (what ansible-doc shows) agree with the code
# ---------------------------------------------------------------------------------------------------------------

FILTER_DIR = Path(sizing.__file__).resolve().parent


def test_filter_module_exports():
    assert FilterModule().filters() == {
        "kernel_sysctl": kernel_sysctl,
        "sysctl_scope": sysctl_scope,
        "sysctl_floor": sysctl_floor,
        "pgtune": pgtune,
        "ram_budget": ram_budget,
    }


@pytest.mark.parametrize("name", ["kernel_sysctl", "sysctl_scope", "pgtune", "ram_budget"])
def test_sidecar_doc_matches_signature(name):
    check_sidecar_doc(getattr(sizing, name), FILTER_DIR / f"{name}.yml")


@pytest.mark.parametrize(
    "wanted,live,expected",
    [
        ({"fs.file-max": 1048576}, {"fs.file-max": "9223372036854775807"}, {"fs.file-max": 9223372036854775807}),
        ({"fs.file-max": 2468352}, {"fs.file-max": "1000000\n"}, {"fs.file-max": 2468352}),
        ({"vm.max_map_count": 262144}, {"vm.max_map_count": "2147483642"}, {"vm.max_map_count": 2147483642}),
        # Not a floor key: the computed value wins even when the live one is higher.
        ({"net.core.somaxconn": 4096}, {"net.core.somaxconn": "65535"}, {"net.core.somaxconn": 4096}),
        ({"vm.max_map_count": 262144}, {}, {"vm.max_map_count": 262144}),
    ],
)
def test_sysctl_floor(wanted, live, expected):
    assert sysctl_floor(wanted, live) == expected


def test_sysctl_floor_rejects_non_dicts():
    with pytest.raises(AnsibleFilterError, match="live"):
        sysctl_floor({"fs.file-max": 1}, ["fs.file-max"])


@pytest.mark.parametrize("version,has_io", [(18, True), (17, False), (15, False)])
def test_pgtune_io_settings_only_for_postgresql_18(version, has_io):
    settings = pgtune(4096, 4, pg_version=version)
    assert ("io_method" in settings) is has_io
    assert ("io_workers" in settings) is has_io
    assert settings["shared_buffers"] == "1024MB"


def test_pgtune_rejects_an_ancient_version():
    with pytest.raises(AnsibleFilterError, match="pg_version"):
        pgtune(4096, 4, pg_version=9)


# ---------------------------------------------------------------------------------------------------------------
# pgtune: the upstream project's own test expectations
# ---------------------------------------------------------------------------------------------------------------
# le0pard/pgtune, src/features/configuration/__tests__/configurationSlice.test.js (commit 7caef27, 2026-07): every
# case our inputs can express - Linux, web/oltp/mixed, DB size "between RAM and disk" (upstream's default mid_ram),
# PostgreSQL 13 or newer. Not expressible here: Windows/macOS, dw/desktop, less_ram/greater_ram, PostgreSQL < 13,
# and the warning texts. Upstream has no test of shared_buffers, effective_cache_size or wal_buffers; those rules
# are pinned by PGTUNE_HOSTS above.
#
# Each case is (the upstream test's name, our arguments, upstream's expected values). Sizes are in kB as upstream
# writes them; None means upstream leaves the key out of the config. Where our filter deliberately differs (see
# docs/sizing.md), the case carries OURS: the value we produce instead, and why.
_UPSTREAM_DEFAULTS: dict = {"ram_mb": 4096, "cpus": 4, "workload": "web", "pg_version": 18}
_SIZE_KEYS = {"shared_buffers", "effective_cache_size", "maintenance_work_mem", "autovacuum_work_mem", "work_mem",
              "wal_buffers", "min_wal_size", "max_wal_size"}


def _as_upstream(key: str, value: str):
    """Our string setting as upstream's value: sizes in kB, numbers as numbers."""
    if key in _SIZE_KEYS and value != "-1":
        number, unit = re.fullmatch(r"(\d+)(kB|MB|GB)", value).groups()
        return int(number) * {"kB": 1, "MB": 1024, "GB": 1024 * 1024}[unit]
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"\d+\.\d+", value):
        return float(value)
    return value


def _upstream(name: str, args: dict, expected: dict, ours: dict | None = None, why: str = ""):
    assert bool(ours) == bool(why), f"{name}: a difference from upstream needs its reason, and only a difference"
    return pytest.param({**_UPSTREAM_DEFAULTS, **args}, expected, ours or {}, id=name.replace(" ", "-"))


# Deliberate differences, with the reason (docs/sizing.md, "pgtune: regras implementadas").
_WHY_EXPLICIT = "we write PostgreSQL's default explicitly so the key is always present in postgresql.conf"
_WHY_CONNECTIONS = ("max_connections comes from postgresql_max_connections (default 200 for every workload); "
                    "the filter passes it through instead of guessing per workload")
_WHY_IO_URING = "io_method = worker: Docker's default seccomp profile blocks io_uring and PostgreSQL would not start"

PGTUNE_UPSTREAM = [
    _upstream("selectMaxConnections web app", {"max_connections": 200}, {"max_connections": 200}),
    _upstream("selectMaxConnections oltp app", {"workload": "oltp"}, {"max_connections": 300},
              {"max_connections": 200}, _WHY_CONNECTIONS),
    _upstream("selectMaxConnections mixed app", {"workload": "mixed"}, {"max_connections": 100},
              {"max_connections": 200}, _WHY_CONNECTIONS),
    _upstream("selectDefaultStatisticsTarget web app", {}, {"default_statistics_target": 100}),
    _upstream("selectDefaultStatisticsTarget oltp app", {"workload": "oltp"}, {"default_statistics_target": 100}),
    _upstream("selectDefaultStatisticsTarget mixed app", {"workload": "mixed"}, {"default_statistics_target": 100}),
    _upstream("selectRandomPageCost hdd", {"storage": "hdd"}, {"random_page_cost": 4}),
    _upstream("selectRandomPageCost ssd", {"storage": "ssd"}, {"random_page_cost": 1.1}),
    _upstream("selectRandomPageCost san", {"storage": "san"}, {"random_page_cost": 1.1}),
    _upstream("selectRandomPageCost nvme", {"storage": "nvme"}, {"random_page_cost": 1.1}),
    _upstream("selectEffectiveIoConcurrency hdd", {"storage": "hdd"}, {"effective_io_concurrency": 2}),
    _upstream("selectEffectiveIoConcurrency ssd", {"storage": "ssd"}, {"effective_io_concurrency": 200}),
    _upstream("selectEffectiveIoConcurrency san", {"storage": "san"}, {"effective_io_concurrency": 300}),
    _upstream("selectEffectiveIoConcurrency nvme", {"storage": "nvme"}, {"effective_io_concurrency": 1000}),
    _upstream("selectParallelSettings less 2 cpu provided", {"pg_version": 14, "cpus": 1},
              {"max_worker_processes": None, "max_parallel_workers_per_gather": None, "max_parallel_workers": None,
               "max_parallel_maintenance_workers": None},
              {"max_worker_processes": 8, "max_parallel_workers_per_gather": 2, "max_parallel_workers": 8,
               "max_parallel_maintenance_workers": 2}, _WHY_EXPLICIT),
    _upstream("selectParallelSettings postgresql 13", {"pg_version": 13, "cpus": 12},
              {"max_worker_processes": 12, "max_parallel_workers_per_gather": 4, "max_parallel_workers": 12,
               "max_parallel_maintenance_workers": 4}),
    _upstream("selectWalLevel web app", {}, {"wal_level": None, "max_wal_senders": None}),
    _upstream("selectMaintenanceWorkMem caps at 8GB for linux servers with extreme memory",
              {"ram_mb": 256 * 1024, "pg_version": 17}, {"maintenance_work_mem": 8388608}),
    _upstream("selectMaintenanceWorkMem calculates properly below the limit cap",
              {"ram_mb": 16 * 1024, "pg_version": 15}, {"maintenance_work_mem": 1048576}),
    _upstream("selectHugePages returns off when shared_buffers is small",
              {"ram_mb": 4 * 1024, "pg_version": 15}, {"huge_pages": "off"}),
    _upstream("selectHugePages returns try when shared_buffers is large",
              {"ram_mb": 16 * 1024, "pg_version": 15}, {"huge_pages": "try"}),
    _upstream("selectWorkMem protects work_mem by flooring to 4MB during extreme max_connections",
              {"ram_mb": 4 * 1024, "pg_version": 15, "max_connections": 9999, "cpus": 4}, {"work_mem": 4096}),
    _upstream("selectJit turns off JIT for oltp on PG12+", {"workload": "oltp", "pg_version": 15}, {"jit": "off"}),
    _upstream("selectJit turns off JIT for web on PG12+", {"workload": "web", "pg_version": 13}, {"jit": "off"}),
    _upstream("selectWalCompression pglz for PG14", {"pg_version": 14}, {"wal_compression": "on"}),
    _upstream("selectWalCompression lz4 for PG15", {"pg_version": 15}, {"wal_compression": "lz4"}),
    _upstream("selectWalCompression lz4 for PG17", {"pg_version": 17}, {"wal_compression": "lz4"}),
    _upstream("selectAutovacuumMaxWorkers 32 cpus", {"cpus": 32}, {"autovacuum_max_workers": 5}),
    _upstream("selectAutovacuumMaxWorkers 16 cpus", {"cpus": 16}, {"autovacuum_max_workers": 4}),
    _upstream("selectAutovacuumMaxWorkers 8 cpus", {"cpus": 8}, {"autovacuum_max_workers": None},
              {"autovacuum_max_workers": 3}, _WHY_EXPLICIT),
    _upstream("selectAutovacuumWorkMem leaves it alone if maintenance_work_mem is small",
              {"ram_mb": 4 * 1024, "pg_version": 15}, {"autovacuum_work_mem": None},
              {"autovacuum_work_mem": -1}, _WHY_EXPLICIT + " (-1: use maintenance_work_mem)"),
    _upstream("selectAutovacuumWorkMem caps at 2GB if maintenance_work_mem is massive",
              {"ram_mb": 256 * 1024, "pg_version": 15}, {"autovacuum_work_mem": 2097152}),
    _upstream("selectIoWorkers returns null before PostgreSQL 18", {"pg_version": 17, "cpus": 32},
              {"io_workers": None}),
    # Upstream's io_workers rule applies where it picks io_method = worker (its non-Linux cases); that is our method.
    _upstream("selectIoWorkers defers to the default of 3 for 8 cpus", {"cpus": 8}, {"io_workers": None},
              {"io_workers": 3}, _WHY_EXPLICIT),
    _upstream("selectIoWorkers 25 percent of 32 cpus", {"cpus": 32}, {"io_workers": 8}),
    _upstream("selectIoWorkers 25 percent of 64 cpus", {"cpus": 64}, {"io_workers": 16}),
    _upstream("selectIoWorkers caps at 32", {"cpus": 256}, {"io_workers": 32}),
    _upstream("selectIoWorkers on linux for io_uring return null", {"cpus": 256}, {"io_workers": None},
              {"io_workers": 32}, _WHY_IO_URING),
    _upstream("selectIoMethod returns null before PostgreSQL 18", {"pg_version": 17}, {"io_method": None}),
    _upstream("selectIoMethod io_uring for Linux on PostgreSQL 18", {}, {"io_method": "io_uring"},
              {"io_method": "worker"}, _WHY_IO_URING),
]


@pytest.mark.parametrize("args,upstream,ours", PGTUNE_UPSTREAM)
def test_pgtune_agrees_with_upstream_tests(args, upstream, ours):
    settings = pgtune(args.pop("ram_mb"), args.pop("cpus"), **args)
    got = {key: _as_upstream(key, settings[key]) if key in settings else None for key in upstream}
    assert got == {**upstream, **ours}
    for key in ours:  # a documented difference must really differ, or it is stale
        assert ours[key] != upstream[key]
