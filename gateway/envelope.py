"""The three JSON documents that cross the backend: task envelopes, reply events and control
events (schemas/*.schema.json). Decoding validates; a bad document raises EnvelopeError with the
reason, which the worker puts on the dead-letter topic."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jsonschema
from a2a.types import a2a_pb2
from google.protobuf import json_format

from . import channels

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


class EnvelopeError(ValueError):
    def __init__(self, kind: str, reason: str) -> None:
        self.kind, self.reason = kind, reason
        super().__init__(f"invalid {kind}: {reason}")


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


def _load(kind: str, raw: bytes) -> dict:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EnvelopeError(kind, f"not JSON: {e}") from None
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise EnvelopeError(kind, f"at {where}: {error.message}")
    return doc


def _dump(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def proto_to_dict(msg) -> dict:
    return json_format.MessageToDict(msg)


def _parse(kind: str, data: dict, proto):
    try:
        return json_format.ParseDict(data, proto, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise EnvelopeError(kind, str(e)) from None


@dataclass
class TaskEnvelope:
    task_id: str
    context_id: str
    capability: str
    message: a2a_pb2.Message
    deadline: float | None = None
    created: float = field(default_factory=time.time)
    trace: dict[str, str] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def encode(self) -> bytes:
        doc = {"version": 1, "task_id": self.task_id, "context_id": self.context_id,
               "capability": self.capability,
               "reply_to": {"topic": channels.REPLY_TOPIC, "lite_topic": channels.reply_channel(self.task_id)},
               "control": {"topic": channels.CONTROL_TOPIC, "lite_topic": channels.control_channel(self.task_id)},
               "message": proto_to_dict(self.message) or {"parts": []}, "created": self.created,
               "trace": self.trace, "metadata": self.metadata}
        if self.deadline is not None:
            doc["deadline"] = self.deadline
        return _dump(doc)

    @classmethod
    def decode(cls, raw: bytes) -> "TaskEnvelope":
        doc = _load("task-envelope", raw)
        message = _parse("task-envelope", doc["message"], a2a_pb2.Message())
        return cls(doc["task_id"], doc["context_id"], doc["capability"], message, doc.get("deadline"),
                   doc.get("created", time.time()), doc.get("trace", {}), doc.get("metadata", {}))


@dataclass
class ReplyEvent:
    task_id: str
    attempt: int
    seq: int
    event: a2a_pb2.StreamResponse
    final: bool = False

    @property
    def position(self) -> tuple[int, int]:
        return (self.attempt, self.seq)

    def encode(self) -> bytes:
        return _dump({"version": 1, "task_id": self.task_id, "attempt": self.attempt, "seq": self.seq,
                      "final": self.final, "event": proto_to_dict(self.event)})

    @classmethod
    def decode(cls, raw: bytes) -> "ReplyEvent":
        doc = _load("reply-event", raw)
        event = _parse("reply-event", doc["event"], a2a_pb2.StreamResponse())
        return cls(doc["task_id"], doc["attempt"], doc["seq"], event, doc.get("final", False))


@dataclass
class ControlEvent:
    task_id: str
    action: str
    reason: str = ""

    def encode(self) -> bytes:
        return _dump({"version": 1, "task_id": self.task_id, "action": self.action, "reason": self.reason})

    @classmethod
    def decode(cls, raw: bytes) -> "ControlEvent":
        doc = _load("control-event", raw)
        return cls(doc["task_id"], doc["action"], doc.get("reason", ""))
