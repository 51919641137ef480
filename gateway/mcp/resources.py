"""A task's artifacts as MCP resources.

    topicbridge://tasks/<task id>/artifacts/<artifact id>      (both ids percent-encoded)

A tool result inlines an artifact up to `gateway.mcp_inline_artifact_bytes` and links a larger
one with a `resource_link` content item (results.py); `resources/read` of the link answers its
parts (text as text, bytes as a base64 blob, data as JSON text). `resources/list` shows the
artifacts of the caller's recent MCP tasks and `resources/templates/list` the URI template.

Who may read: the caller the task's `mcp-tasks` record names (tasks.py: the same binding as MCP
tasks), written before a link goes out. A URI that is not of this shape is invalid params; one
naming no task or artifact of the caller is "resource not found": -32002 on 2025-11-25,
invalid params on 2026-07-28 (which retired -32002).
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, unquote

import mcp_types as types
from a2a.types import a2a_pb2
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from .tasks import is_modern, reported_errors

SCHEME = "topicbridge://tasks/"
TEMPLATE = SCHEME + "{task_id}/artifacts/{artifact_id}"
RESOURCE_NOT_FOUND = -32002          # 2025-11-25
LIST_SCAN = 1000                     # mcp-tasks records read for one resources/list
LIST_TASKS = 50                      # the caller's most recent tasks listed
# 2026-07-28 results say how long they may be cached: one caller's, not at all (a task moves on)
PRIVATE_UNCACHED = {"resultType": "complete", "cacheScope": "private", "ttlMs": 0}


def artifact_uri(task_id: str, artifact_id: str) -> str:
    return f"{SCHEME}{quote(task_id, safe='')}/artifacts/{quote(artifact_id, safe='')}"


def parse_uri(uri: str) -> tuple[str, str] | None:
    """(task id, artifact id) of an artifact URI, or None."""
    if not uri.startswith(SCHEME) or len(uri) > 2048:
        return None
    parts = uri[len(SCHEME):].split("/")
    if len(parts) != 3 or parts[1] != "artifacts" or not parts[0] or not parts[2]:
        return None
    return unquote(parts[0]), unquote(parts[2])


def artifact_size(artifact: a2a_pb2.Artifact) -> int:
    return sum(len(p.text.encode()) + len(p.raw) + (p.ByteSize() if p.HasField("data") else 0)
               for p in artifact.parts)


def link(task_id: str, artifact: a2a_pb2.Artifact) -> dict:
    """The resource_link content item (or resources/list entry) of an artifact."""
    entry = {"type": "resource_link", "uri": artifact_uri(task_id, artifact.artifact_id),
             "name": artifact.name or artifact.artifact_id, "size": artifact_size(artifact)}
    if artifact.description:
        entry["description"] = artifact.description
    media = _media_type(artifact)
    if media:
        entry["mimeType"] = media
    return entry


def _media_type(artifact: a2a_pb2.Artifact) -> str:
    types_ = {p.media_type for p in artifact.parts if p.media_type}
    return types_.pop() if len(types_) == 1 else ""


class ArtifactResources:
    """resources/list, resources/templates/list and resources/read over the task index."""

    def __init__(self, tasks, records, owner) -> None:
        self.tasks = tasks
        self.records = records
        self.owner = owner          # ctx -> owner digest (or None)

    def register(self, server) -> None:
        server.add_request_handler("resources/list", types.PaginatedRequestParams, self.list)
        server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, self.templates)
        server.add_request_handler("resources/read", types.ReadResourceRequestParams, self.read)

    async def templates(self, ctx, params) -> dict:
        return {**PRIVATE_UNCACHED, "resourceTemplates": [{
            "uriTemplate": TEMPLATE, "name": "task-artifact", "title": "A task's artifact",
            "description": "An artifact of a task you started through a tool call (linked from its result)."}]}

    async def list(self, ctx, params) -> dict:
        owner = self.owner(ctx)
        with reported_errors():
            rows = await self.records.recent(owner, scan=LIST_SCAN, limit=LIST_TASKS)
            resources = []
            for task_id, _ in rows:
                task = await self.tasks.get(task_id)
                for artifact in task.artifacts if task is not None else ():
                    entry = link(task_id, artifact)
                    entry.pop("type")
                    resources.append(entry)
        return {**PRIVATE_UNCACHED, "resources": resources}

    async def read(self, ctx, params: types.ReadResourceRequestParams) -> dict:
        uri = str(params.uri)
        found = parse_uri(uri)
        if found is None:
            raise MCPError(INVALID_PARAMS, f"Resource not found: {uri[:200]!r} is not a task artifact URI "
                                           f"({TEMPLATE})", data={"uri": uri[:2048]})
        task_id, artifact_id = found
        with reported_errors():
            record = await self.records.get(task_id, self.owner(ctx))
            task = await self.tasks.get(task_id) if record is not None else None
        artifact = next((a for a in task.artifacts if a.artifact_id == artifact_id), None) if task else None
        if artifact is None:
            code = INVALID_PARAMS if is_modern(ctx.protocol_version) else RESOURCE_NOT_FOUND
            raise MCPError(code, "Resource not found", data={"uri": uri[:2048]})
        return {"contents": [c for p in artifact.parts if (c := _contents(uri, p)) is not None],
                **PRIVATE_UNCACHED}


def _contents(uri: str, part: a2a_pb2.Part) -> dict | None:
    kind = part.WhichOneof("content")
    media = part.media_type
    if kind == "text":
        return {"uri": uri, "mimeType": media or "text/plain", "text": part.text}
    if kind == "raw":
        return {"uri": uri, "mimeType": media or "application/octet-stream",
                "blob": base64.b64encode(part.raw).decode()}
    if kind == "data":
        from .results import json_value     # results.py links artifacts with this module's `link`
        return {"uri": uri, "mimeType": "application/json", "text": json.dumps(json_value(part.data))}
    if kind == "url":
        return {"uri": uri, "mimeType": "text/uri-list", "text": part.url}
    return None


def linked(result: dict) -> bool:
    """Whether a tool result links an artifact (its task then needs a record, for the reader)."""
    return any(c.get("type") == "resource_link" and str(c.get("uri", "")).startswith(SCHEME)
               for c in result.get("content", ()))

