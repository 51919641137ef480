"""Child of test_attempts.py: a worker whose message crashes its process. It opens the engine,
takes one message of `tasks` for group `g`, prints `attempt <n>` (or `dead <body>` when the
message has reached the dead-letter topic instead), then SIGKILLs itself before any ack."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from lite_engine import Engine, EngineConfig, dead_letter_topic


async def main(directory: str) -> None:
    engine = await Engine(EngineConfig(data_dir=Path(directory), fsync="batch", max_attempts=3)).start()
    got = await engine.receive("tasks", "g", wait=0.2)
    if got:
        print(f"attempt {got[0].attempt}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)     # the message crashes the process, every time
    dead = await engine.receive(dead_letter_topic("g"), "ops", wait=1.0)
    print(f"dead {dead[0].body.decode()}" if dead else "nothing", flush=True)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
