# SPDX-License-Identifier: GPL-3.0-or-later
# Reads in one call what the docker role compares, so that a rerun with nothing to do makes one round trip:
#   python3 -c "$(cat docker_state.py)" PACKAGE...
# Prints one JSON object: dpkg's lines for the packages named, `dockerd --version`, /etc/docker and daemon.json
# (type, owner, group, mode; the file's text, which holds no secret), the unit's enabled/active state and
# `docker compose version --short`. A missing program or file gives an empty string or null, never an error.
import json
import subprocess
import sys


def output(*argv):
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def describe(path, with_text):
    # `stat` prints the type (which may hold a space), then owner, group and mode.
    line = output("stat", "--format", "%F %u %g %a", path)
    if not line:
        return None
    kind, uid, gid, mode = line.rsplit(" ", 3)
    return {"dir": kind == "directory", "uid": int(uid), "gid": int(gid), "mode": mode.zfill(4),
            "content": output("cat", path) if with_text and kind.startswith("regular") else None}


print(json.dumps({
    "packages": output("dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", *sys.argv[1:]),
    "dockerd": output("dockerd", "--version"),
    "etc": describe("/etc/docker", False),
    "daemon_json": describe("/etc/docker/daemon.json", True),
    "enabled": output("systemctl", "is-enabled", "docker.service"),
    "active": output("systemctl", "is-active", "docker.service"),
    "compose": output("docker", "compose", "version", "--short"),
}))
