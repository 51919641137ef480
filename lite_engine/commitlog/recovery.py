"""Opening the commit log: snapshots and segments found on disk are checked, a torn tail of
the last segment is cut off, and the stored records are replayed to the engine."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from .errors import CommitLogError, CorruptLogError, LogClosedError
from .record import RecordScan
from .state import LogState
from .segment_files import SEGMENT_RE, TEMP_SUFFIX, Segment, numbered_files
from .snapshot import SNAPSHOT_RE, Snapshot, read_snapshot

_log = logging.getLogger("lite_engine.commitlog")


class LogRecovery:
    """open() and replay(): what happens before the first append.

    A part of CommitLog, mixed into it: every attribute is set up in CommitLog.__init__.
    Owns what open() sets (_segments, _active, _next_lsn, _synced_lsn, _snapshot_lsns)
    and the recovery report (recovered_truncated_bytes, recovery_problem,
    quarantined_snapshots); reads the rest.
    """

    def open(self) -> Snapshot | None:
        """Create the directory, recover the segments, return the newest valid snapshot."""
        if self._state is not LogState.NEW:
            raise CommitLogError(f"commit log {self._dir} was already opened")
        os.makedirs(self._dir, exist_ok=True)
        self._remove_temp_files()
        snapshot = self._load_newest_snapshot()
        segments, end = self._recover_segments()
        self._adopt(segments, end, snapshot.lsn if snapshot else -1)
        self._state = LogState.OPEN
        return snapshot

    def _remove_temp_files(self) -> None:
        for name in os.listdir(self._dir):
            if name.endswith(TEMP_SUFFIX):
                os.unlink(os.path.join(self._dir, name))

    def _load_newest_snapshot(self) -> Snapshot | None:
        lsns = sorted(numbered_files(self._dir, SNAPSHOT_RE), reverse=True)
        for i, lsn in enumerate(lsns):
            path = self._snapshot_path(lsn)
            data, problem = read_snapshot(path, lsn)
            if problem is None:
                self._snapshot_lsns = sorted(lsns[i:])
                return Snapshot(lsn, data)
            self._quarantine(path, problem)
        return None

    def _quarantine(self, path: str, problem: str) -> None:
        _log.error("commit log snapshot %s is invalid (%s); set aside, using an older one", path, problem)
        os.replace(path, path + ".corrupt")
        self.quarantined_snapshots.append(path)

    def _recover_segments(self) -> tuple[list[Segment], int]:
        """Return the segments and the last LSN they hold (-1 if none)."""
        bases = sorted(numbered_files(self._dir, SEGMENT_RE))
        segments: list[Segment] = []
        next_lsn = bases[0] if bases else 0
        for i, base in enumerate(bases):
            seg = Segment(base, self._segment_path(base), segments[-1] if segments else None)
            if base != next_lsn:
                raise CorruptLogError(seg.path, 0, f"segment starts at LSN {base}, expected {next_lsn}")
            next_lsn = self._recover_segment(seg, is_last=i == len(bases) - 1)
            segments.append(seg)
        return segments, next_lsn - 1

    def _recover_segment(self, seg: Segment, is_last: bool) -> int:
        """Validate one segment, truncating a bad tail of the last one; return its next LSN."""
        with open(seg.path, "rb") as f:
            data = f.read()
        scan = RecordScan(data, seg.base)
        for _ in scan:
            pass
        seg.size = seg.written = seg.synced = scan.offset
        if scan.problem is not None:
            if not is_last:
                raise CorruptLogError(seg.path, scan.offset, scan.problem)
            if not scan.torn_tail:
                following = len(data) - scan.bad_end
                raise CorruptLogError(seg.path, scan.offset, f"{scan.problem}, with {following} bytes of "
                                                             "records after it: not a torn tail")
            self._truncate_tail(seg, len(data), scan.problem)
        return scan.next_lsn

    def _truncate_tail(self, seg: Segment, file_size: int, problem: str) -> None:
        dropped = file_size - seg.size
        _log.warning(
            "commit log %s: %s at offset %d; truncating %d bytes of torn tail",
            seg.path, problem, seg.size, dropped,
        )
        with open(seg.path, "r+b") as f:
            f.truncate(seg.size)
            os.fsync(f.fileno())
        self.recovered_truncated_bytes += dropped
        self.recovery_problem = f"{seg.path} at offset {seg.size}: {problem}"

    def _adopt(self, segments: list[Segment], end: int, snapshot_lsn: int) -> None:
        if not segments or end < snapshot_lsn:
            self._discard_obsolete(segments, snapshot_lsn)
            self._start_fresh(snapshot_lsn + 1)
            return
        if segments[0].base > snapshot_lsn + 1:
            reason = f"segments start at LSN {segments[0].base} but the snapshot covers only up to {snapshot_lsn}"
            raise CorruptLogError(self._dir, 0, reason)
        self._segments, self._active, self._next_lsn = segments, segments[-1], end + 1
        self._synced_lsn = end
        self._active.fd = os.open(self._active.path, os.O_WRONLY | os.O_APPEND)

    def _discard_obsolete(self, segments: list[Segment], snapshot_lsn: int) -> None:
        """The log ends before the snapshot (its tail was lost): every record is covered."""
        if segments:
            _log.warning("commit log %s ends before snapshot LSN %d; dropping its segments", self._dir, snapshot_lsn)
        for seg in segments:
            os.unlink(seg.path)

    def _start_fresh(self, lsn: int) -> None:
        self._active = Segment(lsn, self._segment_path(lsn))
        self._segments, self._next_lsn, self._synced_lsn = [self._active], lsn, lsn - 1

    # --- replay -------------------------------------------------------------------------

    def replay(self, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """Yield (lsn, rtype, payload) for every stored record with lsn >= start, in order.

        Reads what is in the files; call it after open() and before appending.
        """
        if self._state is LogState.NEW:
            raise LogClosedError(self._dir, self._state.value)
        if start < self.first_lsn:
            raise ValueError(f"cannot replay from LSN {start!r}: the log starts at {self.first_lsn}")
        segments = list(self._segments)
        for i, seg in enumerate(segments):
            last = segments[i + 1].base - 1 if i + 1 < len(segments) else None
            if last is None or last >= start:
                yield from self._replay_segment(seg, start)

    def _replay_segment(self, seg: Segment, start: int) -> Iterator[tuple[int, int, bytes]]:
        try:
            with open(seg.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return  # a fresh segment not written yet
        scan = RecordScan(data, seg.base)
        for lsn, rtype, payload in scan:
            if lsn >= start:
                yield lsn, rtype, bytes(payload)
        if scan.problem is not None:
            raise CorruptLogError(seg.path, scan.offset, scan.problem)
