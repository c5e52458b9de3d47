# SPDX-License-Identifier: GPL-3.0-or-later
# Reads in one call what the docker role compares, so that a rerun with nothing to do makes one round trip:
#   python3 -c "$(cat docker_state.py)" PACKAGE...
# Prints one JSON object: dpkg's lines for the packages named, `dockerd --version`, /etc/docker and daemon.json
# (type, owner, group, mode; the file's text, which holds no secret), the unit's enabled/active state and
# `docker compose version --short`. A missing program or file gives an empty string or null, never an error.
import json
import os
import stat
import subprocess
import sys


def output(*argv):
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def describe(path, with_text):
    try:
        info = os.lstat(path)
        text = None
        if with_text and stat.S_ISREG(info.st_mode):
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, UnicodeDecodeError):
        return None
    return {"dir": stat.S_ISDIR(info.st_mode), "content": text, "uid": info.st_uid, "gid": info.st_gid,
            "mode": f"{stat.S_IMODE(info.st_mode):04o}"}


print(json.dumps({
    "packages": output("dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", *sys.argv[1:]),
    "dockerd": output("dockerd", "--version"),
    "etc": describe("/etc/docker", False),
    "daemon_json": describe("/etc/docker/daemon.json", True),
    "enabled": output("systemctl", "is-enabled", "docker.service"),
    "active": output("systemctl", "is-active", "docker.service"),
    "compose": output("docker", "compose", "version", "--short"),
}))
