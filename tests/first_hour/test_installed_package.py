"""The package as `pip install .`, pipx or a container image installs it (no source tree): a
wheel built from a copy of the sources, installed into a fresh venv, serves from an empty
folder until /readyz answers 200, with the demo agents (package data, not files of the clone)."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tests.spawned import Spawned, clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "gateway", "adapters", "lite_engine", "schemas")


def build_wheel(into: Path) -> Path:
    """A wheel of a copy of the sources, so the build leaves nothing in the checkout."""
    tree = into / "src"
    tree.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", str(tree),
                    "-w", str(into / "dist")], check=True, capture_output=True, timeout=120)
    return next((into / "dist").glob("topicbridge-*.whl"))


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv holding only the wheel; its dependencies come from this interpreter's site-packages,
    added as a plain path (the editable install's finder there is not run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    python = path / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    str(wheel)], check=True, capture_output=True, timeout=120)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (Path(purelib) / "_topicbridge_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    return path / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    return fresh_venv(work / "venv", build_wheel(work))


def test_installed_package_reads_its_schemas_and_demo_agents_from_the_wheel(installed, tmp_path):
    probe = ("import gateway, schemas, gateway.workers.demo as d, gateway.settings as s; "
             "print(gateway.__file__); print(s.load()['backend']); print(len(d.workers(None)))")
    out = subprocess.run([str(installed / "python"), "-c", probe], cwd=tmp_path, env=clean_env(), check=True,
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert "site-packages" in out[0] and not out[0].startswith(str(ROOT))
    assert out[1:] == ["lite", "2"]


def test_installed_topicbridge_serve_from_an_empty_folder_becomes_ready(installed, tmp_path):
    port = free_port()
    served = Spawned([str(installed / "topicbridge"), "serve", "--demo", "--port", str(port)], cwd=tmp_path)
    try:
        served.wait_for("Uvicorn running on", timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            names = {a["name"] for a in client.get("/admin/agents").json()["agents"]}
        assert {"echo", "word-stats"} <= names
        assert (tmp_path / ".data" / "engine").is_dir()     # the default data dir is relative to the folder
    finally:
        served.stop()
