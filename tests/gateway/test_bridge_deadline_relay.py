"""The bridge's deadline timer keeps asyncio.timeout's rule, and a whole remote task made the
gateway's in place (Relay._take_over, the lean blocking call) equals the copy (_snapshot)."""

import asyncio
import time

import pytest
from a2a.types import a2a_pb2
from google.protobuf import struct_pb2

from gateway.workers.agent_relay import Relay
from gateway.workers.bridge import _Deadline


async def _under_deadline(seconds: float | None, work) -> None:
    loop = asyncio.get_running_loop()
    deadline = _Deadline(loop, None if seconds is None else time.time() + seconds)
    try:
        await work()
    except asyncio.CancelledError:
        deadline.end(timed_out=True)
        raise
    finally:
        deadline.end()


async def test_a_passed_deadline_ends_the_call_as_timeout_error():
    never = asyncio.Event()
    with pytest.raises(TimeoutError):
        await _under_deadline(0.0, never.wait)
    assert asyncio.current_task().cancelling() == 0


async def test_a_cancel_from_elsewhere_stays_a_cancel():
    never = asyncio.Event()
    task = asyncio.get_running_loop().create_task(_under_deadline(60.0, never.wait))
    await asyncio.sleep(0)      # sleep-ok: one loop turn, so the task waits under its deadline
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_deadline_and_a_call_that_ends_in_time_leave_no_timer_behind():
    async def quick():
        return None
    await _under_deadline(None, quick)
    await _under_deadline(60.0, quick)
    assert asyncio.current_task().cancelling() == 0


class _Ctx:
    task_id, context_id, turn, history, finished = "gw-task", "gw-ctx", 0, [], False
    message = a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, context_id="gw-ctx",
                              parts=[a2a_pb2.Part(text="hello")])

    def __init__(self):
        self.emitted = []

    async def emit(self, event):
        self.emitted.append(event)


def _remote() -> a2a_pb2.Task:
    task = a2a_pb2.Task(id="r-task", context_id="r-ctx")
    task.history.add(message_id="m1", role=a2a_pb2.ROLE_USER, task_id="r-task", parts=[a2a_pb2.Part(text="hello")])
    task.history.add(message_id="a1", role=a2a_pb2.ROLE_AGENT, task_id="r-task", parts=[a2a_pb2.Part(text="thinking")])
    task.history.add(message_id="a1", role=a2a_pb2.ROLE_AGENT, task_id="r-task", parts=[a2a_pb2.Part(text="again")])
    task.artifacts.add(artifact_id="x", name="echo", parts=[a2a_pb2.Part(text="echo: hello")])
    task.status.state = a2a_pb2.TASK_STATE_COMPLETED
    task.status.message.CopyFrom(a2a_pb2.Message(message_id="a2", role=a2a_pb2.ROLE_AGENT, task_id="r-task",
                                                 context_id="r-ctx", parts=[a2a_pb2.Part(text="done")]))
    task.metadata.CopyFrom(struct_pb2.Struct(fields={"agent": struct_pb2.Value(string_value="own")}))
    return task


async def test_a_whole_task_taken_over_in_place_equals_its_snapshot():
    copied = Relay(_Ctx(), announced=False, whole=True)._snapshot(_remote())
    ctx = _Ctx()
    event = a2a_pb2.StreamResponse(task=_remote())
    await Relay(ctx, announced=False, whole=True).push(event)
    assert ctx.emitted == [event] and ctx.emitted[0].task == copied
    assert [m.message_id for m in copied.history] == ["m1", "a1"] and not copied.HasField("metadata")
    assert {m.task_id for m in copied.history} == {"gw-task"} and copied.status.message.context_id == "gw-ctx"
