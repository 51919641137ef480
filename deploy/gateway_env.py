"""What a started broker prints: the environment that points `topicbridge serve` (and workers)
at it, as shell lines, so `eval "$(python -m deploy.kafka start)"` sets them."""

from __future__ import annotations


def gateway_env(backend: str, **settings: str) -> str:
    """`export TOPICBRIDGE_...` lines for `backend` with its `section__key=value` settings, and
    the equivalent `topicbridge serve` flags as a comment."""
    lines = [f"export TOPICBRIDGE_BACKEND={backend}"]
    lines += [f"export TOPICBRIDGE_{key.upper()}={value}" for key, value in settings.items()]
    flags = {"kafka__bootstrap_servers": "--bootstrap", "rocketmq__endpoint": "--endpoint",
             "rocketmq__admin": "--namesrv"}
    serve = " ".join(f"{flags[key]} {value}" for key, value in settings.items() if key in flags)
    lines.append(f"# or: topicbridge serve --backend {backend} {serve}")
    return "\n".join(lines)
