"""`topicbridge engine` run as its own process, for tests that need a real remote engine.

    proc = EngineProcess(tmp_path / "engine", fsync="always", settings={"session_timeout": 0.5})
    target = proc.start()          # "127.0.0.1:PORT" once the engine says it is listening
    ...
    proc.restart()                 # SIGTERM, then start again on the same port and data dir
    proc.stop()                    # SIGTERM; returns the exit status

The child is `sys.executable -m gateway.cli engine` from the repository root, so it runs the
code under test with this interpreter. Its stderr is kept (`output`) for failure messages.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(r"topicbridge engine listening on (\S+):(\d+)$")


class EngineProcess:
    def __init__(self, data_dir: str | os.PathLike | None, fsync: str = "batch", extra_args=(),
                 *, settings: dict | None = None, host: str = "127.0.0.1", start_timeout: float = 15.0) -> None:
        """`settings` are EngineConfig fields, passed as the engine command's flags
        (`session_timeout=0.5` -> `--session-timeout 0.5`); `extra_args` go on the command line as is."""
        self.data_dir = data_dir
        self.fsync = fsync
        self.extra_args = [arg for name, value in (settings or {}).items()
                           for arg in ("--" + name.replace("_", "-"), str(value))] + list(extra_args)
        self.host = host
        self.port = 0                 # 0 until the first start; restarts reuse the bound port
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._listening = False
        self._reader: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def start(self) -> str:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the engine process is already running")
        args = [sys.executable, "-m", "gateway.cli", "engine", "--host", self.host, "--port", str(self.port),
                "--fsync", self.fsync, *self.extra_args]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        self._ready.clear()
        self._listening = False
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()
        self._ready.wait(self.start_timeout)
        if not self._listening:
            self.kill()
            raise RuntimeError(f"the engine did not start within {self.start_timeout} s:\n{self.output}")
        return self.target

    def _read(self, process: subprocess.Popen) -> None:
        with process.stderr:
            for line in process.stderr:
                self._lines.append(line)
                found = _READY.search(line.strip())
                if found:
                    self.port = int(found.group(2))
                    self._listening = True
                    self._ready.set()
        self._ready.set()   # the process ended: start() must not wait any longer

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit status (None if it was not running)."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        return self._end(signal.SIGKILL, 10.0)

    def restart(self) -> str:
        self.stop()
        return self.start()

    def _end(self, sig: int, timeout: float) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"the engine did not stop within {timeout} s:\n{self.output}") from None
        if self._reader is not None:
            self._reader.join(timeout)
        return process.returncode

    def __enter__(self) -> "EngineProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
