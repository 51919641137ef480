"""Build the topicbridge image from the Dockerfile and run it to /readyz: `python -m bench.image`
(`make image-check`). Prints one JSON object: build time, image size, time from `docker run` to
/readyz 200 and to Docker's own "healthy", the same for a gateway on a separate `topicbridge
engine` container (lite.mode=remote, as deploy/docker-compose.lite.yml runs them), and how long
a SIGTERM stop takes. It also checks what the image promises: not an editable install, a
non-root user, a HEALTHCHECK on /readyz, /data a volume that the embedded engine writes to.

Needs a Docker engine. No registry is needed when a local base exists: `--base` names it, else
topicbridge-base:bookworm (deploy/base_image.sh) is used when present, else python:3.11-slim.
Exit codes: 0 all checks held, 1 a check failed (the JSON says which), 2 no Docker engine.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench._util import emit, progress

ROOT = Path(__file__).resolve().parents[1]
LOCAL_BASE = "topicbridge-base:bookworm"
REGISTRY_BASE = "python:3.11-slim"
TAG = "topicbridge:check"
# uvicorn binds its socket after the application started: this line comes last.
UVICORN_STARTED = "Uvicorn running on"
ENGINE_STARTED = "topicbridge engine listening on"


class DockerError(Exception):
    def __init__(self, args: list[str], code: int, stderr: str) -> None:
        super().__init__(f"docker {' '.join(args[:3])} ... exited {code}: {stderr.strip()[-600:]}")
        self.code = code


class CheckFailed(AssertionError):
    pass


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode:
        raise DockerError(list(args), done.returncode, done.stderr)
    return done.stdout.strip()


def unavailable() -> str | None:
    """Why no Docker engine can be used here, or None."""
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=20, check=False)
    except FileNotFoundError:
        return "no docker command on PATH"
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 20 s"
    if done.returncode or not done.stdout.strip():
        return f"no Docker engine: {done.stderr.strip()[:200]}"
    return None


def image_exists(ref: str) -> bool:
    return not subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False).returncode


def choose_base(requested: str | None) -> str:
    if requested:
        return requested
    return LOCAL_BASE if image_exists(LOCAL_BASE) else REGISTRY_BASE


def build(base: str, tag: str = TAG, *, timeout: float = 1800) -> float:
    started = time.monotonic()
    docker("build", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(ROOT), timeout=timeout)
    return round(time.monotonic() - started, 1)


def promises(tag: str = TAG) -> dict:
    """What the image's configuration says: user, healthcheck, volumes."""
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", tag))
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag))
    health = " ".join((config.get("Healthcheck") or {}).get("Test") or [])
    return {"image_bytes": size, "image_mib": round(size / 2**20, 1), "user": config.get("User"),
            "healthcheck_on_readyz": "/readyz" in health, "volumes": sorted(config.get("Volumes") or {}),
            "entrypoint": config.get("Entrypoint"), "cmd": config.get("Cmd")}


_INSTALLED = ("import json, gateway, importlib.metadata as m; d = m.distribution('topicbridge'); "
              "print(json.dumps({'module': gateway.__file__, 'direct_url': d.read_text('direct_url.json')}))")


def installation(tag: str = TAG) -> dict:
    """Where the package is imported from inside the image, and whether pip installed it editable."""
    found = json.loads(docker("run", "--rm", "--entrypoint", "python3", tag, "-c", _INSTALLED))
    direct = json.loads(found["direct_url"] or "{}")
    return {"module": found["module"], "editable": bool(direct.get("dir_info", {}).get("editable")),
            "in_site_packages": "/site-packages/" in found["module"]}


class Lines:
    """A command's output one line at a time, so a check waits for the line it needs."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.process.stdout:
            for line in self.process.stdout:
                self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise CheckFailed(f"no {text!r} within {timeout} s; output:\n{''.join(self.seen[-30:])}") from None
            if line is None:
                raise CheckFailed(f"output ended before {text!r}:\n{''.join(self.seen[-30:])}")
            self.seen.append(line)
            if text in line:
                return

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)


class Container:
    """`docker run -d` that is removed, with its volumes, when the check ends."""

    def __init__(self, stack: ExitStack, tag: str, *options: str, name: str, command: tuple[str, ...] = ()) -> None:
        self.started = time.monotonic()
        self.id = docker("run", "-d", "--name", name, *options, tag, *command, timeout=120)
        stack.callback(docker, "rm", "-f", "-v", self.id, check=False)
        self.events = Lines(["docker", "events", "--filter", f"container={self.id}", "--filter",
                             "event=health_status", "--format", "{{.Status}}"])
        stack.callback(self.events.close)
        self.logs = Lines(["docker", "logs", "-f", self.id])
        stack.callback(self.logs.close)

    def port(self, inner: int) -> int:
        return int(docker("port", self.id, f"{inner}/tcp").splitlines()[0].rsplit(":", 1)[1])

    def exec(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", self.id, *argv], capture_output=True, text=True, timeout=60, check=False)

    def since_start(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def stop(self) -> dict:
        started = time.monotonic()
        docker("stop", "-t", "20", self.id, timeout=60)
        code = int(docker("inspect", "--format", "{{.State.ExitCode}}", self.id))
        return {"stop_seconds": round(time.monotonic() - started, 2), "exit_code": code}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def until_ready(container: Container, port: int, timeout: float) -> dict:
    """Seconds from `docker run` to /readyz 200, then to Docker's "healthy" (its HEALTHCHECK)."""
    container.logs.wait_for(UVICORN_STARTED, timeout)
    status, body = get(f"http://127.0.0.1:{port}/readyz")
    if status != 200:
        # Started but a part is not ready yet: Docker's healthcheck tells when it is.
        container.events.wait_for("health_status: healthy", timeout)
        status, body = get(f"http://127.0.0.1:{port}/readyz")
    if status != 200:
        raise CheckFailed(f"/readyz answered {status}: {body}")
    ready = container.since_start()
    container.events.wait_for("health_status: healthy", timeout)
    return {"readyz_seconds": ready, "healthy_seconds": container.since_start()}


def embedded(stack: ExitStack, tag: str, token: str, timeout: float) -> dict:
    """The image as documented: `docker run` with a token, the engine embedded, /data a volume."""
    progress("embedded: docker run")
    gateway = Container(stack, tag, "-p", "127.0.0.1::8080", "-e", f"TOPICBRIDGE_GATEWAY__BEARER_TOKENS={token}",
                        name=f"tb-check-embedded-{os.getpid()}")
    result = until_ready(gateway, gateway.port(8080), timeout)
    uid = gateway.exec("id", "-u").stdout.strip()
    data = gateway.exec("ls", "/data/engine").stdout.split()
    return result | {"uid": uid, "engine_files_in_data_volume": len(data)} | gateway.stop()


def remote(stack: ExitStack, tag: str, token: str, timeout: float) -> dict:
    """Gateway and `topicbridge engine` in two containers on one network, as the lite compose file runs them."""
    network = f"tb-check-{os.getpid()}"
    docker("network", "create", network)
    stack.callback(docker, "network", "rm", network, check=False)
    progress("remote: engine container")
    engine = Container(stack, tag, "--network", network, "--network-alias", "engine", name=f"{network}-engine",
                       command=("engine", "--host", "0.0.0.0", "--port", "7600", "--data-dir", "/data/engine"))
    engine.logs.wait_for(ENGINE_STARTED, timeout)
    engine_healthy = engine.exec(*compose_healthcheck("lite", "engine")).returncode == 0
    progress("remote: gateway container")
    gateway = Container(stack, tag, "--network", network, "-p", "127.0.0.1::8080",
                        "-e", f"TOPICBRIDGE_GATEWAY__BEARER_TOKENS={token}", "-e", "TOPICBRIDGE_LITE__MODE=remote",
                        "-e", "TOPICBRIDGE_LITE__TARGET=engine:7600", name=f"{network}-gateway")
    result = until_ready(gateway, gateway.port(8080), timeout)
    return result | {"engine_healthcheck_ok": engine_healthy, "gateway": gateway.stop(), "engine": engine.stop()}


def compose_healthcheck(variant: str, service: str) -> list[str]:
    """The healthcheck command a compose file gives `service`, to run it as Docker would."""
    import yaml
    compose = yaml.safe_load((ROOT / "deploy" / f"docker-compose.{variant}.yml").read_text())
    test = compose["services"][service]["healthcheck"]["test"]
    return test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]


def verdict(result: dict) -> list[str]:
    """The promises that did not hold."""
    failed = []
    if result["install"]["editable"] or not result["install"]["in_site_packages"]:
        failed.append(f"not installed from a wheel: {result['install']}")
    if result["image"]["user"] in (None, "", "root", "0") or result["embedded"]["uid"] == "0":
        failed.append("runs as root")
    if not result["image"]["healthcheck_on_readyz"]:
        failed.append("no HEALTHCHECK on /readyz")
    if "/data" not in result["image"]["volumes"] or not result["embedded"]["engine_files_in_data_volume"]:
        failed.append("the engine does not write to the /data volume")
    if not result["remote"]["engine_healthcheck_ok"]:
        failed.append("the compose file's engine healthcheck fails on a healthy engine")
    for part in (result["embedded"], result["remote"]["gateway"], result["remote"]["engine"]):
        if part["exit_code"] != 0:
            failed.append(f"exit code {part['exit_code']} after SIGTERM")
    return failed


def check(base: str | None = None, *, timeout: float = 120, tag: str = TAG) -> dict:
    base = choose_base(base)
    progress(f"docker build on {base}")
    result: dict = {"base": base, "tag": tag, "build_seconds": build(base, tag)}
    result["image"] = promises(tag)
    result["install"] = installation(tag)
    token = secrets.token_hex(16)
    with ExitStack() as stack:
        result["embedded"] = embedded(stack, tag, token, timeout)
    with ExitStack() as stack:
        result["remote"] = remote(stack, tag, token, timeout)
    result["failed"] = verdict(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help=f"BASE_IMAGE (default: {LOCAL_BASE} if present, else {REGISTRY_BASE})")
    parser.add_argument("--timeout", type=float, default=120, help="seconds for each container to become ready")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason:
        emit({"skipped": reason})
        return 2
    try:
        result = check(args.base, timeout=args.timeout)
    except (DockerError, CheckFailed, subprocess.TimeoutExpired) as e:
        emit({"failed": [str(e)]})
        return 1
    emit(result)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
