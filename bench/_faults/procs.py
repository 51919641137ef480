"""Real processes a fault can kill: `topicbridge serve`, `topicbridge engine`, and the peers of
bench/_faults/agents.py. Each starts on a free port (kept across restarts, as is its data
directory), says when it is ready, and ends with the signal a kind asks for."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """One child process whose merged output is read line by line; `start()` returns once a line
    matches `ready` (a regex), and the match."""

    def __init__(self, args: list[str], ready: str, *, env: dict | None = None, name: str = "") -> None:
        self.args = args
        self.ready = re.compile(ready)
        self.env = env
        self.name = name or args[2]
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 180.0) -> re.Match:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICBRIDGE_")}
        env |= {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)} | (self.env or {})
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"{self.name} not ready within {timeout} s:\n{self.tail()}") from None
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.process.wait()}) before it was ready:\n{self.tail()}")
            found = self.ready.search(line)
            if found:
                return found

    def _read(self, process: subprocess.Popen, lines: queue.Queue) -> None:
        with process.stdout:
            for line in process.stdout:
                self.output.append(line)
                del self.output[:-400]          # bounded: a soak runs for hours
                lines.put(line)
        lines.put(None)

    def tail(self, n: int = 40) -> str:
        return "".join(self.output[-n:])

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int, timeout: float = 20.0) -> int | None:
        """Send `sig` and wait for the exit (SIGKILL after `timeout`); the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> int | None:
        return self.signal(signal.SIGKILL)

    def term(self) -> int | None:
        return self.signal(signal.SIGTERM)


def engine_proc(data_dir: Path | None, port: int, **settings) -> Proc:
    args = [sys.executable, "-m", "gateway.cli", "engine", "--port", str(port), "--fsync", "batch"]
    args += ["--data-dir", str(data_dir)] if data_dir else []
    for name, value in settings.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return Proc(args, r"topicbridge engine listening on", name="engine")


def gateway_proc(port: int, data_dir: Path | None, *, engine: str | None = None, demo: bool = True,
                 env: dict | None = None) -> Proc:
    """`topicbridge serve` on the embedded engine in `data_dir`, or on the remote `engine`."""
    args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    args += ["--demo"] if demo else []
    args += ["--data-dir", str(data_dir)] if data_dir and not engine else []
    settings = {"TOPICBRIDGE_LITE__MODE": "remote", "TOPICBRIDGE_LITE__TARGET": engine} if engine else {}
    return Proc(args, r"Uvicorn running on", env=settings | (env or {}), name="gateway")


def agent_proc(mode: str, delay: float = 1.0) -> Proc:
    return Proc([sys.executable, "-m", "bench._faults.agents", "a2a", "--mode", mode, "--delay", str(delay)],
                r"^READY (.*)$", name=f"agent-{mode}")


def worker_proc(target: str, capability: str, delay: float, invisible: float = 2.0) -> Proc:
    return Proc([sys.executable, "-m", "bench._faults.agents", "worker", "--target", target,
                 "--capability", capability, "--delay", str(delay), "--invisible", str(invisible)],
                r"^READY (.*)$", name=f"worker-{capability}")
