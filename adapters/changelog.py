"""Compare-and-set on a table kept as a log (Kafka, RocketMQ): how every reader agrees.

A log-based table has no server that could check an expectation before a write lands, so the
check happens after: every put or delete is a record carrying its expectation, and every reader
applies the log in order through a `Fold`, rejecting a record whose expectation does not hold at
that point. The decision depends only on the records before it, so every reader, the writer's
own included, reaches the same one; the writer waits until its own view has applied its record
and reports that outcome (`Outcome`).

Record (each adapter encodes it in its own headers, see `fields` / `parse`):

    op       put | del | restore
    expect   absent: unconditional; 0: the row must not exist; v > 0: the row's version must be v
    base     the version the writer's view held for the key (versions without log offsets)
    version  restore only: the version it restates
    id       the writer's id for the record, to hand the outcome back

Versions: where the log has offsets (Kafka) a row's version is 1 + the offset of the record that
last changed it; otherwise (RocketMQ) it is a per-key counter, max(known version, base) + 1.
Deleted rows keep their version in `versions`, so a version is never handed out twice.

Logs that lose old records. Kafka compaction keeps only the newest record of a key; RocketMQ
drops commit-log files after a few days. A reader replaying such a log meets a key's first
surviving record without its history. The rules that keep it in step with readers that saw all:

* a writer sends an expectation v > 0 only after its own view held version v (`Fold.check`), so
  a record expecting v > 0 of a key this reader never saw lost its history: it is accepted;
* the newest record of a key must never be a rejected one (compaction would keep it and drop the
  row it lost to): after a rejection the writer appends a `restore` record restating the row as
  it is (`Fold.unsettled` says when one is needed); RocketMQ's periodic refresh uses restores too.

Left open (rare, documented in the report): a writer killed between a rejected record and its
restore, or a reader that starts after a delete's tombstone is gone meeting a client that held a
version of that row across it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sortedcontainers import SortedList

from . import errors

MAX_SCAN = 1000


@dataclass(frozen=True, slots=True)
class Record:
    op: str                     # put | del | restore
    key: str
    value: bytes | None         # None: no row (del, or the restore of a deleted row)
    expect: int | None = None
    base: int = 0
    version: int = 0            # restore only
    id: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    version: int                # the row's version after the record (accepted) or before (rejected)
    accepted: bool
    existed: bool               # there was a row before the record


def fields(record: Record) -> dict[str, str]:
    out = {"op": record.op, "base": str(record.base), "id": record.id}
    if record.expect is not None:
        out["expect"] = str(record.expect)
    if record.op == "restore":
        out["version"] = str(record.version)
        if record.value is None:
            out["deleted"] = "1"     # a log whose records always have a body (RocketMQ)
    return out


def parse(key: str, value: bytes | None, headers: dict[str, str]) -> Record:
    """A record from its headers; records without them (older writers) are unconditional."""
    op = headers.get("op") or ("del" if value is None else "put")
    gone = op == "del" or headers.get("deleted") == "1"
    return Record(op, key, None if gone else value, _int(headers.get("expect")),
                  _int(headers.get("base")) or 0, _int(headers.get("version")) or 0, headers.get("id", ""))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def check_expect(expect: object) -> int | None:
    if expect is None:
        return None
    if not isinstance(expect, int) or isinstance(expect, bool) or expect < 0:
        raise errors.InvalidRequestError("expect", expect, "must be None, 0 (no row) or a version > 0")
    return expect


def check_scan(prefix: object, after: object, limit: object) -> None:
    for what, text in (("prefix", prefix), ("after", after)):
        if not isinstance(text, str):
            raise errors.InvalidRequestError(what, text, "must be a string")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SCAN:
        raise errors.InvalidRequestError("limit", limit, f"must be an integer in 1..{MAX_SCAN}")


def conflict(table: str, key: str, expected: int, actual: int) -> errors.ConflictError:
    """The port's ConflictError with the row and both versions (0: no row)."""
    what = "no row" if actual == 0 else f"version {actual}"
    error = errors.ConflictError(f"table {table!r} key {key!r}: expected "
                                 f"{'no row' if expected == 0 else f'version {expected}'}, found {what}")
    error.table, error.key, error.expected, error.actual = table, key, expected, actual
    return error


class Fold:
    """One reader's state of a table: rows, their versions, keys in order."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}      # deleted rows too
        self.unsettled: set[str] = set()        # keys whose newest record was rejected
        self._keys = SortedList()                # the keys of `values`, sorted: O(log n) a change

    def current(self, key: str) -> int:
        """The row's version, 0 when there is no row."""
        return self.versions.get(key, 0) if key in self.values else 0

    def check(self, table: str, key: str, expect: int | None) -> None:
        if expect is not None and self.current(key) != expect:
            raise conflict(table, key, expect, self.current(key))

    # Caller: the adapter's reader, once per record in log order. Affects: every field.
    def apply(self, record: Record, offset: int | None = None) -> Outcome:
        key, existed = record.key, record.key in self.values
        if record.op == "restore":
            return self._restore(record, existed)
        actual = self.current(key)
        lost_history = key not in self.versions and bool(record.expect)
        if record.expect is not None and record.expect != actual and not lost_history:
            self.unsettled.add(key)
            return Outcome(actual, False, existed)
        known = self.versions.get(key, 0)
        version = offset + 1 if offset is not None else max(known, record.base) + 1
        self._set(key, None if record.op == "del" else record.value, version)
        return Outcome(version, True, existed)

    def _restore(self, record: Record, existed: bool) -> Outcome:
        known = self.versions.get(record.key)
        if known is None or known < record.version:
            self._set(record.key, record.value, record.version)
        elif known > record.version:      # a newer write came before it: the restore is stale
            self.unsettled.add(record.key)
            return Outcome(known, False, existed)
        self.unsettled.discard(record.key)
        return Outcome(record.version, True, existed)

    def _set(self, key: str, value: bytes | None, version: int) -> None:
        self.unsettled.discard(key)
        self.versions[key] = version
        if value is None:
            if self.values.pop(key, None) is not None:
                self._keys.remove(key)
            return
        if key not in self.values:
            self._keys.add(key)
        self.values[key] = value

    def restore_of(self, key: str, id_: str) -> Record:
        """The record restating `key` as this reader holds it."""
        return Record("restore", key, self.values.get(key), version=self.versions.get(key, 0), id=id_)

    def scan(self, prefix: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        keys = self._keys
        i = keys.bisect_right(after) if after >= prefix else keys.bisect_left(prefix)
        for key in keys.islice(i, i + limit):
            if not key.startswith(prefix):
                break
            out.append((key, self.values[key]))
        return out

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        return self.scan(prefix, "", len(self._keys))
