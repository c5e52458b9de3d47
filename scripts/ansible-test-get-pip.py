# SPDX-License-Identifier: GPL-3.0-or-later
"""Local stand-in for ansible-test's get-pip.py, whose download host this machine cannot reach.

scripts/test.sh copies it into ~/.ansible/test/cache/: it bootstraps pip with ensurepip, then installs the
requested packages from PyPI.
"""
from __future__ import annotations

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap()
ARGS = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
ENV = dict(os.environ)
ENV.pop("PIP_CONFIG_FILE", None)
ENV.pop("PIP_ISOLATED_MODE", None)
CERT = ["--cert", "/etc/ssl/certs/ca-certificates.crt"] if os.path.exists("/etc/ssl/certs/ca-certificates.crt") else []
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + CERT + ARGS, env=ENV))
