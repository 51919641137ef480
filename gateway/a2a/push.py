"""Push notifications, delivered at least once from the backend.

Configs live in the backend table `push_configs`, one row per task (its configs as a serialized
`ListTaskPushNotificationConfigsResponse`), so every gateway instance sees them and a point read
answers "does this task have any?". When the relay of the instance that owns a task folds an
event (`TaskService.on_event`), `PushService.on_event` publishes one job per config on the
durable topic `tb-push`. Every gateway runs a member of the consumer group `tb-push-senders`:
it POSTs the event (a `StreamResponse`, as in streaming) to the config's URL with the config's
token in `X-A2A-Notification-Token` and its credentials in `Authorization`, acks on a 2xx, nacks
with exponential backoff otherwise and dead-letters after `max_attempts` or on a permanent
failure. A job a gateway held when it died comes back after its invisibility timeout, so a
restart drops nothing. Delivery is at least once and not ordered: a notification that had to
be retried can arrive after a later one (each carries its status timestamp).

Job record on `tb-push` (JSON): {"version": 1, "task_id", "config_id", "event": StreamResponse
in ProtoJSON}. The config is read again at delivery, so a deleted config stops its retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from dataclasses import dataclass

import httpx
from a2a.types import a2a_pb2
from google.protobuf import json_format

from adapters.base import Backend, Delivery, Message, TopicSpec
from adapters.errors import BackendError, QuotaExceededError

from gateway.observability import tracing
from gateway.http.outbound import AddressPolicy, OutboundError, guarded_client
from gateway.supervisor import Supervisor

log = logging.getLogger("topicbridge.push")

TABLE = "push_configs"
TOPIC = "tb-push"
GROUP = "tb-push-senders"
TOKEN_HEADER = "X-A2A-Notification-Token"
SENDER_LOOP = "push.sender"         # its name under the supervisor (and in /readyz)
_RETRYABLE_STATUS = {408, 425, 429}


class PushUrlError(ValueError):
    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"push notification url {url[:200]!r} refused: {reason}")


@dataclass(frozen=True)
class PushSettings:
    max_attempts: int = 8           # deliveries of one notification before it is dead-lettered
    backoff_base: float = 1.0       # seconds before the first retry; doubles each time
    backoff_max: float = 300.0
    timeout: float = 10.0           # per POST
    concurrency: int = 32           # POSTs in flight per gateway
    invisible: float = 60.0         # a job held by a gateway that died comes back after this
    allow_hosts: tuple[str, ...] = ()   # when set, push URLs must name one of these hosts
    max_configs: int = 16           # per task: the relay hook reads them all on every event

    @classmethod
    def from_settings(cls, settings: dict) -> "PushSettings":
        push = dict(settings.get("push") or {})
        if "allow_hosts" in push:
            push["allow_hosts"] = tuple(push["allow_hosts"])
        unknown = set(push) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown push settings {sorted(unknown)!r}")
        return cls(**push)

    def backoff(self, attempt: int) -> float:
        """Seconds before delivery number `attempt + 1`, with +-20% jitter."""
        delay = min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)
        return delay * random.uniform(0.8, 1.2)


class PushService:
    """Config store, job publisher (the relay hook) and sender loop of one gateway instance."""

    def __init__(self, backend: Backend, settings: PushSettings | None = None, *,
                 supervisor: Supervisor | None = None) -> None:
        self.backend = backend
        self.settings = settings or PushSettings()
        self.supervisor = supervisor or Supervisor()     # runs the sender loop
        # The receivers' addresses pass the gateway's one outbound policy, checked again at
        # every connection (no second DNS answer between the check and the POST).
        self.policy = AddressPolicy(self.settings.allow_hosts or None, setting="push.allow_hosts")
        self._table = None
        self._consumer = None
        self._http: httpx.AsyncClient | None = None
        self._sending: set[asyncio.Task] = set()
        self._pending: dict[str, list[a2a_pb2.TaskPushNotificationConfig]] = {}
        self.delivered = 0
        self.retried = 0
        self.dead_lettered = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.backend.create_topic(TopicSpec(TOPIC, max_attempts=self.settings.max_attempts))
        self._table = await self.backend.table(TABLE)
        self._consumer = await self.backend.group_consumer(TOPIC, GROUP, invisible=self.settings.invisible)
        self._http = guarded_client(self.policy, timeout=self.settings.timeout, follow_redirects=False)
        self.supervisor.spawn(SENDER_LOOP, self._receive_loop)

    async def close(self) -> None:
        await self.supervisor.stop(SENDER_LOOP)
        for task in self._sending:
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.close()
        if self._http is not None:
            await self._http.aclose()

    # ------------------------------------------------------------ configs

    async def check_url(self, url: str) -> None:
        """Refuse URLs the gateway must not call: not http(s), cloud metadata, link-local,
        multicast or unspecified addresses, and hosts outside `allow_hosts` when it is set."""
        try:
            await self.policy.check_url(url)
        except OutboundError as e:
            raise PushUrlError(url, e.reason) from None

    async def configs(self, task_id: str) -> list[a2a_pb2.TaskPushNotificationConfig]:
        raw = await self._table.get(task_id)
        if raw is None:
            return list(self._pending.get(task_id, ()))
        return list(a2a_pb2.ListTaskPushNotificationConfigsResponse.FromString(raw).configs)

    async def create(self, config: a2a_pb2.TaskPushNotificationConfig) -> a2a_pb2.TaskPushNotificationConfig:
        """Store `config` (replacing one with the same id) and return it as stored.
        Read-modify-write of the task's row: two instances creating configs for the same task
        at the same instant can lose one (the row is per task so the relay hook reads one key)."""
        stored = normalized(config)
        configs = [c for c in await self.configs(stored.task_id) if c.id != stored.id] + [stored]
        if len(configs) > self.settings.max_configs:
            raise QuotaExceededError("push notification configs per task", self.settings.max_configs)
        await self._write(stored.task_id, configs)
        return stored

    async def delete(self, task_id: str, config_id: str) -> bool:
        configs = await self.configs(task_id)
        kept = [c for c in configs if c.id != config_id]
        if len(kept) == len(configs):
            return False
        if kept:
            await self._write(task_id, kept)
        else:
            await self._table.delete(task_id)
        return True

    @contextlib.contextmanager
    def holding(self, task_id: str, config: a2a_pb2.TaskPushNotificationConfig):
        """Make the config a SendMessage carried visible to the relay hook at once, before it is
        stored: enter right after `TaskService.submit` returns, with no await in between.
        Yields the normalized config to store."""
        stored = normalized(config, task_id)
        self._pending.setdefault(task_id, []).append(stored)
        try:
            yield stored
        finally:
            self._pending.pop(task_id, None)

    async def _write(self, task_id: str, configs: list[a2a_pb2.TaskPushNotificationConfig]) -> None:
        row = a2a_pb2.ListTaskPushNotificationConfigsResponse(configs=configs)
        await self._table.put(task_id, row.SerializeToString())

    # ------------------------------------------------------------ jobs

    async def on_event(self, task: a2a_pb2.Task, event: a2a_pb2.StreamResponse) -> None:
        """Relay hook: one job per config of `task`. Raises BackendError if a job could not be
        published, so the relay does not ack the reply event."""
        configs = await self.configs(task.id)
        if configs:
            await self.publish(task.id, configs, event)

    async def publish(self, task_id: str, configs, event: a2a_pb2.StreamResponse) -> None:
        payload = json_format.MessageToDict(event)
        for config in configs:
            body = json.dumps({"version": 1, "task_id": task_id, "config_id": config.id, "event": payload},
                              separators=(",", ":")).encode()
            await self.backend.publish(TOPIC, Message(body, {"task_id": task_id, **tracing.carrier()}, task_id))

    async def publish_snapshot(self, task: a2a_pb2.Task) -> None:
        """Send the task as it is to its configs: covers events folded before a config existed."""
        configs = await self.configs(task.id)
        if configs:
            await self.publish(task.id, configs, a2a_pb2.StreamResponse(task=task))

    # ------------------------------------------------------------ delivery

    async def _receive_loop(self) -> None:
        while True:
            free = self.settings.concurrency - len(self._sending)
            if free <= 0:
                await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                deliveries = await self._consumer.receive(max_messages=free, wait=1.0)
            except BackendError as e:
                log.warning("receiving push jobs failed: %s", e)
                await asyncio.sleep(1.0)
                continue
            for delivery in deliveries:
                task = asyncio.get_running_loop().create_task(self._settle(delivery))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _settle(self, delivery: Delivery) -> None:
        try:
            await self._deliver(delivery)
        except BackendError as e:
            log.warning("push job %s: backend failed (%s); it comes back after %.0fs", delivery.message_id,
                        e, self.settings.invisible)
        except Exception:       # a bug in one delivery must not go unseen; the job comes back
            log.exception("push job %s failed; it comes back after %.0fs", delivery.message_id,
                          self.settings.invisible)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            job = json.loads(delivery.body)
            task_id, config_id, event = job["task_id"], job["config_id"], job["event"]
        except (ValueError, TypeError, KeyError) as e:
            await self._dead_letter(delivery, f"malformed push job: {e!r}")
            return
        config = next((c for c in await self.configs(task_id) if c.id == config_id), None)
        if config is None:
            await delivery.ack()            # deleted since: nobody wants it any more
            return
        with tracing.task_span("topicbridge.push.delivery", delivery.headers, task_id, "", self.backend):
            failure, retry = await self._post(config, event)
        if failure is None:
            self.delivered += 1
            await delivery.ack()
        elif retry and delivery.attempt < self.settings.max_attempts:
            delay = self.settings.backoff(delivery.attempt)
            log.info("push to %s for task %s failed (%s), attempt %d; retrying in %.2fs", config.url, task_id,
                     failure, delivery.attempt, delay)
            self.retried += 1
            await delivery.nack(delay)
        else:
            await self._dead_letter(delivery, f"{failure} (attempt {delivery.attempt})")

    async def _post(self, config: a2a_pb2.TaskPushNotificationConfig, event: dict) -> tuple[str | None, bool]:
        """POST one notification; returns (failure reason or None, whether a retry may help)."""
        try:
            await self.check_url(config.url)
        except PushUrlError as e:
            return e.reason, False
        headers = tracing.carrier()      # the receiver may join the task's trace
        if config.token:
            headers[TOKEN_HEADER] = config.token
        if config.authentication.scheme and config.authentication.credentials:
            headers["Authorization"] = f"{config.authentication.scheme} {config.authentication.credentials}"
        try:
            # The receiver's answer is not read: only its status matters, however big the body.
            async with self._http.stream("POST", config.url, json=event, headers=headers) as response:
                pass
        except OutboundError as e:
            return e.reason, False
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}", True
        if response.is_success:
            return None, False
        retry = response.status_code >= 500 or response.status_code in _RETRYABLE_STATUS
        return f"HTTP {response.status_code}", retry

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.warning("dead-lettering push job %s: %s", delivery.message_id, reason)
        headers = {**delivery.headers, "x-dlq-reason": reason[:1000], "x-dlq-topic": delivery.topic}
        await self.backend.publish(self.backend.dead_letter_topic(GROUP), Message(delivery.body, headers))
        self.dead_lettered += 1
        await delivery.ack()


def normalized(config: a2a_pb2.TaskPushNotificationConfig, task_id: str = "") -> a2a_pb2.TaskPushNotificationConfig:
    """A copy with the task id set and an id assigned when the caller gave none."""
    out = a2a_pb2.TaskPushNotificationConfig()
    out.CopyFrom(config)
    out.task_id = task_id or config.task_id
    out.id = out.id or uuid.uuid4().hex
    out.ClearField("tenant")
    return out
