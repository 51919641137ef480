"""How capabilities become tools and folded tasks become MCP results (no server needed)."""

import base64

import pytest
from a2a.types import a2a_pb2
from google.protobuf import json_format

from gateway.mcp.tasks import TaskRecord, legacy_task, mcp_status, modern_task
from gateway.mcp.results import tool_result
from gateway.mcp.tools import DEFAULT_INPUT_SCHEMA, TOOL_EXTENSION_URI, Catalog, to_message
from gateway.registry.capabilities import Capability


def task_with(state, *parts, status_text=None) -> a2a_pb2.Task:
    task = a2a_pb2.Task(id="t1", context_id="c1")
    task.status.state = state
    if status_text:
        task.status.message.parts.append(a2a_pb2.Part(text=status_text))
    if parts:
        task.artifacts.append(a2a_pb2.Artifact(artifact_id="a", parts=list(parts)))
    return task


def data_part(value) -> a2a_pb2.Part:
    part = a2a_pb2.Part()
    json_format.ParseDict(value, part.data)
    return part


def test_parts_become_the_matching_content_blocks():
    png = b"\x89PNG..."
    task = task_with(a2a_pb2.TASK_STATE_COMPLETED,
                     a2a_pb2.Part(text="hello"),
                     a2a_pb2.Part(raw=png, media_type="image/png"),
                     a2a_pb2.Part(raw=b"RIFF", media_type="audio/wav"),
                     a2a_pb2.Part(raw=b"%PDF", media_type="application/pdf", filename="report.pdf"),
                     a2a_pb2.Part(text="{}", filename="test://doc", media_type="application/json"),
                     a2a_pb2.Part(url="https://example.com/a.txt", filename="a.txt", media_type="text/plain"),
                     data_part({"k": 1}))
    content = tool_result(task, None)["content"]
    assert content[0] == {"type": "text", "text": "hello"}
    assert content[1] == {"type": "image", "data": base64.b64encode(png).decode(), "mimeType": "image/png"}
    assert content[2]["type"] == "audio"
    assert content[3]["resource"]["uri"] == "topicbridge://tasks/t1/parts/3" and "blob" in content[3]["resource"]
    assert content[4] == {"type": "resource", "resource": {"uri": "test://doc", "mimeType": "application/json",
                                                           "text": "{}"}}
    assert content[5] == {"type": "resource_link", "uri": "https://example.com/a.txt", "name": "a.txt",
                          "mimeType": "text/plain"}
    assert content[6] == {"type": "text", "text": '{"k": 1}'}


def test_structured_content_must_match_the_output_schema():
    schema = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}
    good = tool_result(task_with(a2a_pb2.TASK_STATE_COMPLETED, data_part({"sum": 3})), schema)
    assert good["structuredContent"] == {"sum": 3} and "isError" not in good
    from_text = tool_result(task_with(a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.Part(text='{"sum": 4}')), schema)
    assert from_text["structuredContent"] == {"sum": 4}
    bad = tool_result(task_with(a2a_pb2.TASK_STATE_COMPLETED, data_part({"total": 3})), schema)
    assert bad["isError"] and "output schema" in bad["content"][0]["text"]


def test_without_artifacts_the_answer_is_the_status_message():
    result = tool_result(task_with(a2a_pb2.TASK_STATE_COMPLETED, status_text="all done"), None)
    assert result["content"] == [{"type": "text", "text": "all done"}]


@pytest.mark.parametrize("state, modern, legacy", [
    (a2a_pb2.TASK_STATE_SUBMITTED, "working", "working"),
    (a2a_pb2.TASK_STATE_WORKING, "working", "working"),
    (a2a_pb2.TASK_STATE_COMPLETED, "completed", "completed"),
    (a2a_pb2.TASK_STATE_INPUT_REQUIRED, "completed", "completed"),
    (a2a_pb2.TASK_STATE_FAILED, "completed", "failed"),
    (a2a_pb2.TASK_STATE_REJECTED, "failed", "failed"),
    (a2a_pb2.TASK_STATE_CANCELED, "cancelled", "cancelled"),
])
def test_task_states_map_onto_each_eras_statuses(state, modern, legacy):
    task, record = task_with(state, status_text="why"), TaskRecord("cap", 1_800_000_000.0)
    assert mcp_status(task, record, modern=True) == modern
    assert mcp_status(task, record, modern=False) == legacy


def test_the_two_eras_task_shapes():
    task, record = task_with(a2a_pb2.TASK_STATE_FAILED, status_text="boom"), TaskRecord("cap", 1_800_000_000.0)
    modern = modern_task(task, record, None, detailed=True)
    assert modern["status"] == "completed" and modern["result"]["isError"] is True
    assert modern["createdAt"] == "2027-01-15T08:00:00.000Z" and isinstance(modern["ttlMs"], int)
    assert set(legacy_task(task, record)) == {"taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt",
                                              "ttl", "pollInterval"}
    rejected = modern_task(task_with(a2a_pb2.TASK_STATE_REJECTED, status_text="no"), record, None, detailed=True)
    assert rejected["status"] == "failed" and "result" not in rejected and rejected["error"]["code"] == -32603
    cancelled = TaskRecord("cap", 0, cancelled=True)     # a 2025-11-25 tasks/cancel sticks
    assert mcp_status(task_with(a2a_pb2.TASK_STATE_WORKING), cancelled, modern=False) == "cancelled"
    assert mcp_status(task_with(a2a_pb2.TASK_STATE_WORKING), cancelled, modern=True) == "working"


def test_a_capability_becomes_a_tool_from_its_card():
    card = {"name": "Summariser", "description": "Summarises documents.",
            "skills": [{"id": "s", "name": "Summarise", "description": "Short summaries", "examples": ["sum this"]}],
            "capabilities": {"extensions": [{"uri": TOOL_EXTENSION_URI, "params": {"taskSupport": "required"}}]}}
    catalog = Catalog([Capability("summariser", card), Capability("down", {"name": "Down"}, status="unavailable",
                                                                  error="no live workers")])
    tool = catalog.get("summariser")
    assert tool.wire["title"] == "Summariser" and tool.input_schema == DEFAULT_INPUT_SCHEMA
    assert tool.wire["description"] == 'Summarises documents.\nSkills:\n- Summarise: Short summaries (e.g. "sum this")'
    assert tool.task_support == "required"
    assert "Currently unavailable: no live workers" in catalog.get("down").wire["description"]
    tools, cursor = catalog.page(None, legacy=True)
    assert cursor is None and {t["name"]: t for t in tools}["summariser"]["execution"] == {"taskSupport": "required"}
    assert "execution" not in {t["name"]: t for t in catalog.page(None, legacy=False)[0]}["summariser"]


def test_odd_cards_and_schemas_do_not_break_the_catalog():
    catalog = Catalog([Capability("odd", {"name": 5, "skills": "x", "capabilities": []}),
                       Capability("bad-schema", {"name": "B"}, input_schema={"type": "object", "properties": 5},
                                  output_schema={"type": "array"})])
    assert catalog.get("odd").wire["description"] == "The odd agent."
    assert catalog.get("bad-schema").input_schema == DEFAULT_INPUT_SCHEMA and catalog.get("bad-schema").output_schema is None
    assert catalog.get("find_capabilities") and catalog.get("get_task_result")


def test_arguments_become_the_task_message():
    catalog = Catalog([Capability("plain", {"name": "P"}),
                       Capability("typed", {"name": "T"}, input_schema={"type": "object", "properties": {}})])
    plain = to_message(catalog.get("plain"), {"message": "hi", "data": {"n": 1}, "context_id": "ctx-9"})
    assert [p.text for p in plain.parts][:1] == ["hi"] and json_format.MessageToDict(plain.parts[1].data) == {"n": 1}
    assert plain.context_id == "ctx-9" and plain.role == a2a_pb2.ROLE_USER
    typed = to_message(catalog.get("typed"), {"a": 2})
    assert len(typed.parts) == 1 and json_format.MessageToDict(typed.parts[0].data) == {"a": 2}
