"""What the relay reports when a task reaches a state or a turn ends: the metrics, the one INFO
line per ended task, and the fold's span. Kept out of relay.py so the loop reads as a loop."""

from __future__ import annotations

import logging
import time

from a2a.types import a2a_pb2

from gateway.observability import metrics, tracing

from . import fold

log = logging.getLogger("topicbridge.tasks")


def capability_of(active) -> str:
    if active.capability is None:
        from .relay import recorded
        active.capability = recorded(active.task)[0]
    return active.capability


def reached(active, state: int, event: a2a_pb2.StreamResponse) -> None:
    """The fold of `event` moved the task to `state`."""
    metrics.task_state(capability_of(active), state)
    if metrics.enabled and event.HasField("status_update") and event.status_update.status.HasField("timestamp"):
        sent = event.status_update.status.timestamp.ToNanoseconds() / 1e9
        metrics.relay_lag(time.time() - sent)


def folded(active, reply_trace: dict, backend: str) -> None:
    """A span for the fold of an event that carried a trace context (only when tracing is on)."""
    if tracing.enabled and reply_trace:
        attributes = {"topicbridge.task_id": active.task.id, "topicbridge.capability": capability_of(active),
                      "topicbridge.backend": backend,
                      "topicbridge.state": metrics.STATE_NAMES.get(active.task.status.state, "unknown")}
        with tracing.span("topicbridge.relay.fold", reply_trace, attributes):
            pass


def turn_ended(active) -> None:
    """The turn's end is indexed. A terminal task's duration is observed and logged once."""
    state = active.task.status.state
    capability = capability_of(active)
    name = metrics.STATE_NAMES.get(state, "unknown")
    if not log.isEnabledFor(logging.INFO) and not metrics.enabled:
        return
    if state not in fold.TERMINAL:
        log.info("task %s (%s) waits: %s", active.task.id, capability, name,
                 extra={"task_id": active.task.id, "capability": capability})
        return
    seconds = None if active.started is None else time.monotonic() - active.started
    if seconds is not None:
        metrics.task_ended(capability, seconds)
    if log.isEnabledFor(logging.INFO):
        log.info("task %s (%s) ended %s after %s", active.task.id, capability, name,
                 "?" if seconds is None else f"{seconds:.3f}s",
                 extra={"task_id": active.task.id, "capability": capability, "state": name, "duration": seconds})
