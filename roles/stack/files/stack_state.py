# SPDX-License-Identifier: GPL-3.0-or-later
# Reads in one call everything the stack role compares: the project directories, whether the Docker engine answers,
# the stack's networks (driver, internal), the top-level compose.yaml (content, owner, group, mode) and which services
# have a Compose file (services/<name>/compose.yaml).
#   python3 -c "$(cat stack_state.py)" PROJECT_DIR NETWORK...
# Prints one JSON object (no secret is read).
import json
import os
import stat
import subprocess
import sys


def path_state(path, read):
    try:
        st = os.lstat(path)
        content = None
        if read and stat.S_ISREG(st.st_mode):
            with open(path, encoding="utf-8") as handle:
                content = handle.read()
    except (OSError, UnicodeDecodeError):
        return None
    return {"dir": stat.S_ISDIR(st.st_mode), "content": content, "uid": st.st_uid, "gid": st.st_gid,
            "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def docker(*args):
    try:
        answer = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 127, "", str(error)
    return answer.returncode, answer.stdout, answer.stderr


def main():
    project_dir, networks = sys.argv[1], sys.argv[2:]
    rc, out, err = docker("version", "--format", "{{.Server.Version}}")
    found = {name: None for name in networks}
    services = os.path.join(project_dir, "services")
    if rc == 0 and networks:
        _nrc, nout, _nerr = docker("network", "inspect", *networks)
        for net in json.loads(nout) if nout.strip().startswith("[") else []:
            if net.get("Name") in found:
                found[net["Name"]] = {"driver": net.get("Driver"), "internal": bool(net.get("Internal"))}
    print(json.dumps({
        "dirs": {path: path_state(path, False) for path in (project_dir, os.path.join(project_dir, "services"))},
        "compose": path_state(os.path.join(project_dir, "compose.yaml"), True),
        "docker": {"rc": rc, "stdout": out.strip(), "stderr": err.strip()},
        "networks": found,
        "services": sorted(name for name in (os.listdir(services) if os.path.isdir(services) else [])
                           if os.path.isfile(os.path.join(services, name, "compose.yaml"))),
    }))


main()
