"""Task ids: random version-4 UUIDs in hex (as uuid.uuid4().hex), drawn in bulk (channels.py)."""

import os
import uuid

from gateway.tasks import channels


def test_task_ids_are_version_4_uuids_in_hex_and_do_not_repeat():
    ids = [channels.new_task_id() for _ in range(3 * channels._IDS_PER_DRAW + 7)]    # across draws
    assert len(set(ids)) == len(ids)
    for task_id in ids:
        parsed = uuid.UUID(hex=task_id)
        assert parsed.hex == task_id and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_hand_out_the_ids_its_parent_drew():
    channels.new_task_id()          # the parent holds a draw with ids left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:        # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "".join(channels.new_task_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode()
    os.close(read)
    os.waitpid(pid, 0)
    theirs = {child[i:i + 32] for i in range(0, len(child), 32)}
    ours = {channels.new_task_id() for _ in range(4)}
    assert len(theirs) == 4 and not theirs & ours


def test_ids_made_on_many_threads_at_once_are_all_different():
    from concurrent.futures import ThreadPoolExecutor

    from gateway.tasks.channels import new_task_id

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [new_task_id() for _ in range(2000)], range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 16000
