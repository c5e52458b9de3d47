# SPDX-License-Identifier: GPL-3.0-or-later
"""What the integration and molecule verify tests need from this machine, and the one way they give up without it.

A missing prerequisite (the Docker engine, a lab image, a lab host, molecule's inventory, ...) skips the test,
unless BORGSTACK_REQUIRE_INTEGRATION=1 (set by scripts/test.sh, which provides all of them) turns the skip into a
failure, so CI cannot pass by skipping. Every skip in tests/integration and molecule goes through ``unavailable``.

A few limits of the lab machine are known and declared (LAB-FACTS: no device-mapper): a test that meets one names it
with ``known_limit``, and it stays a skip under BORGSTACK_REQUIRE_INTEGRATION=1 only when the running scenario lists
that limit in BORGSTACK_KNOWN_LIMITS (comma separated; molecule scenarios set it for their verifier).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def strict() -> bool:
    """True when a missing prerequisite is a failure (BORGSTACK_REQUIRE_INTEGRATION=1)."""
    return os.environ.get("BORGSTACK_REQUIRE_INTEGRATION") == "1"


def unavailable(reason: str, known_limit: str | None = None) -> None:
    """Skip the test for ``reason``; fail instead under BORGSTACK_REQUIRE_INTEGRATION=1 (see the module docstring)."""
    declared = {item.strip() for item in os.environ.get("BORGSTACK_KNOWN_LIMITS", "").split(",") if item.strip()}
    if strict() and not (known_limit and known_limit in declared):
        pytest.fail(f"{reason} (BORGSTACK_REQUIRE_INTEGRATION=1: a missing prerequisite is a failure)")
    pytest.skip(f"{reason} (known limit of this machine: {known_limit})" if known_limit else reason)


def require_env(name: str, why: str) -> str:
    """The value of environment variable ``name``; without it the test is unavailable for ``why``."""
    value = os.environ.get(name, "")
    if not value:
        unavailable(f"needs {name}: {why}")
    return value


def require_docker_images(*images: str) -> None:
    """Skip (or fail, see above) unless the docker CLI, a running engine and every image are there."""
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")

    def docker(*args: str) -> int:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=120).returncode

    if docker("info") != 0:
        unavailable("the Docker engine is not running")
    for image in images:
        if docker("image", "inspect", image) != 0:
            unavailable(f"image {image} is missing; build it with lab/build-images.sh")
