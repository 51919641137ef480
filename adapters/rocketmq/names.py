"""How port names become RocketMQ names, checked before anything reaches the broker.

RocketMQ accepts topic and group names of `[%|A-Za-z0-9_-]` (topics up to 127 characters, groups
up to 120) and lite topics of `[A-Za-z0-9_-]`, at most 64 bytes. `%` and `|` have meanings of
their own (namespaces, system topics), so port names use the common part, `[A-Za-z0-9_-]`;
the only system names accepted are dead-letter topics, `%DLQ%<group>`.

Mapping::

    capability topic T, consumer group G   ->  topic T, group G  (dead letters: %DLQ%G)
    lite parent P, lite topic L             ->  topic P (message type LITE), lite topic L
    lite consumer group G on parent P       ->  group "G|P" bound to P (lite.bind.topic=P)
    table N                                 ->  lite topic N under the tables parent

A lite group is bound to one parent in RocketMQ, while the port lets one group name serve several
parents; `|` cannot occur in port names, so the mapping is one-to-one. With a namespace NS every
topic and group name is prefixed the way RocketMQ 4 clients do it ("NS%T", "%DLQ%NS%G"), on the
gRPC requests and in the admin path alike (the 5.5 proxy ignores the namespace fields of the
protocol); lite topic names stay as they are, under their prefixed parent.
"""

from __future__ import annotations

import re

from lite_engine.errors import InvalidNameError
from lite_engine.names import validate_name

from .. import errors

DLQ_PREFIX = "%DLQ%"
MAX_TOPIC = 127
MAX_GROUP = 120
MAX_LITE_BYTES = 64
LITE_GROUP_SEPARATOR = "|"
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _explain(value: str) -> str:
    bad = next((ch for ch in value if _NAME.fullmatch(ch) is None), "")
    return f"contains {bad!r}; RocketMQ allows letters, digits, '_' and '-'"


def check(kind: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise errors.InvalidRequestError(kind, value, f"must be a string, got {type(value).__name__}")
    if not value:
        raise errors.InvalidRequestError(kind, value, "must not be empty")
    if len(value.encode()) > limit:
        raise errors.InvalidRequestError(kind, value, f"is {len(value.encode())} bytes long, the limit is {limit}")
    if _NAME.fullmatch(value) is None:
        raise errors.InvalidRequestError(kind, value, _explain(value))
    return value


def topic(value: object, *, system_ok: bool = False) -> str:
    if system_ok and isinstance(value, str) and value.startswith(DLQ_PREFIX):
        group(value[len(DLQ_PREFIX):])
        return value
    return check("topic", value, MAX_TOPIC)


def group(value: object) -> str:
    return check("group", value, MAX_GROUP)


def lite_topic(value: object) -> str:
    return check("lite topic", value, MAX_LITE_BYTES)


def table(value: object) -> str:
    return check("table", value, MAX_LITE_BYTES)


def client_id(value: object) -> str:
    try:   # the embedded engine's rule: any printable id a gateway or worker may choose
        return validate_name("client id", value)
    except InvalidNameError as exc:
        raise errors.InvalidRequestError("client id", value, exc.reason) from None


def lite_group(group_name: str, parent: str) -> str:
    """The RocketMQ group of port group `group_name` consuming lite parent `parent`."""
    name = f"{group(group_name)}{LITE_GROUP_SEPARATOR}{parent}"
    if len(name) > MAX_GROUP:
        raise errors.InvalidRequestError(
            "group", group_name, f"with parent {parent!r} it maps to RocketMQ group {name!r}, "
                                 f"longer than RocketMQ's {MAX_GROUP} characters")
    return name


def dead_letter_topic(group_name: str) -> str:
    return DLQ_PREFIX + group_name


def is_dead_letter(topic_name: str) -> bool:
    return topic_name.startswith(DLQ_PREFIX)


def with_namespace(namespace: str, name: str) -> str:
    """The full name the broker stores (NamespaceUtil.wrapNamespace)."""
    if not namespace:
        return name
    if name.startswith(DLQ_PREFIX):
        return f"{DLQ_PREFIX}{namespace}%{name[len(DLQ_PREFIX):]}"
    return f"{namespace}%{name}"


def lmq(parent_full: str, lite: str) -> str:
    """The LMQ queue the broker keeps lite topic `lite` of parent `parent_full` in."""
    return f"%LMQ%${parent_full}${lite}"
