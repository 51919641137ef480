"""Task lifetimes on the real lite engine: deadlines, dead letters, retention."""

import asyncio
import time

import pytest
from a2a.types import a2a_pb2

from adapters.base import TopicSpec
from adapters.errors import BackendUnavailableError
from gateway.registry.capabilities import TIMEOUT_EXTENSION, Registry, card_timeout, check_timeout
from gateway.supervisor import Supervisor
from gateway.tasks import channels
from gateway.tasks.index import CHUNK_TABLE, LIFETIME_TABLE, ORDER_TABLE
from gateway.tasks.lifetimes import TASK_ROWS, Lifetimes
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker

FAILED, COMPLETED = a2a_pb2.TASK_STATE_FAILED, a2a_pb2.TASK_STATE_COMPLETED


def _message(text: str = "hi") -> a2a_pb2.Message:
    return a2a_pb2.Message(message_id=f"m-{time.monotonic_ns()}", role=a2a_pb2.ROLE_USER,
                           parts=[a2a_pb2.Part(text=text)])


async def _last_event(watch, seconds: float = 20) -> a2a_pb2.StreamResponse:
    last = None
    async with asyncio.timeout(seconds):
        async for event in watch.events():
            last = event
    return last


def _status_text(event: a2a_pb2.StreamResponse) -> str:
    return " ".join(p.text for p in event.status_update.status.message.parts)


@pytest.fixture
async def supervisor():
    s = Supervisor(backoff=0.05)
    yield s
    await s.close()


async def _hanging(started: asyncio.Event, cancelled: asyncio.Event):
    async def handler(task):
        started.set()
        try:
            await asyncio.Event().wait()        # an agent that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
    return handler


async def test_a_task_whose_agent_never_answers_fails_at_its_deadline_and_its_worker_is_told_to_cancel(
        service, workers, supervisor):
    started, cancelled = asyncio.Event(), asyncio.Event()
    await workers("mute", await _hanging(started, cancelled))
    lifetimes = Lifetimes(service, timeout=0.5, interval=0.05)
    await lifetimes.start(supervisor)
    task, watch = await service.submit("mute", _message())
    last = await _last_event(watch)
    assert last.status_update.status.state == FAILED
    assert "deadline" in _status_text(last)
    async with asyncio.timeout(10):
        await cancelled.wait()
    assert (await service.get(task.id)).status.state == FAILED


async def test_a_capability_timeout_from_the_worker_card_overrides_the_gateway_default(backend, service, supervisor):
    card = {"name": "Slow", "description": "never answers",
            "capabilities": {"extensions": [{"uri": TIMEOUT_EXTENSION, "params": {"timeoutSeconds": 0.3}}]}}
    started, cancelled = asyncio.Event(), asyncio.Event()
    worker = Worker(backend, "slow", await _hanging(started, cancelled), card=card)
    await worker.start()
    registry = Registry(backend)
    await registry.start()
    try:
        lifetimes = Lifetimes(service, timeout_of=registry.timeout_of, capability_names=registry.names,
                              timeout=3600, interval=0.05)
        await lifetimes.start(supervisor)
        task, watch = await service.submit("slow", _message())
        assert (await registry.get("slow")).timeout_seconds == 0.3
        last = await _last_event(watch)
        assert last.status_update.status.state == FAILED
    finally:
        await worker.close()


async def test_a_dead_lettered_envelope_fails_its_task_with_the_reason(backend, service, supervisor):
    crashes = 0

    async def crashing(task):
        nonlocal crashes
        crashes += 1
        raise BackendUnavailableError("lite", "the delivery crashes before the ack")

    worker = Worker(backend, "crashy", crashing, invisible=0.2)
    await worker.start()
    await backend.create_topic(TopicSpec(channels.capability_topic("crashy"), max_attempts=2))
    try:
        lifetimes = Lifetimes(service, timeout=3600, interval=0.05, capability_ttl=0.05)
        await lifetimes.start(supervisor)
        task, watch = await service.submit("crashy", _message())
        last = await _last_event(watch)
        assert last.status_update.status.state == FAILED
        assert "dead-lettered after 2 attempts" in _status_text(last)
        assert crashes == 2
    finally:
        await worker.close()


async def test_two_instances_sweeping_the_same_overdue_task_fail_it_once(backend, workers):
    started, cancelled = asyncio.Event(), asyncio.Event()
    await workers("mute", await _hanging(started, cancelled))
    one, two = TaskService(backend, poll_wait=0.2), TaskService(backend, poll_wait=0.2)
    await one.start()
    await two.start()
    try:
        first, second = Lifetimes(one, grace=60), Lifetimes(two, grace=60)
        await first.open()
        await second.open()
        task, watch = await one.submit("mute", _message(), deadline=time.time() - 1)
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.gather(first.sweep(), second.sweep())
        assert first.failed + second.failed == 1
        last = await _last_event(watch)
        assert last.status_update.status.state == FAILED
        # the follow-up row is there to check the failure landed; the task index holds it
        assert (await two.get(task.id)).status.state == FAILED
    finally:
        await two.close()
        await one.close()


async def test_a_task_waiting_for_input_is_not_failed_at_its_deadline(service, workers):
    async def ask(task):
        await task.require_input("which day?")

    await workers("ask", ask)
    lifetimes = Lifetimes(service, retention=3600)
    await lifetimes.open()
    task, watch = await service.submit("ask", _message(), deadline=time.time() - 1)
    assert (await _last_event(watch)).status_update.status.state == a2a_pb2.TASK_STATE_INPUT_REQUIRED
    await lifetimes.sweep()
    assert lifetimes.failed == 0
    assert (await service.get(task.id)).status.state == a2a_pb2.TASK_STATE_INPUT_REQUIRED
    rows = await (await service.backend.table(LIFETIME_TABLE)).scan()
    assert [key.partition("/")[2] for key, _ in rows] == [task.id]     # moved on to its retention


async def test_a_thousand_ended_tasks_expire_with_every_row_kept_under_their_id(backend, service, workers):
    async def echo(task):
        await task.complete(text=task.text)

    await workers("echo", echo)
    lifetimes = Lifetimes(service, retention=0.001, page=100)
    await lifetimes.open()
    ids = []
    for batch in range(10):
        submitted = await asyncio.gather(*(service.submit("echo", _message(f"task {batch}-{i}"),
                                                          deadline=time.time()) for i in range(100)))
        for task, watch in submitted:
            assert (await _last_event(watch)).status_update.status.state == COMPLETED
            ids.append(task.id)
    others = [await backend.table(name) for name in TASK_ROWS]
    for table in others:
        for task_id in ids:
            await table.put(task_id, b"{}")
    tables = {name: await backend.table(name)
              for name in (channels.TASK_TABLE, ORDER_TABLE, CHUNK_TABLE, LIFETIME_TABLE, *TASK_ROWS)}
    indexed = 0
    for name in (channels.TASK_TABLE, ORDER_TABLE, LIFETIME_TABLE):
        indexed += sum(len(key) + len(value) for key, value in await tables[name].items())
    print(f"index bytes per task before expiry: {indexed / len(ids):.0f}")
    await lifetimes.sweep()
    assert lifetimes.expired == 1000
    for name, table in tables.items():
        assert await table.scan() == [], name
    assert (await service.list(page_size=10)).tasks == []


async def test_an_ended_task_expires_after_its_retention_even_when_its_deadline_is_hours_away(backend, service,
                                                                                               workers):
    async def echo(task):
        await task.complete(text=task.text)

    await workers("echo", echo)
    lifetimes = Lifetimes(service, retention=0.001)
    await lifetimes.open()
    task, watch = await service.submit("echo", _message("soon gone"), deadline=time.time() + 3600)
    assert (await _last_event(watch)).status_update.status.state == COMPLETED
    async with asyncio.timeout(10):
        while await service.get(task.id) is not None:     # the relay indexes the end, then a sweep expires it
            await lifetimes.sweep()
            await asyncio.sleep(0.01)  # sleep-ok: a bounded poll of the sweep's own table
    assert lifetimes.expired == 1
    rows = await (await backend.table(LIFETIME_TABLE)).scan()
    assert [key.partition("/")[2] for key, _ in rows] == [task.id]     # its deadline row, gone when due


async def test_a_sweep_with_nothing_due_reads_one_page_of_rows(backend, service):
    lifetimes = Lifetimes(service, page=50)
    await lifetimes.open()
    later = time.time() + 3600
    for i in range(1000):
        await lifetimes.rows.put(f"{int(later * 1000) + i:015d}/t{i}", b"")
    counting = _CountingTable(lifetimes.rows)
    lifetimes.rows = counting
    assert await lifetimes.sweep() == 0
    assert counting.rows_read <= 50


class _CountingTable:
    """A real table that counts the rows its scans hand out."""

    def __init__(self, table) -> None:
        self._table, self.name, self.rows_read = table, table.name, 0

    async def scan(self, prefix: str = "", *, after: str = "", limit: int = 100):
        rows = await self._table.scan(prefix, after=after, limit=limit)
        self.rows_read += len(rows)
        return rows

    def __getattr__(self, name):
        return getattr(self._table, name)


def test_a_card_declares_its_timeout_in_the_timeout_extension():
    card = {"capabilities": {"extensions": [{"uri": "urn:other"},
                                            {"uri": TIMEOUT_EXTENSION, "params": {"timeoutSeconds": 90}}]}}
    assert card_timeout(card) == 90.0
    assert card_timeout({"name": "no extension"}) is None
    for bad in (0, -1, True, "60", 10 ** 9):
        with pytest.raises(ValueError, match="timeout_seconds"):
            check_timeout(bad)
