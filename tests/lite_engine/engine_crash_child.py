"""Child of test_engine_crash.py: publishes through the engine and reports each acknowledged
message on stdout (`<topic> <body>`), until it is killed."""

import asyncio
import sys
from pathlib import Path

from lite_engine import Engine, EngineConfig


async def publisher(engine: Engine, run: str, worker: int, lite: bool) -> None:
    n = 0
    while True:
        body = f"{run}w{worker}-{n}"
        if lite:
            await engine.publish("reply", body.encode() * 3, lite=f"task-{worker}")
        else:
            await engine.publish("tasks", body.encode() * 3)
        sys.stdout.write(f"{'reply' if lite else 'tasks'} {body}\n")   # one write: a kill cannot split it
        sys.stdout.flush()
        n += 1


async def main(directory: str, fsync: str, workers: int, run: str) -> None:
    engine = await Engine(EngineConfig(data_dir=Path(directory), fsync=fsync, segment_bytes=256 << 10,
                                       snapshot_every=150)).start()
    print("ready", flush=True)
    await asyncio.gather(*(publisher(engine, run, w, lite=w % 2 == 1) for w in range(workers)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
