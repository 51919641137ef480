"""The three JSON documents that cross the backend: task envelopes, reply events and control
events (schemas/*.schema.json). Decoding validates; a bad document raises EnvelopeError with the
reason, which the worker puts on the dead-letter topic."""

from __future__ import annotations

import json
import json.encoder
import re
import time
from dataclasses import dataclass, field
from functools import cache

import jsonschema
from a2a.types import a2a_pb2
from google.protobuf import json_format

import schemas

from . import channels
from . import protojson as plain


class EnvelopeError(ValueError):
    def __init__(self, kind: str, reason: str) -> None:
        self.kind, self.reason = kind, reason
        super().__init__(f"invalid {kind}: {reason}")


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schemas.read(name))


def _load(kind: str, raw: bytes) -> dict:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise EnvelopeError(kind, f"not JSON: {e}") from None
    if _SURELY_VALID[kind](doc):
        return doc
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise EnvelopeError(kind, f"at {where}: {error.message}")
    return doc


# Fast paths for the documents every task carries. Full validation costs ~60-90 us a document,
# most of the task flow's CPU. Each check below is stricter than its schema (a plain int where
# the schema also admits 1.0, say): True means valid; False sends the document to the full
# validator, which accepts what the check was too strict for and names the error otherwise.
# tests/gateway/test_envelope.py holds each check to its schema.

_TASK_ID = re.compile(_validator("task-envelope").schema["properties"]["task_id"]["pattern"])
_ENVELOPE_KEYS = frozenset({"version", "task_id", "context_id", "capability", "reply_to", "control", "message",
                            "turn", "history", "deadline", "created", "trace", "metadata"})
_REPLY_KEYS = frozenset({"version", "task_id", "turn", "attempt", "seq", "final", "event", "trace"})
_EVENT_KINDS = frozenset({"task", "message", "statusUpdate", "artifactUpdate"})


def _text(value, low: int = 1, high: int | None = None) -> bool:
    return type(value) is str and low <= len(value) and (high is None or len(value) <= high)


def _turn(doc: dict) -> bool:
    turn = doc.get("turn", 0)
    return type(turn) is int and turn >= 0


def _route(value) -> bool:
    return type(value) is dict and len(value) == 2 and _text(value.get("topic")) and _text(value.get("lite_topic"))


def _envelope_valid(doc) -> bool:
    if type(doc) is not dict or not _ENVELOPE_KEYS.issuperset(doc):
        return False
    task_id, message, trace = doc.get("task_id"), doc.get("message"), doc.get("trace", {})
    history = doc.get("history", ())
    return (doc.get("version") == 1 and type(doc["version"]) is int
            and type(task_id) is str and _TASK_ID.search(task_id) is not None
            and _text(doc.get("context_id"), 1, 256) and _text(doc.get("capability"), 1, 128)
            and _route(doc.get("reply_to")) and ("control" not in doc or _route(doc["control"]))
            and type(message) is dict and type(message.get("parts")) is list
            and _turn(doc) and (history == () or type(history) is list and all(type(m) is dict for m in history))
            and all(type(doc.get(k, 0.0)) in (int, float) for k in ("deadline", "created"))
            and type(trace) is dict and all(type(v) is str for v in trace.values())
            and type(doc.get("metadata", {})) is dict)


def _reply_valid(doc) -> bool:
    if type(doc) is not dict or not _REPLY_KEYS.issuperset(doc):
        return False
    attempt, seq, event = doc.get("attempt"), doc.get("seq"), doc.get("event")
    return (doc.get("version") == 1 and type(doc["version"]) is int and _text(doc.get("task_id"))
            and _turn(doc) and type(attempt) is int and attempt >= 1 and type(seq) is int and seq >= 0
            and type(doc.get("final", False)) is bool
            and type(event) is dict and len(event) == 1
            and ("trace" not in doc or type(doc["trace"]) is dict and all(type(v) is str for v in doc["trace"].values()))
            and all(k in _EVENT_KINDS and type(v) is dict for k, v in event.items()))


_SURELY_VALID = {"task-envelope": _envelope_valid, "reply-event": _reply_valid, "control-event": lambda doc: False}


def _compact_encoder():
    """JSONEncoder(separators=(",", ":")).encode, ~4 us instead of ~11 us a reply event: its
    iterencode builds the C encoder (and a dict for the circular check) on every call; this one
    is built once. The documents are trees this module builds, so the check is left out."""
    encoder = json.JSONEncoder(separators=(",", ":"), check_circular=False)
    make = json.encoder.c_make_encoder
    if make is None:        # an interpreter without the C accelerator
        return encoder.encode
    chunks = make(None, encoder.default, json.encoder.encode_basestring_ascii, None, encoder.key_separator,
                  encoder.item_separator, False, False, True)
    return lambda doc: "".join(chunks(doc, 0))


_ENCODE = _compact_encoder()


def _dump(doc: dict) -> bytes:
    return _ENCODE(doc).encode()


def proto_to_dict(msg) -> dict:
    return json_format.MessageToDict(msg)


# json_format costs 5-15 us a message each way, most of what a task's documents cost after
# validation; gateway/plain.py converts the plain shapes (text parts, status and artifact
# updates, timestamps) to exactly json_format's result and returns None for anything else.

def _message_to_dict(message: a2a_pb2.Message) -> dict:
    doc = plain.message_to_dict(message)
    return proto_to_dict(message) if doc is None else doc


def _event_to_dict(event: a2a_pb2.StreamResponse) -> dict:
    doc = plain.event_to_dict(event)
    return proto_to_dict(event) if doc is None else doc


def _message_from_dict(kind: str, data) -> a2a_pb2.Message:
    message = plain.message_from_dict(data)
    return _parse(kind, data, a2a_pb2.Message()) if message is None else message


def _parse(kind: str, data: dict, proto):
    try:
        return json_format.ParseDict(data, proto, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as e:
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
    turn: int = 0           # n > 0: the n-th continuation of the task (A2A multi-turn)
    history: list[a2a_pb2.Message] = field(default_factory=list)    # a continuation's earlier messages

    def encode(self) -> bytes:
        doc = {"version": 1, "task_id": self.task_id, "context_id": self.context_id,
               "capability": self.capability,
               "reply_to": {"topic": channels.REPLY_TOPIC, "lite_topic": channels.reply_channel(self.task_id)},
               "control": {"topic": channels.CONTROL_TOPIC, "lite_topic": channels.control_channel(self.task_id)},
               "message": _message_to_dict(self.message) or {"parts": []}, "created": self.created,
               "trace": self.trace, "metadata": self.metadata}
        if self.deadline is not None:
            doc["deadline"] = self.deadline
        if self.turn:       # a first turn's envelope stays what readers without turns accept
            doc["turn"] = self.turn
            doc["history"] = [_message_to_dict(m) for m in self.history]
        return _dump(doc)

    @classmethod
    def decode(cls, raw: bytes) -> "TaskEnvelope":
        doc = _load("task-envelope", raw)
        message = _message_from_dict("task-envelope", doc["message"])
        history = [_message_from_dict("task-envelope", m) for m in doc.get("history", ())]
        return cls(doc["task_id"], doc["context_id"], doc["capability"], message, doc.get("deadline"),
                   doc.get("created", time.time()), doc.get("trace", {}), doc.get("metadata", {}),
                   doc.get("turn", 0), history)


@dataclass(slots=True)      # one object an event, not two (the relay decodes every event)
class ReplyEvent:
    task_id: str
    attempt: int
    seq: int
    event: a2a_pb2.StreamResponse
    final: bool = False
    turn: int = 0           # of the task envelope that produced the event
    trace: dict[str, str] = field(default_factory=dict)     # the worker's W3C trace context, if traced

    @property
    def position(self) -> tuple[int, int, int]:
        """Orders a task's events: a later turn's events come after every event of earlier turns,
        whose workers counted attempts and seq from the start again."""
        return (self.turn, self.attempt, self.seq)

    def encode(self) -> bytes:
        doc = {"version": 1, "task_id": self.task_id, "attempt": self.attempt, "seq": self.seq,
               "final": self.final, "event": _event_to_dict(self.event)}
        if self.turn:       # a first turn's event stays what readers without turns accept
            doc["turn"] = self.turn
        if self.trace:
            doc["trace"] = self.trace
        return _dump(doc)

    @classmethod
    def decode(cls, raw: bytes) -> "ReplyEvent":
        doc = _load("reply-event", raw)
        event = plain.event_from_dict(doc["event"])
        if event is None:
            event = _parse("reply-event", doc["event"], a2a_pb2.StreamResponse())
        return cls(doc["task_id"], doc["attempt"], doc["seq"], event, doc.get("final", False), doc.get("turn", 0),
                   doc.get("trace") or {})


@dataclass
class ControlEvent:
    task_id: str
    action: str
    reason: str = ""
    trace: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        doc = {"version": 1, "task_id": self.task_id, "action": self.action, "reason": self.reason}
        if self.trace:
            doc["trace"] = self.trace
        return _dump(doc)

    @classmethod
    def decode(cls, raw: bytes) -> "ControlEvent":
        doc = _load("control-event", raw)
        return cls(doc["task_id"], doc["action"], doc.get("reason", ""), doc.get("trace") or {})
