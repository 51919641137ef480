"""The position of the last event folded into a task, kept in the task's own bookkeeping
(metadata["topicbridge"]["position"] = [turn, attempt, seq]).

Whoever picks a task up from the index (a restarted owner, an adopter, a re-attaching stream)
skips the channel's events at or before it: they are folded in already."""

from __future__ import annotations

import struct

from a2a.types import a2a_pb2

from . import fold


# The position as a serialized Value: a list_value (field 6) of number_value (field 2) Values.
# One parse into the map entry costs a third of building the list through the Struct API (~10 us),
# once per index write of every task. Its one-byte length holds up to 11 numbers (positions have 2 or 3).
_NUMBER = struct.Struct("<BBBd")
_LIST, _ITEM, _DOUBLE = 6 << 3 | 2, 1 << 3 | 2, 2 << 3 | 1


def stamp(task: a2a_pb2.Task, position: tuple) -> None:
    if len(position) > 11:
        raise ValueError(f"a position has at most 11 numbers: {position!r}")
    items = b"".join([_NUMBER.pack(_ITEM, 9, _DOUBLE, p) for p in position])
    task.metadata.fields[fold.OWN_METADATA].struct_value.fields["position"].ParseFromString(
        bytes((_LIST, len(items))) + items)


def position_of(task: a2a_pb2.Task) -> tuple | None:
    value = task.metadata.fields.get(fold.OWN_METADATA)
    if value is None or not value.HasField("struct_value"):
        return None
    found = value.struct_value.fields.get("position")
    if found is None or not found.HasField("list_value") or len(found.list_value.values) != 3:
        return None
    return tuple(int(v.number_value) for v in found.list_value.values)
