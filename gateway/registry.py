"""The capability registry: semantic topics and the cards they carry.

A capability is a topic plus the AgentCard that describes it (plus optional input/output JSON
Schemas for native agents), where it came from and its health. Records live in the backend's
durable `capabilities` table, so every gateway instance sees the same registry and it survives
restarts.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from adapters.base import Backend

from . import channels

TABLE = "capabilities"


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

    @property
    def topic(self) -> str:
        return channels.capability_topic(self.name)

    @property
    def description(self) -> str:
        return self.card.get("description", "")

    def to_json(self) -> dict:
        return asdict(self) | {"topic": self.topic}

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Capability":
        return cls(**json.loads(raw))


class Registry:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._table = None

    async def start(self) -> None:
        self._table = await self.backend.table(TABLE)

    async def close(self) -> None:
        pass

    async def put(self, capability: Capability) -> None:
        await self._table.put(capability.name, capability.encode())

    async def get(self, name: str) -> Capability | None:
        if not channels.is_capability_name(name):
            return None
        raw = await self._table.get(name)
        return Capability.decode(raw) if raw else None

    async def delete(self, name: str) -> bool:
        return await self._table.delete(name) if channels.is_capability_name(name) else False

    async def list(self) -> list[Capability]:
        return [Capability.decode(raw) for _, raw in await self._table.items()]
