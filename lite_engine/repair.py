"""The operator's way past a corrupt commit log: `topicbridge engine --repair --data-dir DIR`.

An engine refuses to open a log with a bad record before its tail (CorruptLogError naming the
segment and offset): replaying past it would silently lose or invent state. Repair cuts the log
at that record: the bytes from it on, and every later segment, are moved aside (renamed
`*.corrupt-<offset>` / `*.corrupt`, never deleted, so they can be inspected or recovered by
hand), and the log opens with what came before. Records after the cut are gone: tasks and rows
written after it are lost, and reported so.

It takes the data directory's lock, so it cannot run next to an engine that has the directory
open. Caller: lite_engine/cli.py. Affects: the files of the data directory.
"""

from __future__ import annotations

import os
import re
import shutil

from .commitlog import CommitLog, CorruptLogError
from .dirlock import DirLock

MAX_CUTS = 100          # each cut removes at least one segment's tail: a bound, not a real limit
_SEGMENT = re.compile(r"^(\d{20})\.log$")


class RepairError(Exception):
    """The log cannot be repaired by cutting (e.g. the damage is not in a segment)."""


async def repair(data_dir: str | os.PathLike) -> list[str]:
    """Cut the log at every corruption until it opens; return one line per action taken
    (empty: the log was sound)."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise RepairError(f"{data_dir} is not a directory")
    lock = DirLock(data_dir)
    lock.acquire()
    try:
        actions: list[str] = []
        for _ in range(MAX_CUTS):
            problem = await _problem(data_dir)
            if problem is None:
                return actions
            actions.append(_cut(data_dir, problem))
        raise RepairError(f"{data_dir}: still corrupt after {MAX_CUTS} cuts")
    finally:
        lock.release()


async def _problem(data_dir: str) -> CorruptLogError | None:
    log = CommitLog(data_dir)
    try:
        log.open()
    except CorruptLogError as e:
        return e
    await log.close()
    return None


def _cut(data_dir: str, problem: CorruptLogError) -> str:
    path = problem.path
    name = os.path.basename(path)
    if os.path.dirname(path) != data_dir.rstrip(os.sep) or not _SEGMENT.match(name):
        raise RepairError(f"cannot repair by cutting: {problem}")
    later = sorted(n for n in os.listdir(data_dir) if _SEGMENT.match(n) and n > name)
    for other in later:
        os.replace(os.path.join(data_dir, other), os.path.join(data_dir, other + ".corrupt"))
    size = os.path.getsize(path)
    aside = f"{path}.corrupt-{problem.offset}"
    with open(path, "rb") as f, open(aside, "wb") as out:
        f.seek(problem.offset)
        shutil.copyfileobj(f, out)
        out.flush()
        os.fsync(out.fileno())
    with open(path, "r+b") as f:
        f.truncate(problem.offset)
        os.fsync(f.fileno())
    return (f"{problem}: cut {name} at offset {problem.offset} ({size - problem.offset} bytes kept in "
            f"{os.path.basename(aside)}), {len(later)} later segment(s) set aside as *.corrupt")
