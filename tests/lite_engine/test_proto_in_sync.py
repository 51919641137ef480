"""The committed generated modules match lite_engine/proto/engine.proto (`make proto` regenerates)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed")
from grpc_tools import grpc_version, protoc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("lite_engine/proto/engine.proto")
GENERATED = ["engine_pb2.py", "engine_pb2.pyi", "engine_pb2_grpc.py"]


def committed_tools_version() -> str:
    text = (ROOT / PROTO.parent / "engine_pb2_grpc.py").read_text()
    return re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", text).group(1)


def test_generated_modules_are_in_sync_with_the_proto(tmp_path):
    if committed_tools_version() != grpc_version.VERSION:
        pytest.skip(f"the committed code comes from grpcio-tools {committed_tools_version()}, "
                    f"this is {grpc_version.VERSION}: output differs by version")
    status = protoc.main(["protoc", f"-I{ROOT}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                          f"--grpc_python_out={tmp_path}", str(ROOT / PROTO)])
    assert status == 0, "protoc failed on the proto"
    for name in GENERATED:
        fresh = (tmp_path / PROTO.parent / name).read_text()
        assert fresh == (ROOT / PROTO.parent / name).read_text(), \
            f"{PROTO.parent / name} is stale: run `make proto` and commit the result"
