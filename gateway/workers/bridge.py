"""Bridges: A2A agents registered by card URL, served on their capability topic.

Every gateway instance runs a `Bridge` for every capability whose source is "a2a" (`Bridges`
watches the registry), so the capability's consumer group spreads tasks over the instances. A
bridge is a `Worker` whose handler forwards the task to the agent and republishes each event on
the task's reply channel under the gateway's task and context ids (`agent_relay.py`). A caller
that blocks (`call_mode.py`) gets one SendMessage to the agent, written by `lean_call.py` for a
JSON-RPC 1.x agent; other callers go through the a2a-sdk client, streaming when the agent's card
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

from adapters.base import Backend, TopicSpec
from adapters.errors import BackendError, ConflictError, InvalidRequestError, NotFoundError

from gateway import metrics, tracing
from gateway.tasks import channels
from gateway.tasks import fold
from gateway.http.outbound import AddressPolicy, RefusedURLError, guarded_client
from gateway.registry.cardfetch import bridgeable_interfaces, fetch_card
from gateway.registry.capabilities import Capability, Registry, derive_name
from gateway.supervisor import Supervisor
from . import call_mode, lean_call
from .credentials import CredentialStore, Credentials, CredentialsUnavailable, parse as parse_credentials
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
REMOTE_TABLE = "bridge-tasks"   # gateway task id -> the agent's task and context ids (multi-turn)
WATCH_LOOP = "bridges.watch"    # the registry watch, under the supervisor (and in /readyz)


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
                 lean_call: bool = True, supervisor: Supervisor | None = None) -> None:
        self.capability = capability
        self.name = capability.name
        self.registry = registry
        self.policy = policy
        self.attempts, self.backoff, self.read_timeout = attempts, backoff, read_timeout
        self.max_response_bytes, self.limit_setting = response_cap(max_response_bytes, backend)
        self.worker = Worker(backend, capability.name, self._forward, concurrency=concurrency, invisible=invisible,
                             supervisor=supervisor)
        self.card = json_format.ParseDict(capability.card, a2a_pb2.AgentCard(), ignore_unknown_fields=True)
        interfaces = bridgeable_interfaces(self.card)
        self.url = interfaces[0].url if interfaces else capability.card_url
        self.lean_url = lean_call_url(self.card) if lean_call else None     # blocking calls skip the SDK client
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
        self.credentials = await CredentialStore(self.worker.backend).get(self.name)
        hooks = {"request": [tracing.inject_request] if tracing.enabled else []}    # the call carries traceparent
        if self.credentials is not None:
            hooks["request"].append(self._authorise)
        self._https = [guarded_client(self.policy, timeout=timeout, limits=limits, event_hooks=hooks,
                                      max_response_bytes=self.max_response_bytes, limit_setting=self.limit_setting)
                       for _ in range(pools)]
        try:
            self._clients = [self._sdk_client(http, streaming=True) for http in self._https]
            self._blocking_clients = [self._sdk_client(http, streaming=False) for http in self._https]
            self._client = self._clients[0]
        except ValueError as e:
            self._broken = f"cannot talk to agent {self.name!r}: {e}"
            await self._set_health("error", self._broken)
        await self.worker.start()

    async def _authorise(self, request: httpx.Request) -> None:
        """Adds the agent's credentials, read from the environment at every call (rotation needs no restart)."""
        request.headers.update(self.credentials.headers(self.name))

    def _sdk_client(self, http: httpx.AsyncClient, *, streaming: bool):
        # streaming=True still sends one SendMessage to an agent whose card does not stream
        bindings = [TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON]
        config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=bindings)
        return ClientFactory(config).create(self.card)

    async def close(self) -> None:
        await self.worker.close()
        for http in self._https:
            await http.aclose()

    # ------------------------------------------------------------ one task

    async def _forward(self, ctx: TaskContext) -> None:
        if self._broken:
            await ctx.fail(self._broken)
            return
        remote = await self._recall(ctx.task_id) if ctx.turn else None
        if ctx.turn and remote is None:
            await ctx.fail(f"agent {self.name!r}: no record of the agent's task to continue")
            return
        relay = Relay(ctx, remote, self._remember)
        deadline = ctx.envelope.deadline
        self._series.call()
        try:
            async with asyncio.timeout(None if deadline is None else max(0.0, deadline - time.time())):
                with tracing.task_span("topicbridge.bridge.call", None, ctx.task_id, self.name, self.registry.backend):
                    await self._call(ctx, relay)
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
        request = a2a_pb2.SendMessageRequest(message=relay.outgoing())
        failures = 0
        while True:
            relay.sent = True
            try:
                self._calls += 1
                blocking = call_mode.caller_blocks(ctx.envelope.metadata)
                if blocking and self.lean_url:
                    http = self._https[self._calls % len(self._https)]
                    await relay.push(await lean_call.send_message(http, self.lean_url, request.message))
                    break
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


class Bridges:
    """Keeps a Bridge running on this instance for every capability registered by card URL.

    Watches the registry (every `interval` seconds, and at once when `sync` is called after a
    registration or removal here), so a registration on any instance reaches every instance.
    """

    def __init__(self, backend: Backend, registry: Registry, policy: AddressPolicy, *, interval: float = 3.0,
                 supervisor: Supervisor | None = None, **bridge_options) -> None:
        """`supervisor` runs the watch loop and every bridge's worker loops; by default its own."""
        self.backend, self.registry, self.policy = backend, registry, policy
        self.interval = interval
        self.supervisor = supervisor or Supervisor()
        self.bridge_options = {**bridge_options, "supervisor": self.supervisor}
        self.running: dict[str, tuple[tuple, Bridge]] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.sync()
        self.supervisor.spawn(WATCH_LOOP, self._watch_loop)

    async def register(self, card_url: str, name: str | None = None, credentials: dict | None = None) -> Capability:
        """Fetch the card at `card_url`, add the capability and bridge it (ConflictError if the name
        is taken). `credentials` (credentials.py) go with the card fetch and every call."""
        if name is not None and not channels.is_capability_name(name):
            raise InvalidRequestError("name", name, "use a-z, 0-9, _ and -, at most 63 characters, "
                                                    "starting with a letter or digit")
        fetched, secret = await self._fetch_with(card_url, credentials, name or "(new)")
        name = name or derive_name(fetched.card.name)
        if await self.registry.get(name) is not None:
            raise ConflictError(f"capability {name!r} is already registered")
        capability = Capability(name, fetched.to_dict(), "a2a", fetched.url)
        await self.backend.create_topic(TopicSpec(capability.topic))
        store = CredentialStore(self.backend)
        if secret is not None:      # before the capability: a bridge starting on any instance finds it
            await store.put(name, secret)
        else:
            await store.delete(name)    # none left over from an earlier registration of the name
        await self.registry.register(capability)
        await self._sync_soon()
        return capability

    async def refresh(self, name: str) -> Capability:
        """Fetch and validate the card of bridged capability `name` again, from the URL it was
        registered with, and bridge the new card (every instance restarts its bridge on the
        change). Name, timeout and creation time stay; health is reset by the successful fetch."""
        capability = await self.registry.get(name)
        if capability is None:
            raise NotFoundError("capability", name)
        if capability.source != "a2a" or not capability.card_url:
            raise InvalidRequestError("name", name, f"is a {capability.source} capability: its workers "
                                                    "announce its card, there is no card URL to fetch")
        secret = await CredentialStore(self.backend).get(name)
        fetched = await fetch_card(capability.card_url, self.policy, headers=self._headers(secret, name))
        capability.card, capability.status, capability.error = fetched.to_dict(), "available", None
        capability.last_seen = time.time()
        await self.registry.put(capability)
        await self._sync_soon()
        return capability

    async def remove(self, name: str) -> Capability:
        capability = await self.registry.get(name)
        if capability is None or not await self.registry.delete(name):
            raise NotFoundError("capability", name)
        with contextlib.suppress(BackendError):     # a leftover row only names an environment variable
            await CredentialStore(self.backend).delete(name)
        await self._sync_soon()
        return capability

    async def _fetch_with(self, card_url: str, credentials: dict | None, name: str):
        """The card, fetched with `credentials` (parsed: an API key's header may come from the card,
        then fetched without them first), and the parsed credentials."""
        if credentials is None:
            return await fetch_card(card_url, self.policy), None
        card = None
        if isinstance(credentials, dict) and credentials.get("type") == "api_key" and "header" not in credentials:
            card = (await fetch_card(card_url, self.policy)).card
        secret = parse_credentials(credentials, card)
        return await fetch_card(card_url, self.policy, headers=self._headers(secret, name)), secret

    @staticmethod
    def _headers(secret: Credentials | None, name: str) -> dict[str, str] | None:
        try:
            return secret.headers(name) if secret is not None else None
        except CredentialsUnavailable as e:
            raise InvalidRequestError("credentials.token_env", secret.token_env, str(e)) from None

    async def _sync_soon(self) -> None:
        try:
            await self.sync()
        except BackendError as e:       # the watch loop will catch up
            log.warning("bridges did not follow the registry at once: %s", e)

    async def close(self) -> None:
        await self.supervisor.stop(WATCH_LOOP)
        async with self._lock:
            for name in list(self.running):
                await self._stop(name)

    async def sync(self) -> None:
        async with self._lock:
            wanted = {c.name: c for c in await self.registry.list() if c.source == "a2a"}
            for name, (signature, bridge) in list(self.running.items()):
                if name not in wanted or _signature(wanted[name]) != signature:
                    await self._stop(name)
                else:       # another instance may have recorded an error this one has to clear
                    bridge.health = wanted[name].status
            for name, capability in wanted.items():
                if name not in self.running:
                    await self._start(capability)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sync()
            except BackendError as e:
                log.warning("watching the registry failed: %s", e)

    async def _start(self, capability: Capability) -> None:
        bridge = Bridge(self.backend, self.registry, capability, self.policy, **self.bridge_options)
        try:
            await bridge.start()
        except BackendError as e:
            log.warning("bridge to %s did not start (%s); retrying on the next sync", capability.name, e)
            with contextlib.suppress(Exception):
                await bridge.close()
            return
        self.running[capability.name] = (_signature(capability), bridge)
        log.info("bridging %s to %s", capability.name, bridge.url)

    async def _stop(self, name: str) -> None:
        _, bridge = self.running.pop(name)
        with contextlib.suppress(Exception):
            await bridge.close()
        log.info("stopped bridging %s", name)


def _signature(capability: Capability) -> tuple:
    return capability.card_url, capability.created, json.dumps(capability.card, sort_keys=True)
