"""The capability registry: semantic topics and the cards they carry.

A capability is a topic plus the AgentCard that describes it (plus optional input/output JSON
Schemas for native agents), where it came from and its health. Records live in the backend's
durable `capabilities` table, so every gateway instance sees the same registry and it survives
restarts.

Health. A native worker announces its capability when it starts and heartbeats while it runs:
one row per worker in the `capability-workers` table, key `<capability>/<worker id>`, value
`{"last_seen": unix time, "ttl": seconds}`. A capability announced by workers is `available`
while one of its workers was seen within its ttl and `unavailable` once all have stopped or gone
silent; it stays listed until it has been without a live worker for the registry's `expiry`
(gateway.capability_expiry_seconds), then it is removed (a worker that starts again announces it
anew). A capability bridged to an A2A agent is `available` until its bridge
cannot reach the agent, then `error` with the reason in `error`, until a call gets through.
Records written with `put` and no heartbeat keep the status they were written with.

Topic settings. A capability's topic is created with the settings registered with it
(`max_attempts`: deliveries of an envelope before it is dead-lettered; None: the backend's).
Creating a topic is "last creator wins" on every backend, and many create it (each gateway
instance's bridges, each worker as it starts): all of them go through `create_capability_topic`,
which reads the record first, so a worker starting does not reset what was registered.

Timeout. `timeout_seconds` bounds how long one turn of a task of the capability may run before
the gateway fails it (gateway/tasks/lifetimes.py); null takes gateway.task_timeout_seconds. It
is given at registration (POST /admin/agents) or, for a native worker, in its card as the
extension TIMEOUT_EXTENSION: capabilities.extensions[] = {"uri": TIMEOUT_EXTENSION,
"params": {"timeoutSeconds": 120}}.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field

from adapters.base import Backend, TopicSpec
from adapters.errors import ConflictError

from gateway.tasks import channels

TABLE = "capabilities"
WORKER_TABLE = "capability-workers"
PRUNE_AFTER_TTLS = 10       # a silent worker's row is removed after this many ttls
TIMEOUT_EXTENSION = "urn:topicbridge:task-timeout:v1"
MAX_TIMEOUT = 30 * 24 * 3600.0
MAX_ATTEMPTS = 1000          # the engine's own bound on a topic's max_attempts


@dataclass
class Capability:
    name: str                               # stable, [a-z0-9_-]; the topic is tb-cap-<name>
    card: dict                              # AgentCard (A2A 1.0 ProtoJSON) describing it
    source: str = "native"                  # "native" (worker SDK) or "a2a" (bridged by card URL)
    card_url: str | None = None
    input_schema: dict | None = None
    output_schema: dict | None = None
    created: float = field(default_factory=time.time)
    status: str = "available"               # available | unavailable | error
    error: str | None = None
    last_seen: float = field(default_factory=time.time)
    heartbeat: float | None = None          # set when workers announce it: health follows their heartbeats
    workers: int | None = None              # live native workers, counted when read (heartbeat set)
    timeout_seconds: float | None = None    # a turn's limit; None: gateway.task_timeout_seconds
    max_attempts: int | None = None         # deliveries before dead-lettering; None: the backend's default

    @property
    def topic(self) -> str:
        return channels.capability_topic(self.name)

    @property
    def description(self) -> str:
        return self.card.get("description", "")

    def to_json(self) -> dict:
        return asdict(self) | {"topic": self.topic}

    def topic_spec(self) -> TopicSpec:
        return TopicSpec(self.topic, max_attempts=self.max_attempts)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Capability":
        doc = json.loads(raw)
        return cls(**{k: v for k, v in doc.items() if k in _FIELDS})


_FIELDS = {f.name for f in dataclasses.fields(Capability)}


def check_timeout(value) -> float | None:
    """A valid `timeout_seconds` (None stays None); ValueError naming what is wrong."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise ValueError(f"timeout_seconds {value!r} must be a number of seconds in (0, {MAX_TIMEOUT:.0f}]")
    return float(value)


def card_timeout(card: dict) -> float | None:
    """The `timeout_seconds` a card declares in the TIMEOUT_EXTENSION extension (None if none)."""
    extensions = (card.get("capabilities") or {}).get("extensions") or []
    for extension in extensions:
        if isinstance(extension, dict) and extension.get("uri") == TIMEOUT_EXTENSION:
            return check_timeout((extension.get("params") or {}).get("timeoutSeconds",
                                 (extension.get("params") or {}).get("timeout_seconds")))
    return None


def check_max_attempts(value) -> int | None:
    """A valid `max_attempts` (None stays None); ValueError naming what is wrong."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
        raise ValueError(f"max_attempts {value!r} must be an integer in [1, {MAX_ATTEMPTS}]")
    return value


async def create_capability_topic(backend: Backend, name: str) -> None:
    """Create capability `name`'s topic, or keep it, with the settings registered with it."""
    raw = await (await backend.table(TABLE)).get(name)
    spec = Capability.decode(raw).topic_spec() if raw else TopicSpec(channels.capability_topic(name))
    await backend.create_topic(spec)


def derive_name(card_name: str) -> str:
    """A stable capability name from an agent's display name: "PDF Summariser v2" -> "pdf-summariser-v2"."""
    text = unicodedata.normalize("NFKD", card_name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:63].rstrip("-")
    return slug or "agent-" + hashlib.sha256(card_name.encode()).hexdigest()[:12]


class Registry:
    def __init__(self, backend: Backend, *, expiry: float | None = None) -> None:
        """`expiry`: seconds without a live worker after which a worker-announced capability is
        removed (None: never)."""
        self.backend = backend
        self.expiry = expiry
        self._table = None
        self._workers = None

    async def start(self) -> None:
        self._table = await self.backend.table(TABLE)
        self._workers = await self.backend.table(WORKER_TABLE)

    async def close(self) -> None:
        pass

    # ------------------------------------------------------------ records

    async def put(self, capability: Capability) -> None:
        await self._table.put(capability.name, capability.encode())

    async def get(self, name: str) -> Capability | None:
        capability = await self._read(name)
        if capability is not None and capability.heartbeat is not None:
            rows = await self._workers.items(f"{name}/")
            _apply_health(capability, [_row(raw) for _, raw in rows])
            await self._prune(rows)
            if await self._expired(capability):
                return None
        return capability

    async def delete(self, name: str) -> bool:
        if not channels.is_capability_name(name):
            return False
        for key, _ in await self._workers.items(f"{name}/"):
            await self._workers.delete(key)
        return await self._table.delete(name)

    async def list(self) -> list[Capability]:
        capabilities = [Capability.decode(raw) for _, raw in await self._table.items()]
        if any(c.heartbeat is not None for c in capabilities):
            rows = await self._workers.items()
            by_name: dict[str, list[dict]] = {}
            for key, raw in rows:
                by_name.setdefault(key.partition("/")[0], []).append(_row(raw))
            for capability in capabilities:
                if capability.heartbeat is not None:
                    _apply_health(capability, by_name.get(capability.name, []))
            await self._prune(rows)
            capabilities = [c for c in capabilities if not await self._expired(c)]
        return capabilities

    async def _expired(self, capability: Capability) -> bool:
        """Remove a worker-announced capability silent for longer than `expiry`; True if removed."""
        if self.expiry is None or capability.heartbeat is None or capability.workers:
            return False
        if time.time() - (capability.last_seen or capability.created or 0) <= self.expiry:
            return False
        await self.delete(capability.name)
        return True

    async def timeout_of(self, name: str) -> float | None:
        """The capability's own turn limit (None: none, or no such capability), for Lifetimes."""
        capability = await self._read(name)
        return capability.timeout_seconds if capability is not None else None

    async def names(self) -> list[str]:
        """Every registered capability's name (Lifetimes watches their dead-letter topics)."""
        return [key for key, _ in await self._table.items()]

    async def register(self, capability: Capability) -> Capability:
        """Add a new capability; ConflictError when the name is taken."""
        existing = await self._read(capability.name)
        if existing is not None:
            where = f" from {existing.card_url}" if existing.card_url else f" ({existing.source})"
            raise ConflictError(f"capability {capability.name!r} is already registered{where}")
        capability.max_attempts = check_max_attempts(capability.max_attempts)
        await self.put(capability)
        return capability

    async def set_timeout(self, name: str, seconds: float | None) -> bool:
        """Set the capability's `timeout_seconds`; False if there is no such capability."""
        capability = await self._read(name)
        if capability is None:
            return False
        capability.timeout_seconds = check_timeout(seconds)
        await self.put(capability)
        return True

    async def set_health(self, name: str, status: str, error: str | None = None) -> bool:
        """Record a bridge's view of its agent; writes only on a change, never re-creates a removed record."""
        capability = await self._read(name)
        if capability is None or (capability.status, capability.error) == (status, error):
            return False
        capability.status, capability.error, capability.last_seen = status, error, time.time()
        await self.put(capability)
        return True

    async def _read(self, name: str) -> Capability | None:
        if not channels.is_capability_name(name):
            return None
        raw = await self._table.get(name)
        return Capability.decode(raw) if raw else None

    # ------------------------------------------------------------ native workers

    async def announce(self, name: str, card: dict, worker_id: str, *, ttl: float,
                       input_schema: dict | None = None, output_schema: dict | None = None) -> None:
        """A native worker serves `name` and will heartbeat (announce again) within `ttl` seconds.
        Raises ConflictError when `name` is bridged to an A2A agent."""
        existing = await self._read(name)
        if existing is not None and existing.source != "native":
            raise ConflictError(f"capability {name!r} is bridged to {existing.card_url}; a native worker "
                                f"cannot serve it")
        now = time.time()
        await self._workers.put(f"{name}/{worker_id}", json.dumps({"last_seen": now, "ttl": ttl}).encode())
        wanted = (card, input_schema, output_schema)
        if existing is None or existing.heartbeat is None or (existing.card, existing.input_schema,
                                                               existing.output_schema) != wanted:
            await self.put(Capability(name, card, "native", None, input_schema, output_schema,
                                      created=existing.created if existing else now, heartbeat=ttl,
                                      timeout_seconds=card_timeout(card),
                                      max_attempts=existing.max_attempts if existing else None))

    async def depart(self, name: str, worker_id: str) -> None:
        """A worker stopped cleanly; the capability stays, unavailable if it was the last one. Its
        row stays (not live: ttl 0) so the capability's silence is counted from now."""
        await self._workers.put(f"{name}/{worker_id}", json.dumps({"last_seen": time.time(), "ttl": 0}).encode())

    async def _prune(self, rows: list[tuple[str, bytes]]) -> None:
        now = time.time()
        for key, raw in rows:
            row = _row(raw)
            if now - row["last_seen"] > max(PRUNE_AFTER_TTLS * row["ttl"], self.expiry or 0):
                await self._workers.delete(key)


def _row(raw: bytes) -> dict:
    try:
        row = json.loads(raw)
        return {"last_seen": float(row["last_seen"]), "ttl": float(row["ttl"])}
    except (ValueError, KeyError, TypeError):
        return {"last_seen": 0.0, "ttl": 0.0}


def _apply_health(capability: Capability, rows: list[dict]) -> None:
    now = time.time()
    live = [r for r in rows if now - r["last_seen"] <= r["ttl"]]
    capability.workers = len(live)
    capability.status = "available" if live else "unavailable"
    capability.error = None if live else "no live workers: all have stopped or stopped heartbeating"
    if rows:
        capability.last_seen = max(r["last_seen"] for r in rows)
