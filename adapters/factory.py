"""Build the configured backend from validated settings (see gateway/settings.py)."""

from __future__ import annotations

from pathlib import Path

from lite_engine import EngineConfig

from .base import Backend

_ENGINE_KEYS = set(EngineConfig.__dataclass_fields__) - {"data_dir"}


def engine_config(lite: dict) -> EngineConfig:
    overrides = {k: v for k, v in lite.items() if k in _ENGINE_KEYS}
    data_dir = lite.get("data_dir")
    return EngineConfig(data_dir=Path(data_dir) if data_dir else None, **overrides)


def open_backend(settings: dict) -> Backend:
    """Return an unstarted backend for `settings["backend"]`."""
    kind = settings.get("backend", "lite")
    if kind == "lite":
        lite = settings.get("lite", {})
        if lite.get("mode") == "remote":
            from .lite_remote import RemoteLiteBackend
            return RemoteLiteBackend(lite.get("target", "127.0.0.1:7600"),
                                     session_timeout=lite.get("session_timeout"))
        from .lite import EmbeddedLiteBackend
        return EmbeddedLiteBackend(engine_config(lite))
    if kind == "kafka":
        from .kafka import KafkaBackend
        return KafkaBackend(**settings.get("kafka", {}))
    if kind == "rocketmq":
        from .rocketmq import RocketMQBackend
        return RocketMQBackend(**settings.get("rocketmq", {}))
    raise ValueError(f"unknown backend {kind!r}")
