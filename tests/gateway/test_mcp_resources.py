"""A task's artifacts as MCP resources (gateway/mcp/resources.py), seen by the official client in
both eras: a result inlines small artifacts and links large ones with a resource_link, which
resources/read answers; resources/list shows the caller's own tasks' artifacts only; the
template is advertised; malformed and foreign URIs get the protocol's errors."""

from __future__ import annotations

import base64

import httpx2
import pytest
from a2a.types import a2a_pb2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gateway.mcp.resources import artifact_uri
from tests.gateway.mcp_support import gateway_serving, settings

ERAS = ["auto", "legacy"]
BLOB = bytes(range(256)) * 40          # 10 KiB of binary, over the limit below
ALICE, BOB = "token-of-alice-0123456789", "token-of-bob-0123456789"


async def report(agents, task):
    await task.artifact("a short summary", name="summary", artifact_id="summary")
    await task.artifact(parts=[a2a_pb2.Part(raw=BLOB, media_type="application/x-report")], name="report.bin",
                        artifact_id="report")
    await task.status(a2a_pb2.TASK_STATE_COMPLETED)


@pytest.fixture
async def gw():
    async with gateway_serving(settings(mcp_inline_artifact_bytes=4096, mcp_bearer_tokens=[ALICE, BOB]),
                               report=report) as running:
        yield running


def client(gw, token: str, mode: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(gw.url, http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ERAS)
async def test_a_large_artifact_is_a_resource_link_that_resources_read_answers(gw, mode):
    async with client(gw, ALICE, mode) as mcp:
        result = await mcp.call_tool("report", {"message": "go"})
        kinds = [c.type for c in result.content]
        assert kinds == ["text", "resource_link"] and result.content[0].text == "a short summary"
        link = result.content[1]
        task_id = result.meta["io.topicbridge/task"]["taskId"]
        assert str(link.uri) == artifact_uri(task_id, "report") and link.mime_type == "application/x-report"
        assert link.size == len(BLOB) and link.name == "report.bin"
        read = await mcp.read_resource(str(link.uri))
    assert len(read.contents) == 1 and base64.b64decode(read.contents[0].blob) == BLOB
    assert read.contents[0].mime_type == "application/x-report"


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_list_shows_only_the_callers_artifacts_and_the_template(gw, mode):
    async with client(gw, ALICE, mode) as alice:
        task_id = (await alice.call_tool("report", {"message": "go"})).meta["io.topicbridge/task"]["taskId"]
        listed = {str(r.uri) for r in (await alice.list_resources()).resources}
        templates = (await alice.list_resource_templates()).resource_templates
    assert artifact_uri(task_id, "report") in listed and artifact_uri(task_id, "summary") in listed
    assert [t.uri_template for t in templates] == ["topicbridge://tasks/{task_id}/artifacts/{artifact_id}"]
    async with client(gw, BOB, mode) as bob:
        assert not any(task_id in str(r.uri) for r in (await bob.list_resources()).resources)


@pytest.mark.parametrize("mode, not_found", [("auto", -32602), ("legacy", -32002)])
async def test_foreign_unknown_and_malformed_uris_get_the_protocols_errors(gw, mode, not_found):
    async with client(gw, ALICE, mode) as alice:
        task_id = (await alice.call_tool("report", {"message": "go"})).meta["io.topicbridge/task"]["taskId"]
    async with client(gw, BOB, mode) as bob:
        for uri in (artifact_uri(task_id, "report"), artifact_uri(task_id, "no-such-artifact"),
                    artifact_uri("no-such-task", "report")):
            with pytest.raises(MCPError) as refused:
                await bob.read_resource(uri)
            assert refused.value.error.code == not_found, uri
        for uri in ("topicbridge://tasks/x", "file:///etc/passwd", "topicbridge://tasks/a/parts/0"):
            with pytest.raises(MCPError) as refused:
                await bob.read_resource(uri)
            assert refused.value.error.code == -32602, uri
