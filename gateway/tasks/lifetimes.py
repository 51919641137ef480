"""Task lifetimes: every turn has a deadline, every dead-lettered envelope fails its task, and
every ended task expires with all its rows.

Deadline. A turn must end by `deadline` (unix seconds, in task.metadata["topicbridge"]): now plus
the capability's `timeout_seconds` (registry) or gateway.task_timeout_seconds. The task index
writes a row "<due ms>/<task_id>" to the `task-lifetimes` table when a running turn gets its
deadline (index.py); this loop pages through the rows due by now, oldest first, and for each:

    task gone                  -> its remaining rows are deleted
    running, deadline later    -> the row moves to the deadline (a later turn, a longer timeout)
    running, deadline passed   -> FAILED is published on its reply channel as the one event of a
                                  turn no worker runs (position (turn + 1, 1, 0), as a cancel of a
                                  waiting task is), its worker is told to cancel, and the row moves
                                  `grace` seconds on, to check that the failure was folded in
    ended or waiting for input -> the row moves to status time + retention; once there, the task,
                                  its index rows and every row keyed by its id expire

Two instances may handle the same row: each writes the row's next key first (the same key,
or one more check later: harmless) and then deletes the row expecting the version it read.
Only the one whose delete succeeds acts. Every failure of a turn has the same position, so
whichever lands first on the channel is the one every reader folds.

Dead letters. After `max_attempts` deliveries a capability topic's envelope goes to its group's
dead-letter topic; the gateway instances share the group `tb-gateway-dead-letters` on the
dead-letter topic of every capability they know (the registry's, and those they submitted to),
and fail the envelope's task with "dead-lettered after N attempts: <reason>".

The registry is not imported here (tasks sit below it): the gateway passes `timeout_of`
(capability -> its own timeout or None) and `capability_names` (every registered name).

Caller: the gateway (start, close), TaskService (timeout_of). Affects: reply and control
channels (FAILED, cancel), the task index and the rows named in TASK_ROWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable

from a2a.types import a2a_pb2

from adapters.base import Delivery, Message
from adapters.errors import BackendError, ConflictError

from . import channels
from . import fold
from .envelope import ControlEvent, EnvelopeError, ReplyEvent, TaskEnvelope
from .index import LIFETIME_TABLE, TaskIndex, deadline_of, lifetime_key, parse_lifetime_key
from .recovery import away_of
from .relay import recorded

if TYPE_CHECKING:
    from gateway.supervisor import Supervisor
    from .service import TaskService

log = logging.getLogger("topicbridge.tasks")

TASK_TIMEOUT = 3600.0               # gateway.task_timeout_seconds
TASK_RETENTION = 7 * 24 * 3600.0    # gateway.task_retention_seconds
FOLLOW_UP_GRACE = 30.0              # a failure nobody folded within this is folded by the sweeper
DEAD_LETTER_GROUP = "tb-gateway-dead-letters"
# Rows other parts keep under a task's id: MCP task records (mcp/tasks.py), push configs
# (a2a/push.py), a bridged agent's ids (workers/bridge.py). They expire with the task.
TASK_ROWS = ("mcp-tasks", "push_configs", "bridge-tasks")
_FOLLOW_UP = b"failed"              # value of the row that checks a failure was folded in
_ATTEMPTS = re.compile(r"(\d+) times")


TimeoutOf = Callable[[str], Awaitable[float | None]]
CapabilityNames = Callable[[], Awaitable[Iterable[str]]]


class Lifetimes:
    def __init__(self, service: "TaskService", *, timeout_of: TimeoutOf | None = None,
                 capability_names: CapabilityNames | None = None, timeout: float = TASK_TIMEOUT, retention: float = TASK_RETENTION, interval: float = 1.0,
                 grace: float = FOLLOW_UP_GRACE, page: int = 100, capability_ttl: float = 10.0) -> None:
        self.service = service
        self._capability_timeout, self._capability_names = timeout_of, capability_names
        self.timeout, self.retention = timeout, retention
        self.interval, self.grace, self.page = interval, grace, page
        self.capability_ttl = capability_ttl
        self.index: TaskIndex | None = None
        self.rows = None                    # the task-lifetimes table
        self._task_rows: list = []
        self._timeouts: dict[str, tuple[float | None, float]] = {}   # capability -> (timeout, read at)
        self._dead_letters: dict[str, object] = {}                  # capability -> group consumer
        self.failed = self.expired = 0
        self._supervisor: "Supervisor | None" = None

    async def start(self, supervisor: "Supervisor | None" = None) -> None:
        """Open, then run the deadline and dead-letter loops under `supervisor` (the service's)."""
        await self.open()
        self._supervisor = supervisor or self.service.supervisor
        self._supervisor.spawn("tasks.lifetimes", self.run)
        self._supervisor.spawn("tasks.dead-letters", self.run_dead_letters)

    async def open(self) -> None:
        """Open the tables and give the task service its deadlines (`start` also runs the loops)."""
        backend = self.service.backend
        self.index = await TaskIndex.open(backend)
        self.rows = await backend.table(LIFETIME_TABLE)
        self._task_rows = [await backend.table(name) for name in TASK_ROWS]
        self.service.task_timeout = self.timeout
        self.service.timeout_of = self.timeout_of
        self.service.set_retention(self.retention)

    async def close(self) -> None:
        if self._supervisor is not None:     # the loops end before the consumers they read
            for name in ("tasks.dead-letters", "tasks.lifetimes"):
                await self._supervisor.stop(name)
        for consumer in self._dead_letters.values():
            with contextlib.suppress(BackendError):
                await consumer.close()
        self._dead_letters.clear()

    async def timeout_of(self, capability: str) -> float | None:
        """The capability's own timeout (None: the gateway's), from the registry at most
        `capability_ttl` seconds old."""
        cached = self._timeouts.get(capability)
        if cached is not None and time.monotonic() - cached[1] < self.capability_ttl:
            return cached[0]
        timeout = await self._capability_timeout(capability) if self._capability_timeout is not None else None
        self._timeouts[capability] = (timeout, time.monotonic())
        return timeout

    # ------------------------------------------------------------ deadlines and retention

    async def run(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self.interval)

    async def sweep(self) -> int:
        """Handle the rows due by now, a page at a time; returns how many were due."""
        bound = lifetime_key(time.time(), "\U0010ffff")
        after, handled = "", 0
        while True:
            page = [key for key, _ in await self.rows.scan("", after=after, limit=self.page) if key <= bound]
            if not page:
                return handled
            await asyncio.gather(*(self._handle(key) for key in page))
            handled += len(page)
            after = page[-1]

    async def _handle(self, key: str) -> None:
        try:
            row = await self.rows.read(key)
            if row is None:
                return
            _, task_id = parse_lifetime_key(key)
            raw = await self.index.get(task_id)
            task = a2a_pb2.Task.FromString(raw) if raw else None
            await self._decide(key, row, task_id, task)
        except BackendError as e:       # the row stays: the next sweep tries again
            log.warning("lifetime row %s: %s", key, e)

    async def _decide(self, key: str, row: tuple[bytes, int], task_id: str, task: a2a_pb2.Task | None) -> None:
        now, (value, version) = time.time(), row
        if task is None:
            if await self._claim(key, version):
                await self._drop_rows(task_id)
        elif not fold.is_final(task.status.state):
            deadline = deadline_of(task) or parse_lifetime_key(key)[0]
            if deadline > now:
                await self._move(key, version, lifetime_key(deadline, task_id))
            elif await self._move(key, version, lifetime_key(now + self.grace, task_id), _FOLLOW_UP):
                reason = _deadline_reason(deadline, away_of(task), self.service.channel_idle_seconds)
                await self.fail(task, reason, follow=value == _FOLLOW_UP)
        else:
            expiry = _updated(task) + self.retention
            if expiry > now:
                await self._move(key, version, lifetime_key(expiry, task_id))
            elif await self._claim(key, version):
                await self.expire(task_id)

    async def _move(self, key: str, version: int, to: str, value: bytes = b"") -> bool:
        """Write the row's next key, then take the row; True for the one instance that took it."""
        if to == key:
            return False
        await self.rows.put(to, value)
        return await self._claim(key, version)

    async def _claim(self, key: str, version: int) -> bool:
        try:
            return await self.rows.delete(key, expect=version)
        except ConflictError:
            return False

    async def expire(self, task_id: str) -> None:
        """The task and every row kept under its id go."""
        await self._drop_rows(task_id)
        await self.index.delete(task_id)
        self.expired += 1

    async def _drop_rows(self, task_id: str) -> None:
        await asyncio.gather(*(table.delete(task_id) for table in self._task_rows))

    # ------------------------------------------------------------ failing a task

    async def fail(self, task: a2a_pb2.Task, reason: str, *, follow: bool = False) -> None:
        """Publish FAILED as the one event of the turn after the task's current one (every
        failure of that turn has the same position: the first on the channel wins everywhere),
        then tell its worker or bridge to cancel. With `follow`, this instance's relay folds it
        (nobody did within `grace`: its owner is gone)."""
        _, turn = recorded(task)
        update = a2a_pb2.TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id)
        update.status.state = a2a_pb2.TASK_STATE_FAILED
        fold.stamp_now(update.status.timestamp)
        update.status.message.CopyFrom(a2a_pb2.Message(
            message_id=f"{task.id}-failed-{turn + 1}", role=a2a_pb2.ROLE_AGENT, task_id=task.id,
            context_id=task.context_id, parts=[a2a_pb2.Part(text=reason)]))
        event = ReplyEvent(task.id, 1, 0, a2a_pb2.StreamResponse(status_update=update), True, turn + 1)
        if follow:
            await self._follow(task.id)
        backend = self.service.backend
        await backend.publish(channels.REPLY_TOPIC, Message(event.encode(), {"task_id": task.id}),
                              lite_topic=channels.reply_channel(task.id))
        await backend.publish(channels.CONTROL_TOPIC, Message(ControlEvent(task.id, "cancel", reason).encode()),
                              lite_topic=channels.control_channel(task.id))
        self.failed += 1
        log.info("task %s failed: %s", task.id, reason)

    async def _follow(self, task_id: str) -> None:
        relay = self.service._relay
        if task_id not in relay.active:
            await relay.load_active(task_id)
            await self.service._consumer.subscribe([channels.reply_channel(task_id)])

    # ------------------------------------------------------------ dead letters

    async def run_dead_letters(self) -> None:
        refreshed = 0.0
        while True:
            if time.monotonic() - refreshed >= self.capability_ttl:
                await self._watch_dead_letters()
                refreshed = time.monotonic()
            if not await self.drain_dead_letters():
                await asyncio.sleep(self.interval)

    async def drain_dead_letters(self) -> int:
        """Fail the tasks of the envelopes dead-lettered since the last call; returns how many."""
        handled = 0
        for consumer in list(self._dead_letters.values()):
            for delivery in await consumer.receive(max_messages=32, wait=0.0):
                await self._dead_lettered(delivery)
                handled += 1
        return handled

    async def _watch_dead_letters(self) -> None:
        names = set(self._timeouts)
        if self._capability_names is not None:
            names |= set(await self._capability_names())
        backend = self.service.backend
        for name in sorted(names - set(self._dead_letters)):
            topic = backend.dead_letter_topic(channels.worker_group(name))
            self._dead_letters[name] = await backend.group_consumer(topic, DEAD_LETTER_GROUP)

    async def _dead_lettered(self, delivery: Delivery) -> None:
        task_id = delivery.headers.get("task_id") or delivery.key or ""
        raw = await self.index.get(task_id) if 0 < len(task_id) <= 128 and task_id.isprintable() else None
        task = a2a_pb2.Task.FromString(raw) if raw else None
        if task is not None and not fold.is_final(task.status.state) and _turn_of(delivery) >= recorded(task)[1]:
            await self.fail(task, dead_letter_reason(delivery.headers))
        await delivery.ack()


def dead_letter_reason(headers: dict[str, str]) -> str:
    """"dead-lettered after N attempts: <why>", from the x-dlq-* headers of the backend or worker."""
    why = headers.get("x-dlq-reason", "")
    attempts = headers.get("x-dlq-attempts") or next(iter(_ATTEMPTS.findall(why)), "")
    text = f"dead-lettered after {attempts} attempts" if attempts else "dead-lettered"
    last = headers.get("x-last-error", "")
    details = "; ".join(part for part in (why, f"last error: {last}" if last else "") if part)
    return f"{text}: {details}" if details else text


def _turn_of(delivery: Delivery) -> int:
    """The turn of a dead-lettered envelope (a malformed one counts as the current turn's)."""
    try:
        return TaskEnvelope.decode(delivery.body).turn
    except EnvelopeError:
        return 1 << 30


def _deadline_reason(deadline: float, away: float | None = None, idle: float | None = None) -> str:
    when = datetime.fromtimestamp(deadline, timezone.utc).isoformat(timespec="seconds")
    reason = (f"deadline exceeded: the task did not end by its deadline {when} (the capability's "
              "timeout_seconds, else gateway.task_timeout_seconds)")
    if away is None or idle is None or away <= idle:
        return reason
    return (f"reply channel expired while the gateway was away: it was away {away:.1f} s, longer than "
            f"gateway.channel_idle_seconds ({idle:g} s), so what the worker answered meanwhile was lost; "
            + reason)


def _updated(task: a2a_pb2.Task) -> float:
    return task.status.timestamp.ToNanoseconds() / 1e9 if task.status.HasField("timestamp") else 0.0
