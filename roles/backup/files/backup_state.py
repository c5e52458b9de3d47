# SPDX-License-Identifier: GPL-3.0-or-later
# Reads in one call what the backup role compares: for each path its type, owner, group, mode and the SHA-1 of a
# file's content (never the content: the settings file holds passwords), and whether the timer is enabled and active.
#   python3 -c "$(cat backup_state.py)" TIMER PATH...
# Prints one JSON object.
import hashlib
import json
import os
import stat
import subprocess
import sys


def path_state(path):
    try:
        st = os.lstat(path)
        digest = None
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as handle:
                digest = hashlib.sha1(handle.read()).hexdigest()
    except OSError:
        return None
    return {"dir": stat.S_ISDIR(st.st_mode), "sha1": digest, "uid": st.st_uid, "gid": st.st_gid,
            "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def systemctl(verb, unit):
    return subprocess.run(["systemctl", verb, unit], capture_output=True, text=True, check=False).stdout.strip()


def main():
    timer, paths = sys.argv[1], sys.argv[2:]
    print(json.dumps({"paths": {path: path_state(path) for path in paths},
                      "timer": {"enabled": systemctl("is-enabled", timer), "active": systemctl("is-active", timer)}}))


main()
