"""Bridges: A2A agents registered by card URL, served on their capability topic.

Every gateway instance runs a `Bridge` for every capability whose source is "a2a" (`Bridges`,
bridges.py, watches the registry), so the capability's consumer group spreads tasks over the instances. A
bridge is a `Worker` whose handler forwards the task to the agent and republishes each event on
the task's reply channel under the gateway's task and context ids (`agent_relay.py`). A caller
that blocks (`call_mode.py`) gets one SendMessage to the agent, written by `lean_call.py` for a
JSON-RPC 1.x agent and posted on the gateway's own HTTP/1.1 client (gateway/http/http1.py), with
no WORKING published before it (the caller waits for the end): only a call still running after
WORKING_AFTER publishes WORKING, for whoever looks the task up meanwhile; other callers go through the a2a-sdk client, streaming when the agent's card
says it streams. The agent's credentials, if it was registered with some (`credentials.py`), go
with every request.

Every call goes through the gateway's outbound policy (`gateway.http.outbound`) and reads at most
`max_response_bytes` of one answer (one event of a stream), or less when the backend's largest
message is smaller (`response_cap`): an agent answering more fails the task with a reason naming
the limit, and nothing of the answer is kept.

The message goes out with the gateway's context id and no task id (the agent names its task).
Cancelling the gateway's task cancels the remote task. While nothing has come back from the
agent, transport failures (refused connection, timeout, 5xx) are retried with exponential
backoff; after the last attempt the task fails with the reason and the registry record shows
status "error" until a call gets through again. Errors the agent answers with fail the task
without a retry. A stream that breaks after the agent took the task is followed up by polling
GetTask, within the same bounds.

Multi-turn. The agent names its own task, and may name its own context, on the first turn.
When its task stops for input (INPUT_REQUIRED, AUTH_REQUIRED), the bridge writes the agent's ids
to the backend table "bridge-tasks" (gateway task id -> {"task_id", "context_id"} as JSON), and
only then relays that state, so whichever instance takes the continuation finds them. A
continuation envelope (turn > 0) goes to the agent as a message carrying those ids; the
agent's messages of earlier turns (the envelope's history) are not relayed again. The row goes
when a continuation turn ends the task; a task left waiting for input keeps its (small) row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.types import a2a_pb2
from a2a.utils.constants import TransportProtocol
from google.protobuf import json_format

from adapters.base import Backend
from adapters.errors import BackendError

from gateway.observability import metrics, tracing
from gateway.tasks import fold
from gateway.http.http1 import OriginClient
from gateway.http.outbound import AddressPolicy, RefusedURLError, guarded_client
from gateway.registry.cardfetch import bridgeable_interfaces
from gateway.registry.capabilities import Capability, Registry
from gateway.supervisor import Supervisor
from . import call_mode, lean_call
from .credentials import CredentialStore, Credentials, CredentialsAuth, CredentialsUnavailable, send_with
from .lean_call import lean_url as lean_call_url
from .agent_relay import Relay
from .worker import ReplyLost, TaskContext, Worker

log = logging.getLogger("topicbridge.bridge")

ATTEMPTS = 3
BACKOFF = 0.2           # seconds before the second attempt; doubles each time
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 300.0    # longest silence tolerated from an agent mid-call
CANCEL_TIMEOUT = 5.0
POOL_CONNECTIONS = 8    # connections per httpx pool (see Bridge.start)
EVENT_HEADROOM = 64 * 1024      # a reply event's bytes around the agent's answer (ids, seq, trace)
WORKING_AFTER = 0.5     # seconds of a lean blocking call before WORKING is published after all
REMOTE_TABLE = "bridge-tasks"   # gateway task id -> the agent's task and context ids (multi-turn)



class _Deadline:
    """The task's deadline over the bridge's call: asyncio.timeout's rule (the handler's task is
    cancelled when it passes, and that cancellation, and only that one, ends as TimeoutError) as
    one timer, without the async context manager around it (~8x a timer's CPU on Python 3.11:
    two coroutine frames, the current task and running loop looked up, a reschedule). No timer
    without a deadline. `end()` once the call ended; `end(timed_out=True)` raises TimeoutError if
    a CancelledError being raised is the deadline's own."""

    __slots__ = ("_task", "_cancelling", "_timer", "_expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        self._task = asyncio.current_task(loop)
        self._cancelling = self._task.cancelling()
        self._expired = False
        self._timer = None if deadline is None else \
            loop.call_at(loop.time() + max(0.0, deadline - time.time()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._expired = True
        self._task.cancel()

    def end(self, *, timed_out: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._expired:
            self._expired = False       # once: `end()` follows `end(timed_out=True)` in a finally
            if self._task.uncancel() <= self._cancelling and timed_out:
                raise TimeoutError


def response_cap(setting: int | None, backend: Backend) -> tuple[int | None, str]:
    """The most bytes read of one answer, and what sets it: gateway.max_agent_response_bytes, or
    the backend's largest message less EVENT_HEADROOM when that is smaller, so an answer that could
    not be published as a reply event is refused while it is read, not after it was kept whole."""
    largest = getattr(backend, "max_message_bytes", None)
    if largest is None or (setting is not None and setting <= largest - EVENT_HEADROOM):
        return setting, "gateway.max_agent_response_bytes"
    return max(1024, largest - EVENT_HEADROOM), \
        f"the backend's max_message_bytes {largest} less {EVENT_HEADROOM} for the reply event's envelope"


class AgentUnreachable(Exception):
    def __init__(self, reason: str, attempts: int) -> None:
        self.reason, self.attempts = reason, attempts
        super().__init__(f"{reason} (gave up after {attempts} attempt{'s' * (attempts != 1)})")


class AgentRefused(Exception):
    """The agent answered, with an error: retrying will not help. `broken` when the answer was an
    HTTP error rather than an A2A one: the agent's endpoint itself is wrong (moved, needs auth)."""

    def __init__(self, error: Exception) -> None:
        self.broken = isinstance(error.__cause__, httpx.HTTPStatusError)
        super().__init__(_describe(error))


def transient(error: BaseException) -> bool:
    """Whether `error` says the agent could not be reached (worth a retry), not that it refused."""
    if isinstance(error, A2AClientTimeoutError | httpx.TransportError):
        return True
    cause = error.__cause__
    if isinstance(error, A2AClientError) and isinstance(cause, httpx.TransportError | httpx.TimeoutException):
        return True
    if isinstance(error, A2AClientError) and isinstance(cause, httpx.HTTPStatusError):
        return cause.response.status_code >= 500 or cause.response.status_code == 429
    return False


def _raise_unavailable(error: BaseException) -> None:
    """A missing credential (raised in an httpx request hook, maybe wrapped by the SDK) is no agent error."""
    while error is not None:
        if isinstance(error, CredentialsUnavailable):
            raise error
        error = error.__cause__ or error.__context__


def _describe(error: BaseException) -> str:
    cause = error.__cause__
    detail = f"{type(cause).__name__}: {cause}" if isinstance(cause, httpx.HTTPError) else str(error)
    return f"{type(error).__name__}: {detail or type(error).__name__}"


class Bridge:
    """Serves one A2A agent's capability from this gateway instance. `invisible` is the worker's:
    a call in progress is extended every half of it, so it only bounds how soon another instance
    takes over the calls of a bridge whose gateway was killed."""

    def __init__(self, backend: Backend, registry: Registry, capability: Capability, policy: AddressPolicy, *,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF, read_timeout: float = READ_TIMEOUT,
                 concurrency: int = 64, invisible: float = 10.0, max_response_bytes: int | None = None,
                 lean_call: bool = True, lean_http: str = "http1", supervisor: Supervisor | None = None) -> None:
        self.capability = capability
        self.name = capability.name
        self.registry = registry
        self.policy = policy
        self.attempts, self.backoff, self.read_timeout = attempts, backoff, read_timeout
        self.max_response_bytes, self.limit_setting = response_cap(max_response_bytes, backend)
        self.card = json_format.ParseDict(capability.card, a2a_pb2.AgentCard(), ignore_unknown_fields=True)
        interfaces = bridgeable_interfaces(self.card)
        self.url = interfaces[0].url if interfaces else capability.card_url
        self.lean_url = lean_call_url(self.card) if lean_call else None     # blocking calls skip the SDK client
        self.lean_http = lean_http          # what posts them: "http1" (gateway/http/http1.py) or "httpx"
        self._origin: OriginClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.worker = Worker(backend, capability.name, self._forward, concurrency=concurrency, invisible=invisible,
                             supervisor=supervisor, announce=self._announces)
        self.health = capability.status
        self._https: list[httpx.AsyncClient] = []
        self._clients: list = []              # one a2a-sdk client per connection pool
        self._blocking_clients: list = []     # the same pools, one plain SendMessage per call (call_mode.py)
        self._client = None                   # the first, for the odd follow-up call
        self._calls = 0
        self._series = metrics.BridgeSeries(self.name)
        self._broken: str | None = None       # why no client could be built for this card
        self._remote_table = None             # REMOTE_TABLE, opened on first use
        self.credentials: Credentials | None = None     # read from the credential table at start

    async def start(self) -> None:
        # Calls spread over a few small connection pools rather than one big one: httpcore walks
        # every pooled connection (a readability check each) for every request it places, so
        # one pool of 64 connections spent half the gateway's CPU at 64 concurrent calls
        # (bench.gateway_e2e). Each pool keeps all its connections alive.
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=self.read_timeout)
        limits = httpx.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=POOL_CONNECTIONS)
        pools = max(1, -(-self.worker.concurrency // POOL_CONNECTIONS))
        self.credentials = await CredentialStore(self.worker.backend, self.policy).get(self.name)
        hooks = {"request": [tracing.inject_request] if tracing.enabled else []}    # the call carries traceparent
        auth = CredentialsAuth(self.credentials, self.name) if self.credentials is not None else None
        self._https = [guarded_client(self.policy, timeout=timeout, limits=limits, event_hooks=hooks, auth=auth,
                                      max_response_bytes=self.max_response_bytes, limit_setting=self.limit_setting)
                       for _ in range(pools)]
        if self.lean_url and self.lean_http == "http1":
            self._origin = OriginClient(self.policy, self.lean_url, connect_timeout=CONNECT_TIMEOUT,
                                        read_timeout=self.read_timeout, max_response_bytes=self.max_response_bytes,
                                        limit_setting=self.limit_setting, max_connections=self.worker.concurrency)
        try:
            self._clients = [self._sdk_client(http, streaming=True) for http in self._https]
            self._blocking_clients = [self._sdk_client(http, streaming=False) for http in self._https]
            self._client = self._clients[0]
        except ValueError as e:
            self._broken = f"cannot talk to agent {self.name!r}: {e}"
            await self._set_health("error", self._broken)
        await self.worker.start()

    def _announces(self, envelope) -> bool:
        """Whether the worker publishes WORKING before the call: not for a lean blocking call."""
        return not (self.lean_url and call_mode.caller_blocks(envelope.metadata))

    async def _lean_send(self, ctx: TaskContext, relay: Relay, post, message: a2a_pb2.Message) -> a2a_pb2.StreamResponse:
        """The lean call; a call still running after WORKING_AFTER publishes WORKING then, so a
        task looked up meanwhile (GetTask, ListTasks) shows the agent working on it. Cancelled
        before the answer is relayed: WORKING never follows the agent's events."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()     # once: each lookup is a getpid() on Python 3.11
        late = self._loop.call_later(WORKING_AFTER, relay.announce) if not relay.announced else None
        try:
            return await lean_call.send_message(post, message)
        finally:
            if late is not None:
                late.cancel()

    async def _lean_post(self, body: bytes) -> bytes:
        headers = {**lean_call.HEADERS, **tracing.carrier()}
        if self.credentials is None:
            return await self._origin.post(body, headers)
        # read at every call (rotation needs no restart); a 401 gets new ones once (an OAuth token)
        return await send_with(self.credentials, self.name, lambda secret: self._origin.post(body, headers | secret))

    def _sdk_client(self, http: httpx.AsyncClient, *, streaming: bool):
        # streaming=True still sends one SendMessage to an agent whose card does not stream
        bindings = [TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON]
        config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=bindings)
        return ClientFactory(config).create(self.card)

    async def close(self) -> None:
        await self.worker.close()
        for http in self._https:
            await http.aclose()
        if self._origin is not None:
            await self._origin.aclose()

    # ------------------------------------------------------------ one task

    async def _forward(self, ctx: TaskContext) -> None:
        if self._broken:
            await ctx.fail(self._broken)
            return
        remote = await self._recall(ctx.task_id) if ctx.turn else None
        if ctx.turn and remote is None:
            await ctx.fail(f"agent {self.name!r}: no record of the agent's task to continue")
            return
        relay = Relay(ctx, remote, self._remember, announced=self._announces(ctx.envelope),
                      whole=call_mode.caller_blocks(ctx.envelope.metadata))
        if self._loop is None:
            self._loop = asyncio.get_running_loop()     # once: each lookup is a getpid() on Python 3.11
        self._series.call()
        try:
            deadline = _Deadline(self._loop, ctx.envelope.deadline)
            try:
                with tracing.task_span("topicbridge.bridge.call", None, ctx.task_id, self.name, self.registry.backend):
                    await self._call(ctx, relay)
            except asyncio.CancelledError:
                deadline.end(timed_out=True)
                raise
            finally:
                deadline.end()
            await self._forget(ctx, relay)
            return
        except asyncio.CancelledError:
            if ctx.cancelled.is_set():          # the caller cancelled, not a worker shutting down
                await self._cancel_remote(ctx, relay)
            raise
        except TimeoutError:
            await self._cancel_remote(ctx, relay, report=False)
            reason, agent_broken = f"agent {self.name!r} did not finish before the task's deadline", False
        except (AgentUnreachable, AgentRefused, RefusedURLError, CredentialsUnavailable) as e:
            reason, agent_broken = self._explain(e)
        self._series.error()
        if agent_broken:
            await self._set_health("error", reason)
        if not ctx.finished:
            await ctx.fail(reason)
        await self._forget(ctx, relay)

    def _explain(self, error: Exception) -> tuple[str, bool]:
        """The task's failure reason, and whether it says the agent itself is broken."""
        if isinstance(error, AgentUnreachable):
            return f"agent {self.name!r} unreachable at {self.url}: {error}", True
        if isinstance(error, CredentialsUnavailable):
            return f"cannot call agent {self.name!r}: {error}", True
        if isinstance(error, RefusedURLError):
            return f"agent {self.name!r} at {self.url}: address refused: {error.reason}", True
        return f"agent {self.name!r} answered with an error: {error}", error.broken

    async def _call(self, ctx: TaskContext, relay: Relay) -> None:
        message = relay.outgoing()
        blocking = relay.whole      # call_mode.caller_blocks(ctx.envelope.metadata), read once by _forward
        request = None              # the SDK client's request; a lean call sends the message alone
        failures = 0
        while True:
            relay.sent = True
            try:
                self._calls += 1
                if blocking and self.lean_url:
                    post = self._lean_post if self._origin is not None else \
                        lean_call.httpx_post(self._https[self._calls % len(self._https)], self.lean_url)
                    await relay.push(await self._lean_send(ctx, relay, post, message))
                    break
                if request is None:
                    request = a2a_pb2.SendMessageRequest(message=message)
                clients = self._blocking_clients if blocking else self._clients
                async for event in clients[self._calls % len(clients)].send_message(request):
                    await relay.push(event)
                break
            except (BackendError, RefusedURLError, ReplyLost):
                raise
            except Exception as e:
                _raise_unavailable(e)
                if not transient(e):
                    raise AgentRefused(e) from e
                if relay.started:
                    break                       # the agent has the task: follow it up below
                failures += 1
                if failures >= self.attempts:
                    raise AgentUnreachable(_describe(e), failures) from e
                await asyncio.sleep(self.backoff * 2 ** (failures - 1))
        await self._set_health("available", None)
        if relay.remote_id and not relay.final:
            await self._follow(relay)

    async def _follow(self, relay: Relay) -> None:
        """Poll GetTask until the remote task settles (a stream broke, or a blocking call came back early)."""
        failures, delay = 0, self.backoff
        while not relay.final:
            await asyncio.sleep(delay)
            try:
                task = await self._client.get_task(a2a_pb2.GetTaskRequest(id=relay.remote_id))
            except (BackendError, RefusedURLError, ReplyLost):
                raise
            except Exception as e:
                if not transient(e):
                    raise AgentRefused(e) from e
                failures += 1
                if failures >= self.attempts:
                    raise AgentUnreachable(f"lost contact with the agent: {_describe(e)}", failures) from e
            else:
                failures = 0
                await relay.push(a2a_pb2.StreamResponse(task=task))
            delay = min(delay * 2, 2.0)

    async def _cancel_remote(self, ctx: TaskContext, relay: Relay, *, report: bool = True) -> None:
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                remote_id = relay.remote_id or (relay.sent and await self._find_remote(ctx, relay))
                if not remote_id:
                    log.info("task %s: cancelled before agent %s named its task", ctx.task_id, self.name)
                    return
                task = await self._client.cancel_task(a2a_pb2.CancelTaskRequest(id=remote_id))
            if report:
                await relay.push(a2a_pb2.StreamResponse(task=task))
        except BackendError:
            raise
        except Exception as e:
            log.info("task %s: agent %s did not cancel its task: %s", ctx.task_id, self.name, _describe(e))

    async def _find_remote(self, ctx: TaskContext, relay: Relay) -> str:
        """The agent's task for our message, when a blocking call was cut short before it answered."""
        listing = await self._client.list_tasks(a2a_pb2.ListTasksRequest(context_id=ctx.context_id))
        sent = relay.outgoing().message_id
        for task in listing.tasks:
            if not fold.is_final(task.status.state) and any(m.message_id == sent for m in task.history):
                return task.id
        return ""

    # ------------------------------------------------------------ the agent's ids (multi-turn)

    async def _remote_ids(self):
        if self._remote_table is None:
            self._remote_table = await self.worker.backend.table(REMOTE_TABLE)
        return self._remote_table

    async def _remember(self, relay: Relay) -> None:
        """Before the task stops for input: the agent's ids, for the continuation on any instance."""
        row = {"task_id": relay.remote_id, "context_id": relay.remote_context or relay.ctx.context_id}
        await (await self._remote_ids()).put(relay.ctx.task_id, json.dumps(row).encode())

    async def _recall(self, task_id: str) -> dict | None:
        raw = await (await self._remote_ids()).get(task_id)
        return json.loads(raw) if raw else None

    async def _forget(self, ctx: TaskContext, relay: Relay) -> None:
        """A continuation turn that did not stop for input again ended the task: drop its row."""
        if ctx.turn and not relay.interrupted:
            with contextlib.suppress(BackendError):
                await (await self._remote_ids()).delete(ctx.task_id)

    async def _set_health(self, status: str, error: str | None) -> None:
        if status == self.health == "available":      # the common case costs no registry round trip
            return
        self.health = status
        try:
            await self.registry.set_health(self.name, status, error)
        except BackendError as e:
            log.warning("could not record the health of %s: %s", self.name, e)
