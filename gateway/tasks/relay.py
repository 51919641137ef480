"""The relay: one loop per gateway instance that polls the instance's reply channels, folds every
event into its task, writes the folded task to the task index and hands the event to the calls
waiting on this instance.

Waiting calls see an event at once (it is durable on the reply channel already), except the event
that ends a turn: that one is indexed first, so a caller who answers an INPUT_REQUIRED on another
instance, or asks it for the task, finds the turn's end there. Hooks (`on_event`) run after the
index write and before the ack; unacked events come back if this instance dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from a2a.types import a2a_pb2

from adapters.base import Delivery, LiteConsumer, ack_many, deferred_durability
from adapters.errors import BackendError

from gateway.observability import metrics, tracing

from . import channels
from . import fold
from . import positions
from . import telemetry
from .envelope import EnvelopeError, ReplyEvent
from .index import TaskIndex
from .ownership import Owners
from .watch import Watch

log = logging.getLogger("topicbridge.tasks")

# Events that do not end a turn are indexed (and acked) at most this long after they arrive, many
# at once: a quick task is indexed once, when it ends, rather than once per event. GetTask on
# another instance may show such a task this much behind; this instance answers from memory.
INDEX_DELAY = 0.2
INDEX_RETRY = 0.5       # a failed index write is tried again this soon (not only at redelivery)

Hook = Callable[[a2a_pb2.Task, a2a_pb2.StreamResponse], Awaitable[None]]


@dataclass
class Active:
    task: a2a_pb2.Task                      # every event folded in so far: what callers have seen
    position: tuple = (0, -1)               # of the last event folded
    indexed: tuple = (0, -1)                # the task index holds the fold up to here
    hooked: tuple = (0, -1)                 # on_event hooks have run up to here
    watches: list[Watch] = field(default_factory=list)
    unhooked: dict = field(default_factory=dict)        # position -> ReplyEvent, hooks not run yet
    unacked: list[Delivery] = field(default_factory=list)   # acked once indexed and hooked
    held: list = field(default_factory=list)    # final events shown to waiting calls once indexed
    ended: bool = False                     # its turn's end was handed out: no new watches here
    started: float | None = field(default_factory=time.monotonic)   # this turn's submit here (None: loaded)
    capability: str | None = None           # recorded(task)[0], resolved once


class Relay:
    """Caller: TaskService (start, close, and the call side's bookkeeping in `active`).
    Affects: the task index, waiting calls' watches, the reply consumer's subscriptions."""

    def __init__(self, consumer: LiteConsumer, table: TaskIndex, *, poll_wait: float = 1.0,
                 index_delay: float = INDEX_DELAY) -> None:
        self.consumer = consumer
        self.table = table
        self.poll_wait = poll_wait
        self.index_delay = index_delay
        self.active: dict[str, Active] = {}     # tasks this instance follows
        self._due: dict[str, float] = {}        # task id -> when its un-indexed events must be indexed
        self._ending: set[str] = set()          # tasks whose turn-ending index write is to be retried
        self.bad_events = 0
        self.backend_name = type(consumer).__module__.split(".")[-1]     # for spans: lite, replies (kafka)...
        self.owners: Owners | None = None       # owner rows of running turns (ownership.py)
        self.backend: object | None = None      # whose table writes may return before durable (_index)
        # Awaited for each event once folded and indexed, before waiting calls see it and before
        # its ack (push notifications are published here). A hook that raises leaves the event unacked.
        self.on_event: list[Hook] = []

    async def close(self) -> None:
        """Index and ack what was shown, then end every waiting call's watch."""
        await self.index_due(float("inf"))
        for active in self.active.values():
            for watch in active.watches:
                watch.push(None)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                earliest = min(self._due.values(), default=math.inf)
                wait = max(0.0, min(self.poll_wait, earliest - time.monotonic()))
                deliveries = await self.consumer.poll(max_messages=64, wait=wait)
                backoff = 0.1
            except BackendError as e:       # unavailable, or anything else the backend says: retry
                log.warning("reply poll failed (%s); retrying in %.1fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                await self._relay_batch(deliveries)
                now = time.monotonic()
                if earliest <= now:     # else none is due: what the batch added is due later (no scan of them all)
                    await self.index_due(now)
            except Exception:       # a bug must not stop every task's relay: unacked, they come back
                log.exception("relaying reply events failed; they will be redelivered")

    async def index_due(self, now: float) -> None:
        due = [(task_id, False) for task_id, when in self._due.items() if when <= now]
        if due:
            await self._index_all(due)

    async def _relay_batch(self, deliveries: list[Delivery]) -> None:
        """Fold a poll's events task by task. A task this instance follows folds without awaiting;
        what awaits (loading a task, indexing a turn's end) runs for all tasks concurrently, so
        one fsync of the task index covers many of them."""
        by_task: dict[str, list[tuple[Delivery, ReplyEvent]]] = {}
        metrics.reply_events(len(deliveries))
        for delivery in deliveries:
            try:
                event = ReplyEvent.decode(delivery.body)
            except EnvelopeError as e:
                await self._drop(delivery, e)
                continue
            by_task.setdefault(event.task_id, []).append((delivery, event))
        waits, due, failed = [], [], None
        for task_id, items in by_task.items():
            active = self.active.get(task_id)
            if active is None:
                waits.append(self._relay_task(task_id, items))
                continue
            try:
                ends = self._fold(task_id, active, items)
            except Exception as e:      # a bug: the other tasks' events are relayed all the same
                failed = failed or e
                continue
            if ends is not None:
                due.append((task_id, ends))
        if due:
            waits.append(self._index_all(due))
        await _together(waits)
        if failed is not None:
            raise failed

    async def _relay_task(self, task_id: str, items: list[tuple[Delivery, ReplyEvent]]) -> None:
        """Load a task this instance does not follow yet (`load_active`), then fold its events."""
        try:
            active = self.active.get(task_id) or await self.load_active(task_id)
        except BackendError as e:
            log.warning("relaying events of task %s failed: %s (they will be redelivered)", task_id, e)
            return
        ends = self._fold(task_id, active, items)
        if ends is not None:
            await self._index(task_id, ending=ends)

    def _fold(self, task_id: str, active: Active, items: list[tuple[Delivery, ReplyEvent]]) -> bool | None:
        """Fold the events into the task. Waiting calls see an event at once (it is durable on
        the reply channel already), except the event that ends a turn: that one is indexed first
        (the folded task written to the task index), so a caller who answers an INPUT_REQUIRED
        on another instance, or asks it for the task, finds the turn's end there. Then hooks
        run and the events are acked; events that do not end a turn are indexed, hooked and
        acked within `index_delay`, together. Until acked, they come back if this instance dies.
        Returns None when the index write is due later, else whether the events end the turn
        (the caller indexes them now)."""
        state, traced = active.task.status.state, None
        if len(items) > 1:
            items = sorted(items, key=lambda item: item[1].position)
        for delivery, event in items:
            position = event.position
            if position > active.position:   # else a duplicate of at-least-once delivery
                active.position = position
                fold.apply(active.task, event.event)
                active.task.id = active.task.id or task_id
                if active.task.status.state != state:
                    state = active.task.status.state
                    telemetry.reached(active, state, event.event)
                traced = event.trace or traced
                if event.final:
                    active.held.append(event.event)
                else:
                    for watch in active.watches:
                        watch.push(event.event)
            if position > active.hooked:
                active.unhooked[position] = event
            active.unacked.append(delivery)
        if traced:      # one span for the batch, in the trace of its latest traced event
            telemetry.folded(active, traced, self.backend_name)
        # the task's latest event ends the turn (an earlier turn's final event, replayed, does not)
        ends = any(event.final and event.position == active.position for _, event in items)
        if ends or active.held or self.index_delay <= 0:
            return ends
        self._due.setdefault(task_id, time.monotonic() + self.index_delay)
        return None

    async def _index_all(self, items: list[tuple[str, bool]]) -> None:
        """`_index` of several tasks (task id, whether its events end the turn): on a backend
        that defers durability (the embedded engine), all in one deferred block (`_index_batch`);
        elsewhere each on its own, concurrently (its writes wait for their commit)."""
        if len(items) > 1 and getattr(self.backend, "defer_durability", None) is not None:
            await self._index_batch(items)
        elif len(items) == 1:
            await self._index(items[0][0], ending=items[0][1])
        else:
            await _together([self._index(task_id, ending=ending) for task_id, ending in items])

    async def _index_batch(self, items: list[tuple[str, bool]]) -> None:
        """`_index` of several tasks at once, where the index writes return before they are
        durable: every task's rows are written in one deferred block, one after the other, and
        its waiting calls get their answer; then one durable wait covers them all (one group
        commit), the hooks run, every event is acked in one call (`ack_many`), the ended turns'
        channels are left in one call and their owner rows released in one block. The same
        writes, hand-offs and acks in the same order as `_index` per task, with one deferred
        block, durable wait, ack and unsubscribe per poll instead of per task. A task whose
        write fails is tried again as in `_index`; a bug in one (not a BackendError) leaves
        its events unacked (they come back), the others go on, and it is raised at the end."""
        staged: list[tuple[str, Active, list[Delivery], bool]] = []
        failed: Exception | None = None
        writes = deferred_durability(self.backend)
        with writes:
            for task_id, ending in items:
                taken = self._take_due(task_id, ending)
                if taken is None:
                    continue
                active, deliveries, ending = taken
                try:
                    await self._write_index(task_id, active, ending, writes.defers)
                except BackendError as e:
                    self._retry(task_id, active, deliveries, ending, e)
                    continue
                except Exception as e:      # a bug: unacked, its events come back
                    failed = failed or e
                    continue
                staged.append((task_id, active, deliveries, ending))
        if not staged:
            if failed is not None:
                raise failed
            return
        try:
            await writes.durable(lazy=True)
        except BackendError as e:
            for task_id, active, deliveries, ending in staged:
                self._retry(task_id, active, deliveries, ending, e)
            if failed is not None:
                raise failed
            return
        hooked, acks = [], []
        for entry in staged:
            try:
                await self._hook(entry[1])
            except BackendError as e:
                self._retry(entry[0], entry[1], entry[2], entry[3], e)
                continue
            except Exception as e:      # a hook's bug: unacked, its events come back
                failed = failed or e
                continue
            hooked.append(entry)
            acks.extend(entry[2])
        try:
            await ack_many(acks, gone_ok=True)
        except BackendError as e:       # acked again when retried: an ack already made is gone_ok
            for task_id, active, deliveries, ending in hooked:
                self._retry(task_id, active, deliveries, ending, e)
            hooked = []
        ended = []
        for task_id, active, _, ending in hooked:
            if ending and active.ended and fold.is_final(active.task.status.state):
                telemetry.turn_ended(active)
                self.active.pop(task_id, None)
                ended.append(task_id)
        if ended:
            await self._leave(ended)
        if failed is not None:
            raise failed

    async def _leave(self, task_ids: list[str]) -> None:
        """Stop reading the reply channels of turns that ended and release their owner rows, in
        one call and one deferred block; a task continued (`resume`) meanwhile reads its channel again."""
        with contextlib.suppress(BackendError):
            await self.consumer.unsubscribe([channels.reply_channel(task_id) for task_id in task_ids])
            again = [task_id for task_id in task_ids if task_id in self.active]
            if again:
                await self.consumer.subscribe([channels.reply_channel(task_id) for task_id in again])
        if self.owners is None:
            return
        with deferred_durability(self.backend):
            for task_id in task_ids:
                if task_id not in self.active:
                    await self._release_one(task_id)

    async def _write_index(self, task_id: str, active: Active, ending: bool, deferred: bool) -> None:
        """Write the folded task to the index if it has news, then hand the waiting calls the
        events held for it (and the end of the turn): also when the write fails."""
        try:
            if active.indexed < active.position:
                position = active.position
                positions.stamp(active.task, position)     # a later reader skips what is folded in
                started = time.perf_counter()
                await self.table.put(task_id, active.task.SerializeToString(), task=active.task, deferred=deferred)
                metrics.backend_op("index_put", started)
                active.indexed = max(active.indexed, position)
        finally:        # indexed or not, the waiting calls get their answer (unless `resume` took the task on)
            final = ending and fold.is_final(active.task.status.state)
            release(active, final)
            active.ended = active.ended or final

    async def _hook(self, active: Active) -> None:
        """Run the hooks of the events not hooked yet, in order."""
        for position in sorted(active.unhooked):
            event = active.unhooked.pop(position)
            if position > active.hooked:
                if event.trace and tracing.enabled:
                    with tracing.attached(event.trace):     # a push job joins the event's trace
                        for hook in self.on_event:
                            await hook(active.task, event.event)
                else:
                    for hook in self.on_event:
                        await hook(active.task, event.event)
                active.hooked = position

    def _retry(self, task_id: str, active: Active, deliveries: list[Delivery], ending: bool,
               error: BackendError) -> None:
        """Tried again soon with the same deliveries (a storage error clears once a write
        succeeds); if this instance dies meanwhile, they come back after their invisibility."""
        active.unacked[:0] = deliveries
        self._due[task_id] = time.monotonic() + INDEX_RETRY
        if ending:
            self._ending.add(task_id)
        log.warning("indexing events of task %s failed: %s (retrying in %.1fs)", task_id, error, INDEX_RETRY)

    def _take_due(self, task_id: str, ending: bool) -> tuple[Active, list[Delivery], bool] | None:
        """A task about to be indexed: no longer due, its unacked events taken, and whether its
        turn ends (asked now, or by an earlier try that failed). None if it is not followed."""
        self._due.pop(task_id, None)
        if task_id in self._ending:
            self._ending.discard(task_id)
            ending = True
        active = self.active.get(task_id)
        if active is None:
            return None
        deliveries, active.unacked = active.unacked, []
        return active, deliveries, ending

    async def _index(self, task_id: str, *, ending: bool = False) -> None:
        """Write the folded task to the index, hand waiting calls the events held for it (and
        the end of the turn), run the hooks of the new events and ack them; if the turn ended,
        stop reading its reply channel."""
        taken = self._take_due(task_id, ending)
        if taken is None:
            return
        active, deliveries, ending = taken
        # A turn's end is handed to the waiting calls once readable in the index, not once
        # durable there: its events are durable on the reply channel already, and they stay
        # unacked until the index write is durable too, so a crash in between brings them back
        # to be indexed again. One durable wait fewer on every blocking call (deferred_durability).
        # The wait is lazy: nobody is blocked on it, so it starts no commit of its own but rides
        # the next one (the next task's submit), or the engine's deferred commit: at c1 the
        # index row's fsync neither adds one per task nor holds the flusher when that submit comes.
        writes = deferred_durability(self.backend)
        try:
            with writes:    # its rows one after the other, none waiting (index.py _write_batch)
                await self._write_index(task_id, active, ending, writes.defers)
            await writes.durable(lazy=True)
            await self._hook(active)
            await ack_many(deliveries, gone_ok=True)
        except BackendError as e:
            self._retry(task_id, active, deliveries, ending, e)
            return
        if ending and active.ended and fold.is_final(active.task.status.state):
            telemetry.turn_ended(active)       # (not ended: resume or a cancel took the task on meanwhile)
            self.active.pop(task_id, None)
            await self._leave([task_id])

    async def _release(self, task_id: str) -> None:
        """The turn ended and is indexed: this instance no longer answers for it (`_release_one`)."""
        if self.owners is None:
            return
        with deferred_durability(self.backend):
            await self._release_one(task_id)

    async def _release_one(self, task_id: str) -> None:
        """Release the owner row. The release rides the next commit instead of waiting for one
        of its own (callers write it in a deferred block): lost to a crash, the row is dropped
        at restart, as when the write fails."""
        try:
            await self.owners.release(task_id)
        except BackendError as e:   # a restart finds the row, sees the indexed end, and drops it then
            log.warning("releasing task %s failed: %s", task_id, e)

    async def follow(self, task_id: str) -> bool:
        """Follow a task this instance owns (after a restart, or adopted): fold what its channel
        holds beyond the indexed position. False if its turn had ended already (row released)."""
        if task_id in self.active:
            return True
        active = await self.load_active(task_id)
        if fold.is_final(active.task.status.state):
            self.active.pop(task_id, None)
            await self._release(task_id)
            return False
        await self.consumer.subscribe([channels.reply_channel(task_id)])
        return True

    async def load_active(self, task_id: str) -> Active:
        raw = await self.table.get(task_id)
        task = a2a_pb2.Task.FromString(raw) if raw else a2a_pb2.Task(id=task_id)
        # what the index holds is folded in already: at least the earlier turns
        start = positions.position_of(task) or (recorded(task)[1], 0, -1)
        active = Active(task, start, start, start, started=None)
        self.active[task_id] = active
        return active

    async def _drop(self, delivery: Delivery, error: EnvelopeError) -> None:
        self.bad_events += 1
        log.warning("dropping malformed reply event %s on %s: %s", delivery.message_id,
                    delivery.lite_topic, error.reason)
        await delivery.ack()


async def _together(waits: list[Awaitable]) -> None:
    """asyncio.gather, without its task and future for a lone awaitable (most polls bring one)."""
    if len(waits) == 1:
        await waits[0]
    elif waits:
        await asyncio.gather(*waits)


def release(active: Active, ending: bool) -> None:
    """Hand the held events to the waiting calls; at a turn's end, end their watches too."""
    held, active.held = active.held, []
    for event in held:
        for watch in active.watches:
            watch.push(event)
    if ending:
        for watch in active.watches:
            watch.push(None)
        active.watches = []


def recorded(task: a2a_pb2.Task) -> tuple[str, int]:
    """The capability and turn a task records in metadata["topicbridge"] ("", 0 if it does not)."""
    value = task.metadata.fields.get(fold.OWN_METADATA)
    if value is None or not value.HasField("struct_value"):
        return "", 0
    own = value.struct_value.fields
    capability = own["capability"].string_value if "capability" in own else ""
    return capability, int(own["turn"].number_value) if "turn" in own else 0
