"""The engine's durable key-value tables: rows with versions, compare-and-set, paged scans.

A version comes from one counter shared by every table, so it grows with every write of a
key, also across a delete and a re-create: a caller holding version v of a deleted row can
never match a newer row by accident. Deletes consume a version too, and the counter is part
of the snapshot, so no version is handed out twice, restarts included.

Keys of a table are also kept sorted (a SortedList: a new or removed key costs O(log n), not a
shift of the whole list), so a scan costs the page it returns plus a binary search, not the table.
"""

from __future__ import annotations

from sortedcontainers import SortedList

from .errors import ConflictError, InvalidArgumentError

MAX_SCAN = 1000


class Table:
    __slots__ = ("rows", "keys")

    def __init__(self) -> None:
        self.rows: dict[str, tuple[bytes, int]] = {}
        self.keys: SortedList = SortedList()

    def set(self, key: str, value: bytes, version: int) -> None:
        if key not in self.rows:
            self.keys.add(key)
        self.rows[key] = (value, version)

    def remove(self, key: str) -> bool:
        if self.rows.pop(key, None) is None:
            return False
        self.keys.remove(key)
        return True

    def page(self, prefix: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """Up to `limit` rows whose key starts with `prefix`, in key order, after the key `after`."""
        out: list[tuple[str, bytes]] = []
        keys = self.keys
        i = keys.bisect_right(after) if after >= prefix else keys.bisect_left(prefix)
        for key in keys.islice(i, i + limit):
            if not key.startswith(prefix):
                break
            out.append((key, self.rows[key][0]))
        return out


class KvStore:
    """In-memory state of every table. The engine validates, persists and calls in here;
    replay calls the same `apply_put` / `apply_delete` with the recorded versions."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.clock = 0                 # the last version handed out

    def read(self, table: str, key: str) -> tuple[bytes, int] | None:
        t = self.tables.get(table)
        return t.rows.get(key) if t is not None else None

    def check(self, table: str, key: str, expect: int | None) -> None:
        """Raise ConflictError unless the row's current version is `expect` (0: absent)."""
        if expect is None:
            return
        row = self.read(table, key)
        actual = row[1] if row is not None else 0
        if actual != expect:
            raise ConflictError(table, key, expect, actual)

    def next_version(self) -> int:
        self.clock += 1
        return self.clock

    def apply_put(self, table: str, key: str, value: bytes, version: int) -> None:
        t = self.tables.get(table)
        if t is None:
            t = self.tables[table] = Table()
        t.set(key, value, version)
        self.clock = max(self.clock, version)

    def apply_delete(self, table: str, key: str, version: int) -> bool:
        self.clock = max(self.clock, version)
        t = self.tables.get(table)
        if t is None or not t.remove(key):
            return False
        if not t.rows:
            del self.tables[table]
        return True

    def scan(self, table: str, prefix: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        t = self.tables.get(table)
        return t.page(prefix, after, limit) if t is not None else []

    def items(self, table: str, prefix: str = "") -> list[tuple[str, bytes]]:
        t = self.tables.get(table)
        return t.page(prefix, "", len(t.keys)) if t is not None else []

    def rows(self):
        """Every (table, key, value, version), for a snapshot."""
        for name, t in self.tables.items():
            for key, (value, version) in t.rows.items():
                yield name, key, value, version


def check_expect(expect) -> int | None:
    if expect is None:
        return None
    if not isinstance(expect, int) or isinstance(expect, bool) or expect < 0:
        raise InvalidArgumentError(expect, "expect must be None, 0 (absent) or a version > 0")
    return expect


def check_scan(prefix, after, limit) -> None:
    for what, value in (("prefix", prefix), ("after", after)):
        if not isinstance(value, str) or len(value.encode()) > 1024:
            raise InvalidArgumentError(value, f"{what} must be a string of at most 1024 bytes")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SCAN:
        raise InvalidArgumentError(limit, f"limit must be an integer in 1..{MAX_SCAN}")
