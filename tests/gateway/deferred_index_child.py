"""Child of test_deferred_index.py: a gateway's task service and a native echo worker on a
durable engine in `data_dir`. Mode `index`: the I/O thread of the engine's log is held (a
fault-injecting job that never ends) from the moment the relay starts the index write of the
turn's end, so that write never reaches the disk. The caller still gets its answer (the index
write is readable at once); the child prints `<task id> <state>` and SIGKILLs itself before
anything more is written. Mode `release`: the log is held from the moment the relay releases the
task's owner row (the index write is durable by then); the child prints once the release has
returned and SIGKILLs itself."""

import asyncio
import os
import signal
import sys
import threading

from a2a.types import a2a_pb2

from adapters.lite import EmbeddedLiteBackend
from adapters.factory import engine_config
from gateway.tasks.service import TaskService
from gateway.workers.worker import Worker

INSTANCE = "gw-deferred"


def hold_the_log(backend: EmbeddedLiteBackend) -> None:
    log = backend.engine._store._log
    never = threading.Event()
    log._io_thread.submit(never.wait, (), lambda *_: None)   # the next batch queues behind it


async def main(data_dir: str, mode: str) -> None:
    backend = EmbeddedLiteBackend(engine_config({"data_dir": data_dir, "fsync": "batch"}))
    await backend.start()

    async def echo(task):
        await task.complete(text=task.text)

    worker = Worker(backend, "echo", echo)
    await worker.start()
    service = TaskService(backend, instance_id=INSTANCE, poll_wait=0.2)
    await service.start()
    index = service._relay.table
    real_put = index.put

    async def held_put(key, value, **kw):
        if kw.get("task") is not None and kw["task"].status.state == a2a_pb2.TASK_STATE_COMPLETED:    # the turn's end, not the submit
            hold_the_log(backend)
        return await real_put(key, value, **kw)

    owners = service._relay.owners
    real_release = owners.release
    released = asyncio.Event()

    async def held_release(task_id):
        hold_the_log(backend)
        await real_release(task_id)
        released.set()

    if mode == "index":
        index.put = held_put
    else:
        owners.release = held_release
    message = a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text="hi")])
    task, watch = await service.submit("echo", message)
    async with asyncio.timeout(20):
        events = [event async for event in watch.events()]
    state = events[-1].task.status.state if events[-1].HasField("task") else events[-1].status_update.status.state
    if mode == "release":
        async with asyncio.timeout(20):
            await released.wait()
    print(task.id, a2a_pb2.TaskState.Name(state), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
