# SPDX-License-Identifier: GPL-3.0-or-later
# Reads in one call what the caddy role compares, so that a rerun with nothing to do makes one round trip per phase.
#   python3 -c "$(cat caddy_state.py)" files PATH...
#       whether the Docker engine answers, and each path's type, owner, group, mode (and a file's content)
#   python3 -c "$(cat caddy_state.py)" live CONTAINER HOST_ROOT_CERT READ_ROOT(true|false)
#       whether the container runs; whether the configuration it runs is the one its Caddyfile adapts to (the
#       configurations themselves are not printed); the internal CA's root certificate (public) and the host's copy
# Prints one JSON object. Never reads a private key.
import json
import os
import stat
import subprocess
import sys

ROOT_CERT = "/data/caddy/pki/authorities/local/root.crt"


def path_state(path):
    try:
        st = os.lstat(path)
        content = None
        if stat.S_ISREG(st.st_mode):
            with open(path, encoding="utf-8") as handle:
                content = handle.read()
    except (OSError, UnicodeDecodeError):
        return None
    return {"dir": stat.S_ISDIR(st.st_mode), "content": content, "uid": st.st_uid, "gid": st.st_gid,
            "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def docker(*args):
    try:
        answer = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 127, "", str(error)
    return answer.returncode, answer.stdout, answer.stderr


def parsed(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def files(paths):
    rc, _out, _err = docker("version", "--format", "{{.Server.Version}}")
    return {"docker": rc, "paths": {path: path_state(path) for path in paths}}


def live(container, host_root, read_root):
    rc, out, _err = docker("container", "inspect", "--format", "{{.State.Running}}", container)
    result = {"running": rc == 0 and out.strip() == "true", "same": False, "root": None,
              "host_root": path_state(host_root)}
    if not result["running"]:
        return result
    rc1, running, _e1 = docker("exec", container, "wget", "-q", "-O", "-", "http://127.0.0.1:2019/config/")
    rc2, adapted, _e2 = docker("exec", container, "caddy", "adapt", "--config", "/etc/caddy/Caddyfile",
                               "--adapter", "caddyfile")
    result["same"] = rc1 == 0 and rc2 == 0 and parsed(running) is not None and parsed(running) == parsed(adapted)
    if read_root:
        rc3, root, _e3 = docker("exec", container, "cat", ROOT_CERT)
        result["root"] = root if rc3 == 0 and "BEGIN CERTIFICATE" in root else None
    return result


def main():
    phase, args = sys.argv[1], sys.argv[2:]
    print(json.dumps(files(args) if phase == "files" else live(args[0], args[1], args[2] == "true")))


main()
