"""Names of the topics a task travels on. One place, so every backend sees the same names."""
# Only [A-Za-z0-9_-]: the common ground of lite engine, Kafka and RocketMQ (lite names <= 64 bytes).

from __future__ import annotations

import re
import uuid

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


def new_task_id() -> str:
    return uuid.uuid4().hex


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
