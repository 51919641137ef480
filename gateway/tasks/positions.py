"""The position of the last event folded into a task, kept in the task's own bookkeeping
(metadata["topicbridge"]["position"] = [turn, attempt, seq]).

Whoever picks a task up from the index (a restarted owner, an adopter, a re-attaching stream)
skips the channel's events at or before it: they are folded in already."""

from __future__ import annotations

from a2a.types import a2a_pb2

from . import fold


def stamp(task: a2a_pb2.Task, position: tuple) -> None:
    own = task.metadata.fields[fold.OWN_METADATA]
    if not own.HasField("struct_value"):
        own.struct_value.SetInParent()
    own.struct_value.fields["position"].list_value.Clear()
    own.struct_value.fields["position"].list_value.extend([float(p) for p in position])


def position_of(task: a2a_pb2.Task) -> tuple | None:
    value = task.metadata.fields.get(fold.OWN_METADATA)
    if value is None or not value.HasField("struct_value"):
        return None
    found = value.struct_value.fields.get("position")
    if found is None or not found.HasField("list_value") or len(found.list_value.values) != 3:
        return None
    return tuple(int(v.number_value) for v in found.list_value.values)
