"""`RocketMQBackend`: the Backend port on Apache RocketMQ 5.5+, through its gRPC proxy.

How the port maps (details in the modules named):

* capability topic -> NORMAL topic; group consumer -> SIMPLE_CONSUMER client of the group
  (`consumers.py`: long-poll receive, ack, ChangeInvisibleDuration, dead letters `%DLQ%<group>`);
* lite parent -> LITE topic; lite topic -> RocketMQ lite topic; lite consumer ->
  LITE_PUSH_CONSUMER client whose lite subscription set is the InterestSet (`consumers.py`);
* table -> a changelog lite topic replayed into memory (`table.py`);
* names -> `names.py`; the gRPC session, telemetry and heartbeats -> `client.py`.

Topics and groups: the proxy cannot create LITE topics nor groups bound to one, so creation goes
through `admin` (`admin.py`): a name-server address ("host:port", the built-in remoting client)
or any object with the `Admin` methods. Without it, every topic and group must exist already
(adapters/rocketmq/README.md lists them, with the mqadmin commands); `create_topic` then only
checks that the topic is there with the right type, and tables are unavailable. The proxy caches "no such topic/group" for 20 s or more, so nothing asks the proxy about a
topic or group before the admin path has created it.
"""

from __future__ import annotations

import asyncio
import math
import uuid

from .. import errors
from ..base import Health, Message, TopicSpec
from . import credentials, names
from .admin import PERM_READ_WRITE, Admin, RemotingAdmin
from .client import Connection, Session, new_client_id
from .consumers import RocketMQGroupConsumer, RocketMQLiteConsumer
from .protocol import BACKEND, OK, is_system_property, pb, rpc, status_error
from .receiving import EMPTY_MARK, KEY_PROPERTY, seconds
from .table import RocketMQTable, Tables

MAX_HEADERS = 64
SEND_RETRY_FIRST = 0.02
SEND_RETRY_LONGEST = 1.0
LITE_EVENT_QUEUE = "lite.sub.client.max.event.cnt"
MIN_LITE_EVENT_QUEUE = 10          # the attribute's lower bound
MAX_LITE_EVENT_QUEUE = 100_000     # the broker's hard cap of one client's event queue


class RocketMQBackend:
    """Apache RocketMQ behind its gRPC proxy at `endpoint` ("host:port").

    `namespace`: prefix of every topic and group ("NS%name"). `admin`: name server "host:port"
    or an `Admin`; `cluster`: the cluster topics and groups are created in. `queues`: queues per
    broker of a new topic. `lite_subscription_quota`: lite topics one client may subscribe, set as
    `lite.sub.client.quota` on the lite groups the admin path manages (without an admin path each
    group's own setting applies; the proxy reports it either way). `lite_event_queue`: the
    broker's per-client queue of readable-lite-topic events (`lite.sub.client.max.event.cnt`),
    by default the subscription quota, so that every subscribed topic can be ready at once.
    `lite_idle_seconds`: default
    idle time of lite topics (RocketMQ keeps an idle one at least 15 min). `lease_seconds`: how
    long a lite client's unacked message survives the client's death (at least 10 s).
    `tables_topic`: LITE parent of the tables; `table_refresh_seconds`: age at which a table
    entry is re-published (keep it well under the broker's `fileReservedTime`, 72 h).
    `send_retry_seconds`: how long a publish retries the broker's flow control (TOO_MANY_REQUESTS);
    `route_wait_seconds`: how long a publish waits for the proxy to route a topic that the admin
    path says exists (just created, or its absence still cached by the proxy).
    """

    name = BACKEND

    def __init__(self, endpoint: str = "127.0.0.1:8081", namespace: str = "", *,
                 admin: str | Admin | None = None, cluster: str = "DefaultCluster", queues: int = 8,
                 lite_subscription_quota: int = 2000, lite_event_queue: int | None = None,
                 lite_idle_seconds: float = 600.0,
                 max_message_bytes: int = 4 << 20, lease_seconds: float = 10.0, heartbeat_every: float = 10.0,
                 full_sync_every: float = 30.0, tables_topic: str = "tb-tables",
                 table_refresh_seconds: float = 86_400.0, rpc_timeout: float = 10.0,
                 connect_timeout: float = 10.0, send_retry_seconds: float = 5.0,
                 route_wait_seconds: float = 60.0, access_key: str | None = None,
                 secret_key: str | None = None, secret_key_env: str | None = None,
                 tls: bool = False, tls_ca: str | None = None) -> None:
        if not isinstance(endpoint, str) or ":" not in endpoint:
            raise errors.InvalidRequestError("endpoint", endpoint, 'must be "host:port" of the gRPC proxy')
        if namespace and names._NAME.fullmatch(namespace) is None:
            raise errors.InvalidRequestError("namespace", namespace, "must match [A-Za-z0-9_-]+")
        self.endpoint = endpoint
        self.namespace = namespace
        self.cluster = cluster
        self.queues = queues
        self.lite_subscription_quota = lite_subscription_quota
        default_events = lite_subscription_quota if lite_subscription_quota > 0 else MAX_LITE_EVENT_QUEUE
        self.lite_event_queue = max(MIN_LITE_EVENT_QUEUE, lite_event_queue or default_events)
        self.lite_idle_seconds = lite_idle_seconds
        self.max_message_bytes = max_message_bytes
        self.lease_seconds = lease_seconds
        self.heartbeat_every = heartbeat_every
        self.full_sync_every = full_sync_every
        self.tables_topic = names.topic(tables_topic)
        self.table_refresh_seconds = table_refresh_seconds
        self.connect_timeout = connect_timeout
        self.send_retry_seconds = send_retry_seconds
        self.route_wait_seconds = route_wait_seconds
        self.credentials = credentials.from_settings(access_key, secret_key, secret_key_env)
        self.admin: Admin | None = (RemotingAdmin(admin, cluster, timeout=rpc_timeout, credentials=self.credentials)
                                    if isinstance(admin, str) else admin)
        self._conn = Connection(endpoint, namespace, rpc_timeout, credentials=self.credentials,
                                channel_credentials=credentials.channel_credentials(tls, tls_ca))
        self._client_id = new_client_id("tb-producer")
        self._specs: dict[str, TopicSpec] = {}
        self._kinds: dict[str, str] = {}
        self._configs: dict[str, dict] = {}     # topic configs read through the admin path
        self._groups: set[tuple] = set()
        self._consumers: set = set()
        self._tables: Tables | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the channel and wait up to `connect_timeout` for the proxy."""
        self._conn.open()
        try:
            await asyncio.wait_for(self._conn.channel.channel_ready(), self.connect_timeout)
        except TimeoutError:
            await self._conn.close()
            raise errors.BackendUnavailableError(
                BACKEND, f"no RocketMQ proxy answered at {self.endpoint} within {self.connect_timeout} s") from None
        await self._check_credentials()

    async def _check_credentials(self) -> None:
        """Fail at start, not at the first publish, when the proxy refuses who we are: a wrong
        key pair is a CredentialsError, which the gateway's start does not retry."""
        reply = await self._conn.call("Heartbeat", rpc.HeartbeatRequest(client_type=pb.PRODUCER),
                                      self._client_id, "start")
        if reply.status.code in (pb.UNAUTHORIZED, pb.FORBIDDEN):
            await self._conn.close()
            who = self.credentials.access_key if self.credentials else None
            raise status_error(reply.status, f"proxy {self.endpoint}", access_key=who)

    async def close(self) -> None:
        """Close this backend's consumers (their clients leave the proxy), tables, admin, channel."""
        if self._tables is not None:
            await self._tables.close()
        consumers = list(self._consumers)
        await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
        if self.admin is not None:
            await self.admin.close()
        await self._conn.close()

    async def health(self) -> Health:
        detail = {"endpoint": self.endpoint, "namespace": self.namespace, "consumers": len(self._consumers)}
        try:   # any answer will do; a route query would make the proxy cache a missing topic
            await self._conn.call("Heartbeat", rpc.HeartbeatRequest(client_type=pb.PRODUCER), self._client_id,
                                  "health", timeout=min(3.0, self._conn.rpc_timeout))
        except errors.BackendError as exc:
            return Health(False, self.name, {**detail, "error": str(exc)})
        return Health(True, self.name, detail)

    # -- topics ---------------------------------------------------------------------------------

    async def create_topic(self, spec: TopicSpec) -> None:
        if not isinstance(spec, TopicSpec):
            raise errors.InvalidRequestError("spec", spec, "must be a TopicSpec")
        name = names.topic(spec.name)
        idle = spec.lite_idle_seconds if spec.lite_idle_seconds is not None else self.lite_idle_seconds
        _check_idle(idle)
        if spec.max_attempts is not None and (not isinstance(spec.max_attempts, int)
                                              or isinstance(spec.max_attempts, bool) or spec.max_attempts < 1):
            raise errors.InvalidRequestError("max_attempts", spec.max_attempts, "must be a positive integer")
        kind = "LITE" if spec.lite else "NORMAL"
        existing = await self._kind(name)
        if existing is not None and existing != kind:
            raise errors.ConflictError(f"topic {name!r} exists as a {existing} topic, not {kind}")
        if self._specs.get(name) == spec:
            return
        if self.admin is not None:
            attributes = {"lite.topic.expiration": str(max(1, math.ceil(idle / 60)))} if spec.lite else {}
            config = self._configs.get(name) or {}
            current = config.get("attributes") or {}
            if not config or bool(config.get("order")) != spec.ordered or any(
                    current.get(k) != v for k, v in attributes.items()):
                # Existing queues and permissions stay as they are: shrinking a topic strands messages.
                await self.admin.create_topic(
                    self._full(name), message_type=kind, order=spec.ordered,
                    queues=config.get("writeQueueNums", self.queues), read_queues=config.get("readQueueNums"),
                    perm=config.get("perm", PERM_READ_WRITE), attributes=attributes)
        elif existing is None:
            raise _missing("topic", name, _topic_command(self._full(name), kind, idle if spec.lite else None))
        self._specs[name] = spec
        self._kinds[name] = kind

    async def ensure_tables_parent(self, parent: str) -> None:
        if self.admin is None:
            raise errors.BackendError("RocketMQ tables need the admin path (`admin`: the name server address): "
                                      "each process reads them through a consumer group of its own")
        if self._kinds.get(parent) != "LITE":
            await self.admin.create_topic(self._full(parent), message_type="LITE", queues=self.queues,
                                          attributes={"lite.topic.expiration": "-1"})
            self._kinds[parent] = "LITE"

    async def _kind(self, topic: str) -> str | None:
        """"LITE", "NORMAL", ... or None when the topic does not exist. Asks the admin path when
        there is one: a route query for a missing topic would make the proxy cache its absence."""
        if topic in self._kinds:
            return self._kinds[topic]
        if self.admin is not None:
            config = await self.admin.topic_config(self._full(topic))
            if config is not None:
                self._configs[topic] = config
            kind = None if config is None else (config.get("attributes") or {}).get("message.type", "NORMAL")
            if kind is not None and config.get("order") and topic not in self._specs:
                self._specs[topic] = TopicSpec(topic, lite=kind == "LITE", ordered=True)
        else:
            queues = await self._conn.query_route(topic, self._client_id)
            types = {pb.MessageType.Name(t) for q in queues or () for t in q.accept_message_types}
            kind = None if queues is None else ("LITE" if "LITE" in types else "NORMAL")
        if kind is not None:
            self._kinds[topic] = kind
        return kind

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, topic: str, message: Message, *, lite_topic: str | None = None) -> str:
        return await self.send(topic, message, lite_topic=lite_topic)

    async def send(self, topic: str, message: Message, *, lite_topic: str | None = None,
                   message_id: str | None = None) -> str:
        names.topic(topic, system_ok=lite_topic is None)
        if lite_topic is not None:
            names.lite_topic(lite_topic)
        proto = self._message(topic, message, lite_topic, message_id or self.new_message_id())
        kind = await self._kind(topic)
        if kind is None:
            raise errors.NotFoundError("topic", topic)
        if (kind == "LITE") != (lite_topic is not None):
            raise errors.ConflictError(f"topic {topic!r} is a {kind} topic: "
                                       + ("publish with a lite topic" if kind == "LITE" else "it has no lite topics"))
        what = f"publish to {topic!r}" + (f" lite topic {lite_topic!r}" if lite_topic else "")
        request = rpc.SendMessageRequest(messages=[proto])
        loop = asyncio.get_running_loop()
        began, delay = loop.time(), SEND_RETRY_FIRST
        while True:
            reply = await self._conn.call("SendMessage", request, self._client_id, what)
            status = reply.entries[0].status if reply.status.code == OK and reply.entries else reply.status
            if status.code == OK:
                return reply.entries[0].message_id
            waited = loop.time() - began
            if status.code == pb.TOO_MANY_REQUESTS and waited < self.send_retry_seconds:
                pass   # the broker's flow control (a busy send queue): RocketMQ producers retry too
            elif _route_unseen(status) and self.admin is not None and waited < self.route_wait_seconds:
                # Created through the admin path but not yet routed by the proxy (it learns routes
                # from the name server and caches their absence): wait for it, bounded.
                if await self.admin.topic_config(self._full(topic)) is None:
                    self._kinds.pop(topic, None)
                    raise errors.NotFoundError("topic", topic)
            elif _route_unseen(status):
                self._kinds.pop(topic, None)
                raise _unrouted(topic, waited) if self.admin is not None else errors.NotFoundError("topic", topic)
            else:
                raise status_error(status, what, value=lite_topic or len(proto.body), limit=self.max_message_bytes)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SEND_RETRY_LONGEST)

    def _message(self, topic: str, message: Message, lite_topic: str | None, message_id: str) -> pb.Message:
        if not isinstance(message, Message):
            raise errors.InvalidRequestError("message", message, "must be an adapters.base.Message")
        body, headers, key = message.body, message.headers, message.key
        if not isinstance(body, (bytes, bytearray)):
            raise errors.InvalidRequestError("body", type(body).__name__, "message body must be bytes")
        if len(body) > self.max_message_bytes:
            raise errors.MessageTooLargeError(len(body), self.max_message_bytes)
        user = _checked_headers(headers)
        if key is not None:
            if not isinstance(key, str) or not key or len(key.encode()) > 1024 or not key.isprintable():
                raise errors.InvalidRequestError("key", key, "key must be 1..1024 bytes of printable text")
            user[KEY_PROPERTY] = key
        if not body:
            body, user[EMPTY_MARK] = b"-", "1"
        proto = pb.Message(topic=self._conn.resource(topic), body=bytes(body), user_properties=user)
        props = proto.system_properties
        props.message_id = message_id
        props.message_type = pb.LITE if lite_topic is not None else pb.NORMAL
        if lite_topic is not None:
            props.lite_topic = lite_topic
        if key is not None and key.split() == [key]:
            props.keys.append(key)      # indexed by RocketMQ: `mqadmin queryMsgByKey`
        props.body_encoding = pb.IDENTITY
        props.born_host = "127.0.0.1"
        props.born_timestamp.GetCurrentTime()
        return proto

    @staticmethod
    def new_message_id() -> str:
        # The proxy only needs a non-blank id; clients send "01" + 32 hex digits (version 1).
        return "01" + uuid.uuid4().hex.upper() + "00"

    # -- consumers ------------------------------------------------------------------------------

    async def group_consumer(self, topic: str, group: str, *, invisible: float = 30.0) -> RocketMQGroupConsumer:
        names.topic(topic, system_ok=True)
        names.group(group)
        seconds("invisible", invisible)
        spec = self._specs.get(topic)
        await self._ensure_group(group, max_retry=spec.max_attempts - 1 if spec and spec.max_attempts else None)
        kind = await self._kind(topic)
        if kind is None and names.is_dead_letter(topic) and self.admin is not None:
            await self._ensure_dead_letter_topic(topic)   # no dead letter yet: read an empty topic
            kind = "NORMAL"
        if kind is None and not names.is_dead_letter(topic):
            raise errors.NotFoundError("topic", topic)
        if kind == "LITE":
            raise errors.ConflictError(f"topic {topic!r} is a lite parent: use lite_consumer()")
        queues = await self._conn.query_route(topic, self._client_id) if kind is not None else None
        session = Session(self._conn, new_client_id(group), pb.SIMPLE_CONSUMER, group, topic,
                          heartbeat_every=self.heartbeat_every)
        await session.start()
        consumer = RocketMQGroupConsumer(self._conn, session, topic, group, invisible, _one_per_broker(queues))
        return self._track(consumer)

    async def lite_consumer(self, topic: str, group: str, client_id: str | None = None, *,
                            invisible: float = 30.0) -> RocketMQLiteConsumer:
        names.topic(topic)
        rmq_group = names.lite_group(group, topic)
        # The id on the wire is this process's own even when the caller's is stable (a gateway
        # restarted on its port): a process that just exited leaves its long-poll at the broker
        # under its client id until the poll times out, and that poll would take the first
        # message for the same id, lost to a closed stream until its invisible time ran out.
        client_id = new_client_id(names.client_id(client_id) if client_id is not None else group)
        seconds("invisible", invisible)
        kind = await self._kind(topic)
        if kind is None:
            raise errors.NotFoundError("topic", topic)
        if kind != "LITE":
            raise errors.ConflictError(f"topic {topic!r} is a {kind} topic, not a lite parent")
        attributes = self._lite_group_attributes(topic)
        await self._ensure_group(rmq_group, attributes=attributes)
        session = Session(self._conn, client_id, pb.LITE_PUSH_CONSUMER, rmq_group, topic,
                          heartbeat_every=self.heartbeat_every)
        try:
            await session.start()
        except (errors.NotFoundError, errors.ConflictError) as exc:
            if self.admin is not None:
                raise
            command = (f"mqadmin updateSubGroup -n <namesrv> -c <cluster> -g '{self._full(rmq_group)}' "
                       f"--attributes +lite.bind.topic={self._full(topic)}")
            if isinstance(exc, errors.NotFoundError):
                raise _missing("group", rmq_group, command) from exc
            raise errors.ConflictError(f"{exc}; bind the group to its parent with: {command}") from exc
        try:
            targets = await self._assignments(topic, rmq_group, client_id)
        except BaseException:
            await session.close()
            raise
        quota = session.settings.subscription.lite_subscription_quota or self.lite_subscription_quota
        spec = self._specs.get(topic)
        ordered = spec is not None and spec.ordered
        consumer = RocketMQLiteConsumer(self._conn, session, topic, group, rmq_group, invisible, targets,
                                        lease=self.lease_seconds, quota=quota, full_sync_every=self.full_sync_every,
                                        admin=self.admin, parent_full=self._full(topic), ordered=ordered)
        if self.admin is not None:
            consumer.regroup = lambda: self._ensure_group(rmq_group, attributes=attributes, again=True)
        return self._track(consumer)

    def _lite_group_attributes(self, topic: str) -> dict[str, str]:
        # lite.sub.client.max.event.cnt bounds the broker's queue of "lite topic X is readable"
        # events per client. Unset, the broker keeps 100 and drops the rest ("client event set is
        # full"), re-creating them by a full dispatch ~10 s later: every event a client may need
        # at once (one per subscribed lite topic) must fit.
        return {"lite.bind.topic": self._full(topic),
                "lite.sub.client.quota": str(self.lite_subscription_quota),
                LITE_EVENT_QUEUE: str(self.lite_event_queue)}

    def _track(self, consumer):
        self._consumers.add(consumer)
        consumer.on_close = self._consumers.discard
        return consumer

    async def _assignments(self, topic: str, rmq_group: str, client_id: str) -> list[pb.MessageQueue]:
        request = rpc.QueryAssignmentRequest(topic=self._conn.resource(topic), group=self._conn.resource(rmq_group),
                                             endpoints=self._conn.endpoints())
        reply = await self._conn.call("QueryAssignment", request, client_id, f"assignment of {topic!r}")
        if reply.status.code != OK:
            raise status_error(reply.status, f"assignment of {topic!r}", value=topic)
        return [a.message_queue for a in reply.assignments]

    async def _ensure_group(self, group: str, *, max_retry: int | None = None,
                            attributes: dict[str, str] | None = None, again: bool = False) -> None:
        """`again`: the broker lost the group's settings (it re-creates a deleted group that a
        client still uses, with none of them): set them whatever this process remembers."""
        key = (group, max_retry, tuple(sorted((attributes or {}).items())))
        if key in self._groups and not again:
            return
        if self.admin is not None:
            full = self._full(group)
            await self.admin.create_group(full, max_retry=max_retry, attributes=attributes)
            if not attributes:   # a capability group: its dead-letter topic exists from the start
                await self._ensure_dead_letter_topic(names.dead_letter_topic(group))
        self._groups.add(key)

    async def _ensure_dead_letter_topic(self, topic: str) -> None:
        """What the broker would create on the first dead letter (one queue), so that dead-letter
        consumers and publishers can use it before."""
        if await self._kind(topic) is None:
            await self.admin.create_topic(self._full(topic), message_type="NORMAL", queues=1)
            self._kinds[topic] = "NORMAL"

    async def drop_lite_group(self, parent: str, group: str) -> None:
        rmq_group = names.lite_group(group, parent)
        # A later lite_consumer() of the same group must create it again, with its settings.
        self._groups = {key for key in self._groups if key[0] != rmq_group}
        if self.admin is not None:
            await self.admin.delete_group(self._full(rmq_group))

    def dead_letter_topic(self, group: str) -> str:
        return names.dead_letter_topic(group)

    async def table(self, name: str) -> RocketMQTable:
        names.table(name)
        if self._tables is None:
            self._tables = Tables(self, self.tables_topic, refresh_after=self.table_refresh_seconds)
        return await self._tables.open(name)

    def _full(self, name: str) -> str:
        return names.with_namespace(self.namespace, name)


def _route_unseen(status) -> bool:
    return status.code == pb.TOPIC_NOT_FOUND or "expected type is UNSPECIFIED" in status.message


def _unrouted(topic: str, waited: float) -> errors.NotFoundError:
    error = errors.NotFoundError("topic", topic)
    error.args = (f"topic {topic!r} exists on the brokers but the proxy still has no route for it after "
                  f"{waited:.0f} s (it caches a missing route and learns new ones from the name server); "
                  "check that the proxy's namesrvAddr is this cluster's name server",)
    return error


def _checked_headers(headers: object) -> dict[str, str]:
    """Headers travel as RocketMQ user properties: printable, and not one of RocketMQ's own names."""
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise errors.InvalidRequestError("headers", headers, f"must be a dict of at most {MAX_HEADERS} entries")
    for k, v in headers.items():
        if not isinstance(k, str) or not 0 < len(k) <= 255 or not k.isprintable():
            raise errors.InvalidRequestError("header", k, "header names must be 1..255 printable characters")
        if is_system_property(k):
            raise errors.InvalidRequestError("header", k, "the name is reserved for RocketMQ's own properties")
        if not isinstance(v, str) or not v.isprintable():
            raise errors.InvalidRequestError("header", k, "header values must be printable strings")
    return dict(headers)


def _one_per_broker(queues) -> list[pb.MessageQueue]:
    """The proxy only reads the broker of a receive's queue and pops from all its queues."""
    by_broker: dict[str, pb.MessageQueue] = {}
    for queue in queues or ():
        if queue.permission in (pb.READ, pb.READ_WRITE):
            by_broker.setdefault(queue.broker.name, queue)
    return list(by_broker.values())


def _topic_command(full: str, kind: str, idle: float | None) -> str:
    attrs = f"+message.type={kind}" + (f",+lite.topic.expiration={max(1, math.ceil(idle / 60))}" if idle else "")
    return f"mqadmin updateTopic -n <namesrv> -c <cluster> -t {full} -a {attrs}"


def _missing(kind: str, name: str, command: str) -> errors.NotFoundError:
    error = errors.NotFoundError(kind, name)
    error.args = (f"{kind} {name!r} does not exist and this backend has no admin path to create it; "
                  f"create it with: {command}",)
    return error


MAX_LITE_EXPIRATION_MINUTES = 43_200   # the range of the topic attribute lite.topic.expiration


def _check_idle(idle: object) -> None:
    ok = isinstance(idle, (int, float)) and not isinstance(idle, bool) and math.isfinite(idle)
    if not ok or not 0 < idle <= MAX_LITE_EXPIRATION_MINUTES * 60:
        raise errors.InvalidRequestError("lite_idle_seconds", idle, "must be a number of seconds, more than 0 "
                                         f"up to {MAX_LITE_EXPIRATION_MINUTES * 60} (lite.topic.expiration "
                                         f"is at most {MAX_LITE_EXPIRATION_MINUTES} minutes)")
