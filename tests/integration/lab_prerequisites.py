# SPDX-License-Identifier: GPL-3.0-or-later
"""What the integration tests need from this machine: a Docker engine and the locally built lab images.

A missing prerequisite skips the tests, unless BORGSTACK_REQUIRE_INTEGRATION=1 (set by scripts/test.sh, which builds
the images) turns the skip into a failure, so CI cannot pass by skipping.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def unavailable(reason: str) -> None:
    if os.environ.get("BORGSTACK_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason} (BORGSTACK_REQUIRE_INTEGRATION=1: a missing prerequisite is a failure)")
    pytest.skip(reason)


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
