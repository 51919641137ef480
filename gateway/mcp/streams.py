"""2025-11-25 tools/call streams that resume on any gateway instance, from the task's reply channel.

The reply channel already is a durable, ordered log of a task's events, so a stream's SSE event
ids name positions in it instead of entries in one instance's memory:

    tb1.<ordinal>.<base64url JSON [turn, request id, progress token]>.<task id>

`ordinal` counts the distinct events of the task's turn `turn` in channel order (positions
(turn, attempt, seq), as envelope.ReplyEvent orders them); the call's progress notification
number `ordinal` is that event. The other fields rebuild the stream elsewhere: the progress
token its notifications carry and the JSON-RPC id of the final response. Who may resume is
checked against the task's `mcp-tasks` record (tasks.py: same owner), written before the first
such id goes out.

- `report_progress` sends a call's progress with the task under `_meta` (STREAM_META), from
  which `ChannelEvents.store_event` derives the id (the SDK asks the store for every id);
- `ChannelResume` answers a GET carrying such a `Last-Event-ID`, on any instance and before the
  SDK's session check (the session lives on the instance that created it): a priming event,
  a progress notification per later event of the turn, then the call's result.

The SDK's priming event, minted before the task exists, keeps a memory id (events.py): it
resumes on the same instance only. Calls without a progress token have no positions to name.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass

import anyio
import mcp_types as types
from a2a.types import a2a_pb2
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.errors import BackendError

from gateway.tasks import channels, fold, positions
from gateway.tasks.envelope import EnvelopeError, ReplyEvent
from .auth import OWNER_KEY
from .events import RecentEvents
from .results import tool_result
from .tasks import rejection, still_running

log = logging.getLogger("topicbridge.mcp")

PREFIX = "tb1."
STREAM_META = "io.topicbridge/stream"
RETRY_MS = 1000
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"),
        (b"connection", b"keep-alive")]


@dataclass(frozen=True)
class Cursor:
    task_id: str
    turn: int
    ordinal: int
    request_id: object          # int or str, as the client sent it
    token: object

    def event_id(self, ordinal: int | None = None) -> str:
        packed = json.dumps([self.turn, self.request_id, self.token], separators=(",", ":")).encode()
        encoded = base64.urlsafe_b64encode(packed).rstrip(b"=").decode()
        return f"{PREFIX}{self.ordinal if ordinal is None else ordinal}.{encoded}.{self.task_id}"


def parse(event_id: str) -> Cursor | None:
    """The cursor an event id names, or None when it is not one of ours or is malformed."""
    if not event_id.startswith(PREFIX) or len(event_id) > 1024:
        return None
    ordinal, _, rest = event_id[len(PREFIX):].partition(".")
    packed, _, task_id = rest.partition(".")
    try:
        turn, request_id, token = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except (ValueError, TypeError):
        return None
    if not (ordinal.isdigit() and task_id and isinstance(turn, int) and isinstance(request_id, (int, str))
            and isinstance(token, (int, str))):
        return None
    return Cursor(task_id, turn, int(ordinal), request_id, token)


class ChannelEvents(RecentEvents):
    """The SDK's event store: progress of a task gets its reply-channel cursor as id; everything
    else (priming events, responses, other streams) the memory ids of RecentEvents."""

    async def store_event(self, stream_id: str, message) -> str:
        cursor = _cursor_of(message)
        if cursor is None:
            return await super().store_event(stream_id, message)
        return await self.keep(stream_id, message, cursor.event_id())


def _cursor_of(message) -> Cursor | None:
    root = getattr(message, "root", message)
    if getattr(root, "method", None) != "notifications/progress" or not isinstance(root.params, dict):
        return None
    stream = (root.params.get("_meta") or {}).get(STREAM_META)
    if not isinstance(stream, dict):
        return None
    return Cursor(stream.get("taskId", ""), stream.get("turn", 0), int(root.params.get("progress", 0)),
                  stream.get("requestId"), root.params.get("progressToken"))


def progress_reporter(ctx, task_id: str, turn: int):
    """A `Call.wait` progress callback whose notifications carry the task's stream cursor, or None
    when the call has no resumable positions (no progress token, or not a 2025-11-25 HTTP stream)."""
    token = (ctx.meta or {}).get("progress_token") if hasattr(ctx, "meta") else None
    if token is None or ctx.request_id is None:
        return None
    stream = {"taskId": task_id, "turn": turn, "requestId": ctx.request_id}

    async def report(progress: float, total: float | None, message: str | None) -> None:
        params = types.ProgressNotificationParams.model_validate(
            {"progressToken": token, "progress": progress, "message": message, "_meta": {STREAM_META: stream}},
            by_name=False)
        await ctx.session.send_notification(types.ProgressNotification(params=params),
                                            related_request_id=ctx.request_id)
    return report


class ChannelResume:
    """ASGI app in front of the SDK's: GETs whose Last-Event-ID is a cursor are answered here."""

    def __init__(self, app: ASGIApp, surface) -> None:
        self.app = app
        self.surface = surface

    def __call__(self, scope: Scope, receive: Receive, send: Send):
        # Not a coroutine function: a POST is the app's own coroutine, with no frame of this layer
        # in the chain every resumption of that request's task walks.
        if scope["type"] != "http" or scope["method"] != "GET":
            return self.app(scope, receive, send)
        return self._get(scope, receive, send)

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        last = Headers(scope=scope).get("last-event-id")
        if last is None or not last.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        cursor = parse(last)
        record = None
        try:
            if cursor is not None:
                owner = (scope.get("state") or {}).get(OWNER_KEY)
                record = await self.surface.records.get(cursor.task_id, owner)
        except BackendError as e:
            await _plain(send, 503, f"Service unavailable: the backend did not answer ({e})")
            return
        if record is None:       # malformed, or no such task for this caller: as for an unknown session
            await _plain(send, 404, "Not Found: unknown Last-Event-ID")
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        await _event(send, {"id": last, "retry": str(RETRY_MS), "data": ""})
        try:
            async for ordinal, message in self._replay(cursor, record.capability):
                await _event(send, {"event": "message", **({"id": cursor.event_id(ordinal)} if ordinal else {}),
                                    "data": json.dumps(message, separators=(",", ":"))})
        except BackendError as e:
            # The stream ends without the result; the client reconnects after `retry` with the last
            # id it got, which still names the same position in the channel.
            log.warning("resuming the MCP stream of task %s failed: %s", cursor.task_id, e)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _replay(self, cursor: Cursor, capability: str):
        """(ordinal, progress notification) for each event after the cursor, then (0, response)."""
        surface = self.surface
        task = await surface.tasks.get(cursor.task_id)
        if task is None:
            return
        seen = positions.position_of(task)
        ordinal = 0
        # A note's text is the status as of its event, not as the task stands now: the stored task
        # may already hold later events (its end, without a message) when the resume starts.
        shown = a2a_pb2.TaskStatus()
        with anyio.move_on_after(surface.call_wait):
            async for event in channel_events(surface.tasks.backend, cursor.task_id, cursor.turn,
                                              surface.tasks.poll_wait):
                ordinal += 1
                if seen is None or event.position > seen:
                    fold.apply(task, event.event)
                shown = _status_after(event.event, shown)
                if ordinal > cursor.ordinal:
                    params = {"progressToken": cursor.token, "progress": float(ordinal)}
                    if text := "\n".join(p.text for p in shown.message.parts if p.text):
                        params["message"] = text
                    params["_meta"] = {STREAM_META: {"taskId": cursor.task_id, "turn": cursor.turn,
                                                     "requestId": cursor.request_id}}
                    yield ordinal, {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
                if event.final:
                    break
        yield 0, _response(cursor.request_id, task, surface._output_schema(capability), surface.call_wait)


def _status_after(event: a2a_pb2.StreamResponse, status: a2a_pb2.TaskStatus) -> a2a_pb2.TaskStatus:
    kind = event.WhichOneof("payload")
    if kind == "status_update":
        return event.status_update.status
    if kind == "task":
        return event.task.status
    return status


def _response(request_id, task: a2a_pb2.Task, output_schema: dict | None, waited: float) -> dict:
    if not fold.is_final(task.status.state):
        return {"jsonrpc": "2.0", "id": request_id, "result": still_running(task, waited)}
    if task.status.state == a2a_pb2.TASK_STATE_REJECTED:
        error = rejection(task).error
        return {"jsonrpc": "2.0", "id": request_id,
                "error": {"code": error.code, "message": error.message, "data": error.data}}
    return {"jsonrpc": "2.0", "id": request_id, "result": tool_result(task, output_schema)}


async def channel_events(backend, task_id: str, turn: int, poll_wait: float):
    """The distinct events of one turn of a task, in channel order, read with a consumer of its
    own (as reattach.Reader does), until the turn's final event."""
    group = f"mcp-resume-{os.urandom(4).hex()}"
    consumer = await backend.lite_consumer(channels.REPLY_TOPIC, group, group)
    last = (turn, -1, -1)
    try:
        await consumer.subscribe([channels.reply_channel(task_id)])
        while True:
            deliveries = await consumer.poll(max_messages=64, wait=poll_wait)
            for event in sorted(filter(None, map(_decode, deliveries)), key=lambda e: e.position):
                if event.turn != turn or event.position <= last:
                    continue
                last = event.position
                yield event
                if event.final:
                    return
    finally:
        await consumer.close()


def _decode(delivery) -> ReplyEvent | None:
    try:
        return ReplyEvent.decode(delivery.body)
    except EnvelopeError as e:
        log.warning("MCP stream resume skips malformed reply event %s: %s", delivery.message_id, e.reason)
        return None


async def _event(send: Send, fields: dict) -> None:
    text = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _plain(send: Send, status: int, message: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
