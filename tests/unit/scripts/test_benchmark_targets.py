# SPDX-License-Identifier: GPL-3.0-or-later
"""scripts/benchmark-targets.sh: its arguments and how it reads the load tools' output (the measurements themselves
need a converged lab host: docs/desempenho.md).

The summaries are fed output in the tools' real formats (hey 0.1.4, wrk 4.1, pgbench 17, redis-benchmark 8.0 as
Debian ships them): the percentiles, rates and error counts printed next to the targets come from there.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "benchmark-targets.sh"

HEY = """
Summary:
  Total:\t30.0213 secs
  Slowest:\t1.2338 secs
  Fastest:\t0.0120 secs
  Average:\t0.0864 secs
  Requests/sec:\t98.4621

Latency distribution:
  10% in 0.0240 secs
  25% in 0.0310 secs
  50% in 0.0437 secs
  75% in 0.0880 secs
  90% in 0.1938 secs
  95% in 0.4338 secs
  99% in 0.9120 secs

Status code distribution:
  [200]\t2940 responses
  [502]\t3 responses

Error distribution:
  [4]\tPost "https://198.51.100.70/webhook/x": context deadline exceeded (Client.Timeout exceeded)
  [1]\tPost "https://198.51.100.70/webhook/x": EOF
"""

WRK = """Running 30s test @ http://198.51.100.70/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    21.15ms   19.62ms 134.26ms   89.86%
  Latency Distribution
     50%  830.00us
     75%    9.32ms
     90%   30.94ms
     99%    1.12s
  74200 requests in 30.02s, 13.59MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   2471.94
Transfer/sec:      1.78MB
"""

PGBENCH = "\n".join(["0 1 900 0 1765000000 1", "0 2 1100 0 1765000000 2", "1 1 2000 0 1765000000 3",
                     "1 2 50000 0 1765000000 4", "tps = 3210.123456 (without initial connection time)"]) + "\n"

REDIS = '''"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","41237.11","0.650","0.176","0.615","0.959","1.319","4.927"
"GET","44345.90","0.608","0.168","0.583","0.855","1.135","2.583"
'''


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


def summary(tmp_path: Path, kind: str, text: str) -> dict[str, str]:
    path = tmp_path / f"{kind}.txt"
    path.write_text(text)
    result = run("--summarize", kind, str(path))
    assert result.returncode == 0, result.stderr
    return dict(item.split("=", 1) for item in result.stdout.split())


def test_plan_shows_defaults_and_touches_nothing():
    result = run("--plan")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("host=borgstack-lab ip=(lab/lab.sh address borgstack-lab) "
                                     "domain=lab.borgstack.test duration=30s rate=100/s workers=50 "
                                     "save_success=all measures=webhook caddy directus redis postgresql")


def test_plan_takes_every_option():
    result = run("--host", "borgstack-mol-perf", "--ip", "198.51.100.70", "--domain", "exemplo.com.br",
                 "--duration", "10", "--rate", "200", "--only", "redis,caddy", "--no-save", "--plan")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("host=borgstack-mol-perf ip=198.51.100.70 domain=exemplo.com.br duration=10s "
                                     "rate=200/s workers=100 save_success=none measures=redis caddy")


@pytest.mark.parametrize("args, says", [
    (["--only", "webhook,mongodb"], "'mongodb' is not one of"),
    (["--rate", "95"], "--rate needs requests/s"),
    (["--rate", "abc"], "--rate needs requests/s"),
    (["--duration", "2"], "--duration needs seconds"),
    (["--ip", "lab"], "--ip needs an IPv4 address"),
    (["--host", "a b"], "--host needs a container name"),
    (["--domain", "Lab"], "--domain needs a domain name"),
    (["--only"], "--only needs a list"),
    (["--fast"], "unknown argument '--fast'"),
    (["--summarize", "hey", "a", "b"], "--summarize KIND FILE"),
])
def test_bad_arguments_are_refused(args, says):
    result = run(*args, "--plan")
    assert result.returncode == 2, result.stdout
    assert says in result.stderr


def test_hey_summary(tmp_path):
    got = summary(tmp_path, "hey", HEY)
    assert got == {"requests": "2948", "rate": "98.5", "p50": "44", "p95": "434", "p99": "912", "non2xx": "502:3",
                   "transport_errors": "5"}


def test_hey_summary_without_percentiles(tmp_path):
    got = summary(tmp_path, "hey", "Summary:\n  Requests/sec:\t0.0000\n")
    assert got["p95"] == "-" and got["requests"] == "0"


def test_wrk_summary(tmp_path):
    got = summary(tmp_path, "wrk", WRK)
    assert got == {"rate": "2472", "p50": "0.8", "p99": "1120.0", "bad": "7",
                   "socket_errors": "connect0,read12,write0,timeout3"}


def test_pgbench_summary(tmp_path):
    got = summary(tmp_path, "pgbench", PGBENCH)
    assert got == {"queries": "4", "tps": "3210", "p50": "1.10", "p95": "50.00", "p99": "50.00"}


def test_redis_summary(tmp_path):
    path = tmp_path / "redis.txt"
    path.write_text(REDIS)
    result = run("--summarize", "redis", str(path))
    assert result.stdout.split() == ["set=41237/p99=1.319", "get=44346/p99=1.135"]
