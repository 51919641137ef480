"""Fast ProtoJSON conversion of the plain A2A documents every task carries.

google.protobuf.json_format converts a small message in 5-15 us of pure Python (and parses a
timestamp with time.strptime); a task's envelope message and its reply events went through it
both ways. The converters here handle the shapes the gateway's own worker and clients produce:
text parts, ids, roles and states, artifact updates, status updates with a message and a
timestamp. For anything else they return None, and the caller falls back to json_format.

Exactness is the contract: whatever a converter accepts, its result equals json_format's
(MessageToDict's dict, with the same key order; the message ParseDict builds, with the same field
presence). tests/gateway/test_plain.py holds them to json_format on generated protos and documents.
Both directions are table driven (the _table calls below); a field outside the tables (metadata,
raw, url and data parts, a Task's metadata, fields a newer a2a adds...) sends the whole message or
document to json_format.
"""

from __future__ import annotations

import datetime
import re

from a2a.types import a2a_pb2

__all__ = ["message_to_dict", "message_from_dict", "event_to_dict", "event_from_dict",
           "timestamp_to_json", "timestamp_from_json"]

# --- timestamps: RFC 3339 as google.protobuf.Timestamp.ToJsonString writes and FromJsonString reads

_SECONDS_MIN, _SECONDS_MAX = -62135596800, 253402300799      # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
_NANOS = 1_000_000_000
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_CACHE_SIZE = 4096
_day_texts: dict[int, str] = {}         # days since the epoch -> "YYYY-MM-DD"
_second_texts: dict[int, str] = {}      # seconds since the epoch -> "YYYY-MM-DDTHH:MM:SS"
_second_values: dict[str, int] = {}     # "YYYY-MM-DDTHH:MM:SS", valid -> seconds since the epoch

# What FromJsonString reads is far looser (one-digit fields, "1e-3" or "1_0" as fractions, Unicode
# digits, "+ 1:5" offsets...); this takes the strict form only and leaves the rest to it.
_TIMESTAMP = re.compile(r"(([0-9]{4}-[0-9]{2}-[0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2}))"
                        r"(?:\.([0-9]{1,9}))?(?:Z|([+-])([0-9]{2}):([0-9]{2}))")


def _cache(cache: dict, key, value):
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _second_text(seconds: int) -> str:
    days, second = divmod(seconds, 86400)
    day = _day_texts.get(days)
    if day is None:
        day = _cache(_day_texts, days, datetime.date.fromordinal(days + _EPOCH_ORDINAL).isoformat())
    return _cache(_second_texts, seconds, "%sT%02d:%02d:%02d" % (day, second // 3600, second // 60 % 60, second % 60))


def timestamp_to_json(seconds: int, nanos: int) -> str | None:
    """Timestamp(seconds=, nanos=).ToJsonString(); None where ToJsonString raises (out of range)."""
    if not (_SECONDS_MIN <= seconds <= _SECONDS_MAX and 0 <= nanos < _NANOS):
        return None
    text = _second_texts.get(seconds) or _second_text(seconds)
    if not nanos:
        return text + "Z"
    if not nanos % 1_000_000:
        return "%s.%03dZ" % (text, nanos // 1_000_000)
    if not nanos % 1000:
        return "%s.%06dZ" % (text, nanos // 1000)
    return "%s.%09dZ" % (text, nanos)


def timestamp_from_json(value) -> tuple[int, int] | None:
    """(seconds, nanos) that Timestamp.FromJsonString(value) sets; None for what this does not read
    (then FromJsonString either reads it or raises)."""
    if type(value) is not str:
        return None
    seconds = _second_values.get(value[:19])
    if seconds is not None:     # a date and time seen before: only "Z" or ".<1-9 digits>Z" can follow
        rest = value[19:]
        if rest == "Z":
            return seconds, 0
        if 3 <= len(rest) <= 11 and rest[0] == "." and rest[-1] == "Z" and rest.isascii() and rest[1:-1].isdigit():
            return seconds, int((rest[1:-1] + "00000000")[:9])
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return None
    text, date, hour, minute, second, fraction, sign, offset_hours, offset_minutes = match.groups()
    seconds = _second_values.get(text)
    if seconds is None:
        days, hour, minute, second = _days(date), int(hour), int(minute), int(second)
        if days is None or hour > 23 or minute > 59 or second > 59:
            return None
        seconds = _cache(_second_values, text, days * 86400 + hour * 3600 + minute * 60 + second)
    if sign is not None:
        offset = (int(offset_hours) * 60 + int(offset_minutes)) * 60
        seconds = seconds - offset if sign == "+" else seconds + offset
        if not _SECONDS_MIN <= seconds <= _SECONDS_MAX:
            return None
    # FromJsonString's round(float("0." + fraction) * 1e9) is exact for up to 9 digits
    return seconds, int((fraction + "00000000")[:9]) if fraction else 0


def _days(date: str) -> int | None:
    year = int(date[:4])
    if year < 1:
        return None
    try:
        return datetime.date(year, int(date[5:7]), int(date[8:])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None


# --- messages

# Field kinds. A table maps a message type's fields to (json name, kind, argument); the reverse
# table maps json names to (attribute name, kind, argument).
_STRING, _BOOL, _ENUM, _MESSAGE, _MESSAGES, _STRINGS, _TIMESTAMP_KIND = range(7)


def _table(descriptor, kinds: dict) -> tuple[dict, dict]:
    to_json, from_json = {}, {}
    for name, (kind, argument) in kinds.items():
        field = descriptor.fields_by_name[name]
        to_json[field] = (field.json_name, kind, argument[0] if kind in (_MESSAGE, _MESSAGES, _ENUM) else argument)
        from_json[field.json_name] = (name, kind, argument[1] if kind in (_MESSAGE, _MESSAGES, _ENUM) else argument)
    oneofs = [descriptor.fields_by_name[name].containing_oneof for name in kinds]
    if len({o.name for o in oneofs if o is not None}) != sum(o is not None for o in oneofs):
        raise ValueError("two members of a oneof would need json_format's 'multiple oneof fields' check")
    return to_json, from_json


def _enum(enum) -> tuple[dict, dict]:
    names = {value.number: value.name for value in enum.DESCRIPTOR.values}
    return names, {name: number for number, name in names.items()}


_ROLE, _STATE = _enum(a2a_pb2.Role), _enum(a2a_pb2.TaskState)
_PART = _table(a2a_pb2.Part.DESCRIPTOR, {"text": (_STRING, None), "filename": (_STRING, None),
                                         "media_type": (_STRING, None)})
_MESSAGE_TABLE = _table(a2a_pb2.Message.DESCRIPTOR, {
    "message_id": (_STRING, None), "context_id": (_STRING, None), "task_id": (_STRING, None),
    "role": (_ENUM, _ROLE), "parts": (_MESSAGES, _PART), "extensions": (_STRINGS, None),
    "reference_task_ids": (_STRINGS, None)})
_ARTIFACT = _table(a2a_pb2.Artifact.DESCRIPTOR, {
    "artifact_id": (_STRING, None), "name": (_STRING, None), "description": (_STRING, None),
    "parts": (_MESSAGES, _PART), "extensions": (_STRINGS, None)})
_STATUS = _table(a2a_pb2.TaskStatus.DESCRIPTOR, {
    "state": (_ENUM, _STATE), "message": (_MESSAGE, _MESSAGE_TABLE), "timestamp": (_TIMESTAMP_KIND, None)})
_STATUS_UPDATE = _table(a2a_pb2.TaskStatusUpdateEvent.DESCRIPTOR, {
    "task_id": (_STRING, None), "context_id": (_STRING, None), "status": (_MESSAGE, _STATUS)})
_ARTIFACT_UPDATE = _table(a2a_pb2.TaskArtifactUpdateEvent.DESCRIPTOR, {
    "task_id": (_STRING, None), "context_id": (_STRING, None), "artifact": (_MESSAGE, _ARTIFACT),
    "append": (_BOOL, None), "last_chunk": (_BOOL, None)})
# a bridge relays an agent's finished task to a blocking caller as one Task event (agent_relay.py)
_TASK = _table(a2a_pb2.Task.DESCRIPTOR, {
    "id": (_STRING, None), "context_id": (_STRING, None), "status": (_MESSAGE, _STATUS),
    "artifacts": (_MESSAGES, _ARTIFACT), "history": (_MESSAGES, _MESSAGE_TABLE)})
_PAYLOADS = {"statusUpdate": ("status_update", _STATUS_UPDATE), "artifactUpdate": ("artifact_update", _ARTIFACT_UPDATE),
             "message": ("message", _MESSAGE_TABLE), "task": ("task", _TASK)}
_PAYLOAD_FIELDS = {a2a_pb2.StreamResponse.DESCRIPTOR.fields_by_name[name]: (json_name, table[0])
                   for json_name, (name, table) in _PAYLOADS.items()}


class _Unplain(Exception):
    """Raised inside a conversion that meets a field or value it does not handle."""


def _to_dict(message, table: dict) -> dict:
    doc = {}
    # ListFields is what MessageToDict walks: the set fields in field-number order (an empty string
    # or False only if the field has presence)
    for field, value in message.ListFields():
        spec = table.get(field)
        if spec is None:
            raise _Unplain
        name, kind, argument = spec
        if kind == _STRING or kind == _BOOL:
            doc[name] = value
        elif kind == _MESSAGES:
            doc[name] = [_to_dict(item, argument) for item in value]
        elif kind == _ENUM:
            value = argument.get(value)
            if value is None:       # an unknown number: json_format writes the int
                raise _Unplain
            doc[name] = value
        elif kind == _MESSAGE:
            doc[name] = _to_dict(value, argument)
        elif kind == _STRINGS:
            doc[name] = list(value)
        else:
            value = timestamp_to_json(value.seconds, value.nanos)
            if value is None:
                raise _Unplain
            doc[name] = value
    return doc


def _fill(message, doc, table: dict) -> None:
    if type(doc) is not dict:
        raise _Unplain
    for name, value in doc.items():
        spec = table.get(name)
        if spec is None:
            raise _Unplain
        attribute, kind, argument = spec
        if kind == _STRING:
            if type(value) is not str:
                raise _Unplain
            setattr(message, attribute, value)  # a surrogate raises UnicodeEncodeError: json_format refuses it too
        elif kind == _MESSAGES:
            if type(value) is not list:
                raise _Unplain
            items = getattr(message, attribute)
            for item in value:
                _fill(items.add(), item, argument)
        elif kind == _ENUM:
            if type(value) is not str or value not in argument:
                raise _Unplain
            setattr(message, attribute, argument[value])
        elif kind == _MESSAGE:
            sub = getattr(message, attribute)
            sub.SetInParent()
            _fill(sub, value, argument)
        elif kind == _BOOL:
            if type(value) is not bool:
                raise _Unplain
            setattr(message, attribute, value)
        elif kind == _STRINGS:
            if type(value) is not list or not all(type(item) is str for item in value):
                raise _Unplain
            getattr(message, attribute).extend(value)
        else:
            parsed = timestamp_from_json(value)
            if parsed is None:
                raise _Unplain
            timestamp = getattr(message, attribute)
            timestamp.seconds, timestamp.nanos = parsed


def message_to_dict(message: a2a_pb2.Message) -> dict | None:
    """json_format.MessageToDict(message), or None."""
    try:
        return _to_dict(message, _MESSAGE_TABLE[0])
    except _Unplain:
        return None


def message_from_dict(doc) -> a2a_pb2.Message | None:
    """json_format.ParseDict(doc, a2a_pb2.Message()), or None."""
    message = a2a_pb2.Message()
    try:
        _fill(message, doc, _MESSAGE_TABLE[1])
    except (_Unplain, ValueError):
        return None
    return message


def event_to_dict(event: a2a_pb2.StreamResponse) -> dict | None:
    """json_format.MessageToDict(event) of a StreamResponse, or None."""
    fields = event.ListFields()
    if len(fields) != 1:        # no payload
        return None
    field, value = fields[0]
    spec = _PAYLOAD_FIELDS.get(field)
    if spec is None:
        return None
    try:
        return {spec[0]: _to_dict(value, spec[1])}
    except _Unplain:
        return None


def event_from_dict(doc) -> a2a_pb2.StreamResponse | None:
    """json_format.ParseDict(doc, a2a_pb2.StreamResponse()), or None."""
    if type(doc) is not dict or len(doc) != 1:
        return None
    (name, value), = doc.items()
    spec = _PAYLOADS.get(name)
    if spec is None:
        return None
    event = a2a_pb2.StreamResponse()
    payload = getattr(event, spec[0])
    payload.SetInParent()
    try:
        _fill(payload, value, spec[1][1])
    except (_Unplain, ValueError):
        return None
    return event
