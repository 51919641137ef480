"""Build the configured backend from validated settings (see gateway/settings.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lite_engine import EngineConfig

from .base import Backend

_ENGINE_KEYS = set(EngineConfig.__dataclass_fields__) - {"data_dir"}


def engine_config(lite: dict) -> EngineConfig:
    overrides = {k: v for k, v in lite.items() if k in _ENGINE_KEYS}
    data_dir = lite.get("data_dir")
    return EngineConfig(data_dir=Path(data_dir) if data_dir else None, **overrides)


class MissingExtraError(RuntimeError):
    """A backend whose client library is an optional extra that is not installed."""

    def __init__(self, backend: str, module: str) -> None:
        self.backend, self.module = backend, module
        super().__init__(f"the {backend} backend needs {module}, which is not installed: "
                         f"pip install 'topicbridge[{backend}]'")


_EXTRAS = {"kafka": "aiokafka", "rocketmq": "rocketmq"}


def require_extra(backend: str) -> None:
    """Raise MissingExtraError if `backend` needs a client library that is not installed."""
    module = _EXTRAS.get(backend)
    if module is not None and importlib.util.find_spec(module) is None:
        raise MissingExtraError(backend, module)


def open_backend(settings: dict) -> Backend:
    """Return an unstarted backend for `settings["backend"]`."""
    kind = settings.get("backend", "lite")
    if kind == "lite":
        lite = settings.get("lite", {})
        if lite.get("mode") == "remote":
            from .lite_remote import RemoteLiteBackend
            return RemoteLiteBackend(lite.get("target", "127.0.0.1:7600"),
                                     session_timeout=lite.get("session_timeout"), tls_ca=lite.get("tls_ca"),
                                     tls_cert=lite.get("tls_cert"), tls_key=lite.get("tls_key"),
                                     token_file=lite.get("token_file"))
        from .lite import EmbeddedLiteBackend
        from .lite_access import listen_access
        listen = lite.get("listen")
        access = listen_access(listen, tls_cert=lite.get("listen_tls_cert"), tls_key=lite.get("listen_tls_key"),
                               tls_client_ca=lite.get("listen_tls_client_ca"),
                               token_file=lite.get("listen_token_file")) if listen else None
        return EmbeddedLiteBackend(engine_config(lite), listen=listen, access=access)
    if kind == "kafka":
        require_extra("kafka")
        from .kafka import KafkaBackend
        return KafkaBackend(**settings.get("kafka", {}))
    if kind == "rocketmq":
        require_extra("rocketmq")
        from .rocketmq import RocketMQBackend
        return RocketMQBackend(**settings.get("rocketmq", {}))
    raise ValueError(f"unknown backend {kind!r}")
