"""Engine settings and per-topic settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FsyncPolicy = Literal["always", "batch", "interval", "never"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    data_dir: Path | None = None          # None: memory only, nothing survives close()
    fsync: FsyncPolicy = "batch"
    fsync_interval: float = 0.05          # seconds, for fsync="interval"
    segment_bytes: int = 64 << 20
    snapshot_every: int = 500_000         # records appended between snapshots (bounds replay)
    max_message_bytes: int = 4 << 20
    session_timeout: float = 30.0         # a lite client silent this long is removed
    default_invisible: float = 30.0       # seconds a received message stays invisible
    max_attempts: int = 16                # deliveries before a message goes to the dead-letter topic
    lite_idle_seconds: float = 600.0      # default idle time before an unused lite topic is deleted
    min_lite_idle_seconds: float = 1.0    # floor for per-topic idle times
    max_lite_topics: int = 2_000_000      # lite topics in total
    max_subscriptions_per_client: int = 200_000
    max_messages_per_lite_topic: int = 10_000
    poll_topic_batch: int = 8             # messages one ready lite topic may give per turn of a poll
    tick: float = 0.02                    # housekeeping period: timeouts, expiry, liveness


@dataclass(frozen=True, slots=True)
class TopicConfig:
    lite: bool = False                    # a parent of lite topics, consumed through poll()
    ordered: bool = False                 # lite topics hand out one message at a time per group
    lite_idle_seconds: float | None = None
    max_attempts: int | None = None

    def to_json(self) -> dict:
        return {"lite": self.lite, "ordered": self.ordered,
                "lite_idle_seconds": self.lite_idle_seconds, "max_attempts": self.max_attempts}

    @classmethod
    def from_json(cls, data: dict) -> "TopicConfig":
        return cls(**{k: data.get(k) for k in ("lite_idle_seconds", "max_attempts")},
                   lite=bool(data.get("lite")), ordered=bool(data.get("ordered")))


DLQ_PREFIX = "%DLQ%"


def dead_letter_topic(group: str) -> str:
    return DLQ_PREFIX + group
