"""A caller that blocks sees only the end of a bridged task, so the bridge relays an agent's
finished task as one Task event (one reply event to publish, deliver and fold) instead of one per
artifact plus the status; the gateway's task must come out the same as through those events.
Real agents (a2a-sdk servers on port 0), real engine."""

import pytest
from a2a.types import a2a_pb2
from google.protobuf import json_format

from gateway.workers import call_mode

from .remote_agents import running_agent
from .test_bridge import events_of, gw, user_message  # noqa: F401  (gw: the fixture)


def _without_ids(doc):
    if isinstance(doc, dict):
        return {k: _without_ids(v) for k, v in doc.items()
                if k not in ("id", "contextId", "taskId", "messageId", "timestamp", "artifactId", "metadata")}
    if isinstance(doc, list):
        return [_without_ids(v) for v in doc]
    return doc


async def _finished(gw, capability: str, text: str, metadata: dict | None):
    task, watch = await gw.tasks.submit(capability, user_message(text), metadata=metadata)
    events = await events_of(watch)
    return task, events, await gw.tasks.get(task.id)


@pytest.mark.parametrize("text", ["the quarterly report", "fail"])
async def test_a_blocking_callers_finished_task_comes_as_one_event_and_folds_as_the_events_would(gw, text):
    async with running_agent(streaming=True) as agent:
        capability = (await gw.bridges.register(agent.base_url)).name
        task, events, whole = await _finished(gw, capability, text, call_mode.mark_blocking(None))
        _, _, by_events = await _finished(gw, capability, text, None)      # streamed: one event per part
    assert [e.WhichOneof("payload") for e in events] == ["task"]
    assert events[0].task.id == task.id and events[0].task.context_id == task.context_id
    assert all(m.task_id == task.id and m.context_id == task.context_id for m in whole.history)
    assert whole.history[0].message_id == task.history[0].message_id      # the caller's message first
    own = whole.metadata.fields["topicbridge"].struct_value.fields     # the gateway's bookkeeping stays
    assert own["capability"].string_value == capability
    assert _without_ids(json_format.MessageToDict(whole)) == _without_ids(json_format.MessageToDict(by_events))


async def test_a_task_that_stops_for_input_is_not_sent_whole(gw):
    """An interrupted task's ids must be remembered before its state is relayed: no snapshot."""
    async with running_agent(streaming=True) as agent:
        capability = (await gw.bridges.register(agent.base_url)).name
        _, events, asked = await _finished(gw, capability, "ask", call_mode.mark_blocking(None))
    assert "task" not in [e.WhichOneof("payload") for e in events]
    assert asked.status.state == a2a_pb2.TASK_STATE_INPUT_REQUIRED


async def test_a_streaming_caller_still_gets_one_event_per_part(gw):
    async with running_agent(streaming=True) as agent:
        capability = (await gw.bridges.register(agent.base_url)).name
        _, events, _ = await _finished(gw, capability, "the memo", None)
    kinds = [e.WhichOneof("payload") for e in events]
    assert "task" not in kinds and "artifact_update" in kinds and kinds[-1] == "status_update"
