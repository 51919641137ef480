"""Names of the topics a task travels on. One place, so every backend sees the same names."""
# Only [A-Za-z0-9_-]: the common ground of lite engine, Kafka and RocketMQ (lite names <= 64 bytes).

from __future__ import annotations

import os
import re
import threading

REPLY_TOPIC = "tb-reply"        # lite parent of every task's reply channel
CONTROL_TOPIC = "tb-control"    # lite parent of every task's control channel (cancel)
TASK_TABLE = "tasks"            # task index: task id -> folded task
# Idle time of the reply and control channels (the same for every creator of the parents: the
# last create_topic sets it). An ended task's channels go this long after their last event, so
# lite topics in use are tasks in flight plus what ended in the last idle time; re-attach and
# GetTask then answer from the index. It must outlast a dead gateway's adoption (recovery.py:
# lease + adoption interval, ~12 s) and any gateway outage nobody adopts for (one instance on a
# remote engine): past it, a worker's events sent meanwhile are gone and the task ends at its
# deadline. An embedded engine restarts every channel's idle clock when it replays its log.
CHANNEL_IDLE_SECONDS = 600.0  # gateway.channel_idle_seconds
CAPABILITY_PREFIX = "tb-cap-"

_CAPABILITY = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


_IDS_PER_DRAW = 256
_random = b""        # os.urandom bytes drawn for the next ids, 16 an id
_at = 0
_lock = threading.Lock()


def new_task_id() -> str:
    """A random (version 4) UUID in hex, as uuid.uuid4().hex. The random bytes are drawn from
    os.urandom for 256 ids at once: uuid4 makes a getrandom call and a UUID object per id, the
    most of a submit's CPU after its writes (issue 17: two ids per submit, task and context)."""
    global _random, _at
    with _lock:            # ids made on other threads (a sync worker's) never share bytes
        if _at >= len(_random):
            _random, _at = os.urandom(16 * _IDS_PER_DRAW), 0
        value = int.from_bytes(_random[_at:_at + 16], "big")
        _at += 16
    value = value & ~(0xF000 << 64) | (0x4000 << 64)      # version 4
    value = value & ~(0xC000 << 48) | (0x8000 << 48)      # variant RFC 4122
    return "%032x" % value


def _forget_random() -> None:
    """A forked child draws its own: it must not hand out the ids its parent has yet to."""
    global _random, _at, _lock
    _random, _at, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_random)


def capability_topic(name: str) -> str:
    return CAPABILITY_PREFIX + name


def worker_group(name: str) -> str:
    return f"tb-workers-{name}"


def reply_channel(task_id: str) -> str:
    return f"task-{task_id}"


def task_id_of(reply_lite_topic: str) -> str:
    return reply_lite_topic.removeprefix("task-")


def control_channel(task_id: str) -> str:
    return f"ctl-{task_id}"


def is_capability_name(name: str) -> bool:
    return isinstance(name, str) and _CAPABILITY.fullmatch(name) is not None
