"""The position kept in a task's own metadata: written as the Struct API writes it, read back."""

import pytest
from a2a.types import a2a_pb2

from gateway.tasks import fold, positions


def stamped_by_the_struct_api(task: a2a_pb2.Task, position: tuple) -> None:
    own = task.metadata.fields[fold.OWN_METADATA]
    if not own.HasField("struct_value"):
        own.struct_value.SetInParent()
    own.struct_value.fields["position"].list_value.Clear()
    own.struct_value.fields["position"].list_value.extend([float(p) for p in position])


def task_with(own: str) -> a2a_pb2.Task:
    task = a2a_pb2.Task(id="t1")
    if own == "bookkeeping":
        task.metadata.fields[fold.OWN_METADATA].struct_value.fields["capability"].string_value = "echo"
    elif own == "a string":
        task.metadata.fields[fold.OWN_METADATA].string_value = "not a struct"
    elif own == "an old position":
        task.metadata.fields[fold.OWN_METADATA].struct_value.fields["position"].string_value = "bad"
    elif own == "a longer position":
        stamped_by_the_struct_api(task, (9, 9, 9, 9))
    return task


@pytest.mark.parametrize("own", ["nothing", "bookkeeping", "a string", "an old position", "a longer position"])
@pytest.mark.parametrize("position", [(0, -1), (0, 0, 0), (3, 2, 10**6), (2**40, 1, 2**53), (), tuple(range(11))])
def test_stamp_writes_what_the_struct_api_writes(own, position):
    ours, theirs = task_with(own), task_with(own)
    positions.stamp(ours, position)
    stamped_by_the_struct_api(theirs, position)
    assert ours == theirs
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def test_a_stamped_position_reads_back_and_a_later_stamp_replaces_it():
    task = task_with("bookkeeping")
    positions.stamp(task, (1, 2, 3))
    positions.stamp(task, (1, 2, 4))
    assert positions.position_of(task) == (1, 2, 4)
    assert task.metadata.fields[fold.OWN_METADATA].struct_value.fields["capability"].string_value == "echo"


def test_a_position_longer_than_its_encoding_holds_is_refused():
    with pytest.raises(ValueError, match="at most 11"):
        positions.stamp(task_with("nothing"), tuple(range(12)))
