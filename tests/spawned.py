"""A command run as a user runs it: a real subprocess whose output is read line by line, so a
test waits for the line that says something happened instead of sleeping."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPICBRIDGE = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**settings: str) -> dict:
    """This environment without TOPICBRIDGE_* variables, plus `settings` (key: lite__mode -> TOPICBRIDGE_LITE__MODE)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICBRIDGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env | {f"TOPICBRIDGE_{key.upper()}": value for key, value in settings.items()}


class Spawned:
    """`argv` in `cwd`; stdout and stderr together, one line at a time."""

    def __init__(self, argv: list[str], *, cwd: Path = ROOT, env: dict | None = None, stdin=subprocess.DEVNULL) -> None:
        self.process = subprocess.Popen(argv, cwd=cwd, env=env or clean_env(), stdin=stdin,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The first next line containing `text`."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.text}") from None
            if line is None:
                raise AssertionError(f"ended (exit {self.process.wait()}) before {text!r}:\n{self.text}")
            self.output.append(line)
            if text in line:
                return line

    def exit_code(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.output.append(line)
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def spawn_serve(*args: str, env: dict | None = None) -> Spawned:
    """`topicbridge serve *args` from the repository root."""
    return Spawned([*TOPICBRIDGE, "serve", *args], env=env)
