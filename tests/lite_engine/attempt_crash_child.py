"""Child of test_attempts.py. Mode `envelope`: a worker whose message crashes its process. It
opens the engine, first takes whatever its reply channel holds (a lite poll, which does not wait
for its ATTEMPT record), then one message of `tasks` for group `g`, prints `attempt <n>` (or
`dead <body>` when the message has reached the dead-letter topic instead), then SIGKILLs itself
before any ack. Mode `lite`: polls the reply channel `task-1`, prints `attempt <n>`, writes a
table row (a commit), then SIGKILLs itself before any ack."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from lite_engine import Engine, EngineConfig, dead_letter_topic


async def envelope(engine: Engine) -> None:
    await engine.poll("c", wait=0.2)
    got = await engine.receive("tasks", "g", wait=0.2)
    if got:
        print(f"attempt {got[0].attempt}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)     # the message crashes the process, every time
    dead = await engine.receive(dead_letter_topic("g"), "ops", wait=1.0)
    print(f"dead {dead[0].body.decode()}" if dead else "nothing", flush=True)


async def lite(engine: Engine) -> None:
    got = await engine.poll("c", wait=1.0)
    print(f"attempt {got[0].attempt}" if got else "nothing", flush=True)
    await engine.kv_put("tasks", "seen", b"1")   # handling the event commits something
    os.kill(os.getpid(), signal.SIGKILL)


async def main(directory: str, mode: str) -> None:
    engine = await Engine(EngineConfig(data_dir=Path(directory), fsync="batch", max_attempts=3)).start()
    engine.open_client("c", group="gw", topic="replies")
    engine.subscribe("c", ["task-1"])
    await (envelope if mode == "envelope" else lite)(engine)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "envelope"))
