# SPDX-License-Identifier: GPL-3.0-or-later
"""The Redis half of a service's state in roles/backup/files/borgstack-backup.py: how a key is read (type, expiry,
value digest, DUMP payload in one MULTI/EXEC), how a set's keys replace the live ones (not merged) and how they are
compared, the RESP parser. Against an in-memory stand-in for Redis that answers the few commands the script sends
(the real Redis runs in molecule/stack/tests/test_backup_whatsapp.py)."""
from __future__ import annotations

import base64
import copy
import importlib.util
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "backup" / "files" / "borgstack-backup.py"
_SPEC = importlib.util.spec_from_file_location("borgstack_backup", SCRIPT)
backup = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(backup)


class FakeRedis:
    """One database: {key: (type, value, pttl)}; DUMP payloads are JSON of (type, value). MULTI queues until EXEC."""

    def __init__(self, data: Dict[bytes, Tuple[str, Any, int]]) -> None:
        self.data = copy.deepcopy(data)
        self.queue: List[Tuple[Any, ...]] | None = None
        self.sent: List[str] = []

    def call(self, *args: Any) -> Any:
        self.sent.append(str(args[0]))
        if args[0] == "MULTI":
            self.queue = []
            return b"OK"
        if args[0] == "EXEC":
            queued, self.queue = self.queue, None
            return [self._run(*command) for command in queued]
        if self.queue is not None:
            self.queue.append(args)
            return b"QUEUED"
        return self._run(*args)

    def _run(self, name: str, *args: Any) -> Any:
        entry = self.data.get(args[0]) if args else None
        if name == "TYPE":
            return (entry[0] if entry else "none").encode()
        if name == "PTTL":
            return entry[2] if entry else -2
        if name == "DUMP":
            return json.dumps([entry[0], _plain(entry[1])]).encode()
        if name == "DEL":
            return sum(1 for key in args if self.data.pop(key, None) is not None)
        if name == "RESTORE":
            kind, value = json.loads(args[2])
            self.data[args[0]] = (kind, _bytes(value), int(args[1]) or -1)
            return b"OK"
        if name == "FLUSHDB":
            self.data.clear()
            return b"OK"
        kind, value = entry[0], entry[1]
        if name == "HGETALL":
            return [x for pair in value.items() for x in pair]
        if name in ("GET", "LRANGE", "ZRANGE"):
            return value
        if name == "SMEMBERS":
            return list(value)
        raise AssertionError(f"unexpected command {name}")

    def scan(self, globs: List[str]) -> List[bytes]:
        import fnmatch
        return sorted(k for k in self.data if any(fnmatch.fnmatchcase(k.decode(), g) for g in globs))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k.decode(): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value]


def _bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return {k.encode(): _bytes(v) for k, v in value.items()}
    return [_bytes(v) for v in value]


SESSION = {
    b"evo:instance:a": ("hash", {b"pre-key-1": b'"{\\"k\\":1}"', b"session-55.0": b'"{}"'}, -1),
    b"evo:instance:b": ("hash", {b"pre-key-1": b'"{\\"k\\":2}"'}, -1),
}
CACHE = {b"evo:groups:g1": ("string", b"cached", 5000)}
SPACES = {"session": ["*:instance:*"]}


def _keyset(live: FakeRedis) -> Dict[str, Any]:
    keys = [backup.read_key(live, key, True) for key in live.scan(SPACES["session"])]
    return {"service": "evolution_api", "db": 3, "spaces": SPACES, "keys": keys}


def test_a_key_is_read_in_one_transaction_with_its_payload_and_digest():
    live = FakeRedis(SESSION)
    entry = backup.read_key(live, b"evo:instance:a", True)
    assert entry["name"] == "evo:instance:a" and base64.b64decode(entry["key"]) == b"evo:instance:a"
    assert (entry["type"], entry["pttl"], entry["size"]) == ("hash", -1, 2)
    assert entry["sha256"] == backup.value_digest("hash", [b"session-55.0", b'"{}"', b"pre-key-1",
                                                           b'"{\\"k\\":1}"'])[0]
    assert json.loads(base64.b64decode(entry["dump"]))[0] == "hash"
    # TYPE outside, then MULTI TYPE PTTL HGETALL DUMP EXEC: the four answers describe one moment.
    assert live.sent == ["TYPE", "MULTI", "TYPE", "PTTL", "HGETALL", "DUMP", "EXEC"]
    assert backup.read_key(live, b"evo:instance:none", True) is None


def test_restore_replaces_the_space_not_merges_and_leaves_other_spaces_alone():
    keyset = _keyset(FakeRedis(SESSION))
    later = {b"evo:instance:c": ("hash", {b"pre-key-9": b"x"}, -1),
             b"evo:instance:a": ("hash", {b"pre-key-1": b"changed"}, -1)}
    live = FakeRedis({**later, **CACHE})
    summary = backup.load_keys(live, keyset, replace=True)
    assert summary == {"service": "evolution_api", "db": 3, "keys": 2, "matched": 2, "deleted": 2, "elements": 3,
                       "differences": []}
    assert {k: v[:2] for k, v in live.data.items()} == {**{k: v[:2] for k, v in SESSION.items()},
                                                        b"evo:groups:g1": CACHE[b"evo:groups:g1"][:2]}
    assert live.data[b"evo:groups:g1"][2] == 5000


@pytest.mark.parametrize("change, difference", [
    (lambda d: d.pop(b"evo:instance:b"), "evo:instance:b: missing"),
    (lambda d: d.update({b"evo:instance:b": ("string", b"x", -1)}), "evo:instance:b: type string, hash in the set"),
    (lambda d: d[b"evo:instance:a"][1].update({b"pre-key-1": b"other"}),
     "evo:instance:a: 2 elements, 2 in the set, other values"),
    (lambda d: d.update({b"evo:instance:z": ("hash", {b"f": b"v"}, -1)}), "evo:instance:z: not in the set"),
])
def test_the_comparison_finds_every_kind_of_difference(change, difference):
    keyset = _keyset(FakeRedis(SESSION))
    loaded = FakeRedis(SESSION)
    change(loaded.data)
    summary = backup.compare_keys(loaded, keyset)
    assert summary["differences"] == [difference]
    assert summary["matched"] == (2 if "not in the set" in difference else 1)


def test_the_digest_is_canonical_for_hashes_and_sets_and_tells_types_apart():
    assert backup.value_digest("hash", [b"a", b"1", b"b", b"2"]) == backup.value_digest("hash", [b"b", b"2", b"a",
                                                                                                 b"1"])
    assert backup.value_digest("set", [b"x", b"y"]) == backup.value_digest("set", [b"y", b"x"])
    assert backup.value_digest("list", [b"x", b"y"]) != backup.value_digest("list", [b"y", b"x"])
    assert backup.value_digest("list", [b"ab"]) != backup.value_digest("list", [b"a", b"b"])
    assert backup.value_digest("set", [b"x"])[0] != backup.value_digest("list", [b"x"])[0]
    assert backup.value_digest("zset", [b"m", b"1", b"n", b"2"])[1] == 2


class _Socketless(backup.Redis):
    def __init__(self, replies: bytes) -> None:  # pylint: disable=super-init-not-called
        self.reader = io.BytesIO(replies)


def test_the_resp_parser_reads_nested_binary_replies_and_raises_on_errors():
    conn = _Socketless(b"*3\r\n$4\r\na\r\nb\r\n:-1\r\n*2\r\n+OK\r\n$-1\r\n-ERR no such key\r\n")
    assert conn.read() == [b"a\r\nb", -1, [b"OK", None]]
    with pytest.raises(backup.BackupError, match="Redis answered: ERR no such key"):
        conn.read()
    with pytest.raises(backup.BackupError, match="closed the connection"):
        conn.read()
