# SPDX-License-Identifier: GPL-3.0-or-later
# Compares, in one call, the encryption key n8n saved in its data volume (config, "encryptionKey") with the wanted
# one, read from stdin so that it never shows in a process list. Prints {"volume": MOUNTPOINT or "",
# "saved": true|false, "matches": true|false}; never prints either key.
#   python3 -c "$(cat encryption_key_check.py)" VOLUME < wanted-key
import json
import os
import subprocess
import sys


def main():
    wanted = sys.stdin.read()
    try:
        answer = subprocess.run(["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", sys.argv[1]],
                                capture_output=True, text=True, check=False, timeout=60)
        mountpoint = answer.stdout.strip() if answer.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        mountpoint = ""
    result = {"volume": mountpoint, "saved": False, "matches": False}
    path = os.path.join(mountpoint, "config")
    if mountpoint and os.path.exists(path):
        result["saved"] = True
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle).get("encryptionKey", "")
        result["matches"] = saved == wanted
    print(json.dumps(result))


main()
