"""gRPC plumbing: one channel to the proxy, and client sessions (settings, telemetry, heartbeats).

Every call carries the metadata the proxy insists on (`x-mq-client-id`, `x-mq-language`) plus
what the reference clients send. A failed call becomes a port error (`protocol.rpc_error`):
the proxy being away is `BackendUnavailableError`, and the channel reconnects by itself.

A consumer `Session` is what the proxy calls a client: its settings arrive over the
bidirectional Telemetry stream, which must stay open (the proxy keys the client's channel on it,
and for a lite consumer the stream's end removes every lite subscription). The session
heartbeats every `heartbeat_every` seconds and, when the stream breaks (proxy restart, network),
reopens it with backoff and calls `on_reconnect` so the owner can restore its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import uuid
from typing import Awaitable, Callable

import grpc

from .. import errors
from . import names
from .credentials import Credentials
from .protocol import BACKEND, CLIENT_VERSION, OK, pb, rpc, rpc_error, rpc_grpc, status_error

log = logging.getLogger(__name__)

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # A proxy that restarts should be found again within a second, not after the default 120 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
]


def new_client_id(prefix: str = "tb") -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class Connection:
    """The channel to one proxy and what every request needs."""

    def __init__(self, endpoint: str, namespace: str = "", rpc_timeout: float = 10.0, *,
                 credentials: Credentials | None = None,
                 channel_credentials: grpc.ChannelCredentials | None = None) -> None:
        self.endpoint = endpoint
        self.namespace = namespace
        self.rpc_timeout = rpc_timeout
        self.credentials = credentials
        self.channel_credentials = channel_credentials
        self.channel: grpc.aio.Channel | None = None
        self.stub: rpc_grpc.MessagingServiceStub | None = None

    def open(self) -> None:
        if self.channel_credentials is None:
            self.channel = grpc.aio.insecure_channel(self.endpoint, options=_CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.secure_channel(self.endpoint, self.channel_credentials, options=_CHANNEL_OPTIONS)
        self.stub = rpc_grpc.MessagingServiceStub(self.channel)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    def metadata(self, client_id: str) -> tuple[tuple[str, str], ...]:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        headers = (("x-mq-language", "PYTHON"), ("x-mq-protocol", "GRPC_V2"),
                   ("x-mq-client-version", CLIENT_VERSION), ("x-mq-date-time", now),
                   ("x-mq-request-id", str(uuid.uuid4())), ("x-mq-client-id", client_id),
                   ("x-mq-namespace", self.namespace))
        if self.credentials is None:
            return headers
        return (*headers, ("authorization", self.credentials.authorization(now)))

    def resource(self, name: str) -> pb.Resource:
        # The 5.5 proxy reads neither `resource_namespace` nor the namespace header: the name
        # carries the namespace, as RocketMQ 4 clients wrote it ("NS%topic", "%DLQ%NS%group").
        return pb.Resource(name=names.with_namespace(self.namespace, name))

    def endpoints(self) -> pb.Endpoints:
        host, port = self.endpoint.rsplit(":", 1)
        scheme = pb.IPv4 if host.replace(".", "").isdigit() else pb.DOMAIN_NAME
        return pb.Endpoints(scheme=scheme, addresses=[pb.Address(host=host, port=int(port))])

    async def call(self, method: str, request, client_id: str, what: str, *, timeout: float | None = None):
        """A unary call; transport failures become port errors. The caller checks `status`."""
        if self.stub is None:
            raise errors.BackendUnavailableError(BACKEND, "not started: call start() first")
        try:
            return await getattr(self.stub, method)(request, metadata=self.metadata(client_id),
                                                    timeout=timeout or self.rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, what) from exc
        except grpc.aio.UsageError as exc:   # the channel was closed under us
            raise errors.BackendUnavailableError(BACKEND, f"{what}: {exc}") from exc

    async def query_route(self, topic: str, client_id: str):
        """`QueryRoute`: the topic's queues, or None when the topic does not exist."""
        reply = await self.call("QueryRoute", rpc.QueryRouteRequest(topic=self.resource(topic),
                                                                    endpoints=self.endpoints()),
                                client_id, f"route of {topic!r}")
        if reply.status.code == pb.TOPIC_NOT_FOUND:
            return None
        if reply.status.code != OK:
            raise status_error(reply.status, f"route of {topic!r}", value=topic)
        return reply.message_queues


class Session:
    """One consumer client of the proxy: `client_type` in `group`, subscribed to `topic`."""

    def __init__(self, conn: Connection, client_id: str, client_type: int, group: str, topic: str, *,
                 heartbeat_every: float = 10.0,
                 on_reconnect: Callable[[], Awaitable[None]] | None = None) -> None:
        self.conn = conn
        self.client_id = client_id
        self.client_type = client_type
        self.group = group
        self.topic = topic
        self.heartbeat_every = heartbeat_every
        self.on_reconnect = on_reconnect
        self.settings: pb.Settings | None = None
        self.reconnects = 0
        self._call = None
        self._reader: asyncio.Task | None = None
        self._first_reply: asyncio.Future | None = None
        self.connected = asyncio.Event()   # settings registered with the proxy
        self._stream_done: asyncio.Event = asyncio.Event()
        self._maintenance: asyncio.Task | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._open_stream()
            await self.heartbeat()
        except BaseException:
            self._closed = True
            self._hang_up()
            raise
        self.connected.set()
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        """Leave: tell the proxy (which drops the client and its lite subscriptions), then hang up."""
        live = not self._closed
        await self._stop()
        if live:
            request = rpc.NotifyClientTerminationRequest(group=self.conn.resource(self.group))
            with contextlib.suppress(errors.BackendError):
                await self.conn.call("NotifyClientTermination", request, self.client_id, "leave", timeout=3.0)
        self._hang_up()

    async def abandon(self) -> None:
        """Vanish like a crashed process: no goodbye, no more heartbeats, the stream just ends."""
        await self._stop()
        self._hang_up()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- requests -------------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        request = rpc.HeartbeatRequest(group=self.conn.resource(self.group), client_type=self.client_type)
        reply = await self.conn.call("Heartbeat", request, self.client_id, "heartbeat")
        if reply.status.code == pb.UNRECOGNIZED_CLIENT_TYPE and self.connected.is_set():
            self.lost()   # "cannot find client settings for this client"
        if reply.status.code != OK:
            raise status_error(reply.status, f"heartbeat of group {self.group!r}", value=self.group)

    def max_attempts(self, default: int = 17) -> int:
        attempts = self.settings.backoff_policy.max_attempts if self.settings is not None else 0
        return attempts or default

    # -- telemetry ------------------------------------------------------------------------------

    def _client_settings(self) -> pb.Settings:
        settings = pb.Settings(client_type=self.client_type, access_point=self.conn.endpoints())
        settings.request_timeout.seconds = int(self.conn.rpc_timeout)
        settings.user_agent.CopyFrom(pb.UA(language=pb.PYTHON, version=CLIENT_VERSION, platform="linux",
                                           hostname=socket.gethostname()))
        settings.subscription.group.CopyFrom(self.conn.resource(self.group))
        settings.subscription.subscriptions.add(topic=self.conn.resource(self.topic),
                                                expression=pb.FilterExpression(type=pb.TAG, expression="*"))
        return settings

    async def _open_stream(self) -> None:
        loop = asyncio.get_running_loop()
        self._first_reply = first_reply = loop.create_future()
        # Mark a failure as seen even when nobody waits for it any more (a timed-out open).
        first_reply.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._stream_done = asyncio.Event()
        self._call = self.conn.stub.Telemetry(metadata=self.conn.metadata(self.client_id))
        self._reader = loop.create_task(self._read(self._call, first_reply, self._stream_done))
        try:
            await self._call.write(rpc.TelemetryCommand(settings=self._client_settings()))
            reply = await asyncio.wait_for(asyncio.shield(first_reply), self.conn.rpc_timeout)
        except BaseException as exc:
            self._hang_up()
            if isinstance(exc, TimeoutError):
                raise errors.BackendUnavailableError(
                    BACKEND, f"no settings from {self.conn.endpoint} within {self.conn.rpc_timeout} s") from None
            if isinstance(exc, grpc.aio.AioRpcError):
                raise rpc_error(exc, f"telemetry of group {self.group!r}") from exc
            if isinstance(exc, (grpc.aio.UsageError, grpc.aio.AbortError)):
                raise errors.BackendUnavailableError(BACKEND, f"telemetry of group {self.group!r}: {exc!r}") from exc
            raise
        if reply.status.code != OK:
            self._hang_up()
            raise status_error(reply.status, f"settings of group {self.group!r}", value=self.group)
        self.settings = reply.settings

    async def _read(self, call, first_reply: asyncio.Future, done: asyncio.Event) -> None:
        try:
            async for command in call:
                if not first_reply.done():
                    first_reply.set_result(command)
                elif command.HasField("settings"):
                    self.settings = command.settings
                elif command.HasField("notify_unsubscribe_lite_command"):
                    log.info("proxy unsubscribed %s from lite topic %s", self.client_id,
                             command.notify_unsubscribe_lite_command.lite_topic)
        except grpc.aio.AioRpcError as exc:
            if not first_reply.done():
                first_reply.set_exception(rpc_error(exc, f"telemetry of group {self.group!r}"))
        finally:
            if not first_reply.done():
                first_reply.set_exception(errors.BackendUnavailableError(BACKEND, "telemetry stream ended"))
            self.connected.clear()
            done.set()

    def lost(self) -> None:
        """The proxy has forgotten this client (it restarted, or expired it): register again."""
        self.connected.clear()
        self._hang_up()

    def _hang_up(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()

    async def _stop(self) -> None:
        self._closed = True
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance

    async def _maintain(self) -> None:
        """Heartbeat; reopen the telemetry stream when it ends, then let the owner restore state."""
        backoff = 0.1
        while True:
            try:
                await asyncio.wait_for(self._stream_done.wait(), self.heartbeat_every)
            except TimeoutError:
                with contextlib.suppress(errors.BackendError):
                    await self.heartbeat()
                continue
            try:
                await self._open_stream()
                await self.heartbeat()
                if self.on_reconnect is not None:
                    await self.on_reconnect()
                self.connected.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # BackendError, or a channel closed under us
                log.debug("reconnecting %s failed: %s", self.client_id, exc)
                self._hang_up()
                self._stream_done.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self.reconnects += 1
            backoff = 0.1
