"""The embedded lite engine's metrics, for the gateway's /metrics: the gateway reaches the lite
engine only through the adapters."""

from lite_engine import metrics as _engine


def watch(backend) -> bool:
    """Report the engine of an embedded lite `backend` at every scrape; False for other backends."""
    engine = getattr(backend, "engine", None)
    if engine is None:
        return False
    _engine.watch(engine)
    return True


REGISTRY = _engine.REGISTRY
