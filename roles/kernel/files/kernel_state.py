# SPDX-License-Identifier: GPL-3.0-or-later
# Reads in one call everything the kernel role compares: the live value of each sysctl key and whether it can be
# written here, the two files the role writes (content, owner, group, mode), whether transparent hugepages can be
# changed here, and whether the hugepages unit is enabled and active.
#   python3 -c "$(cat kernel_state.py)" SYSCTL_FILE UNIT_FILE THP_PATH UNIT KEY...
# Prints one JSON object (no secret is read).
import json
import os
import stat
import subprocess
import sys


def read_file(path):
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError):
        return None
    return {"content": content, "uid": st.st_uid, "gid": st.st_gid, "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def systemctl(verb, unit):
    answer = subprocess.run(["systemctl", verb, unit], capture_output=True, text=True, check=False)
    return answer.stdout.strip()


def main():
    sysctl_file, unit_file, thp_path, unit = sys.argv[1:5]
    keys = {}
    for key in sys.argv[5:]:
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, encoding="utf-8") as handle:
                value = " ".join(handle.read().split())
        except OSError:
            value = None
        keys[key] = {"value": value, "writable": value is not None and os.access(path, os.W_OK)}
    print(json.dumps({
        "sysctl": keys,
        "files": {sysctl_file: read_file(sysctl_file), unit_file: read_file(unit_file)},
        "thp": {"exists": os.path.exists(thp_path), "writeable": os.access(thp_path, os.W_OK)},
        "unit": {"enabled": systemctl("is-enabled", unit), "active": systemctl("is-active", unit)},
    }))


main()
