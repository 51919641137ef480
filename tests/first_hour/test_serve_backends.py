"""`topicbridge serve` against backends that are missing, late or not installed: one line per
attempt, then one line and exit 3 (no traceback); a backend that comes up in time is used; a
missing extra names its install command; the backend flags check each other."""

from __future__ import annotations

import sys

import httpx

from tests.spawned import TOPICBRIDGE, Spawned, clean_env, free_port


def serve(*args: str, **settings: str) -> Spawned:
    return Spawned([*TOPICBRIDGE, "serve", *args], env=clean_env(**settings))


def test_serve_with_no_broker_retries_one_line_per_attempt_then_exits_3_without_a_traceback():
    served = serve("--backend", "kafka", "--bootstrap", f"127.0.0.1:{free_port()}", "--port", str(free_port()),
                   gateway__backend_start_timeout="1")
    assert served.exit_code(timeout=60) == 3
    attempts = [line for line in served.output if "not reachable (attempt" in line]
    assert attempts and "retrying in" in attempts[0]
    assert served.output[-1].startswith("topicbridge: backend kafka did not start after")
    assert "Traceback" not in served.text


def test_serve_waits_for_an_engine_that_starts_within_the_start_timeout(tmp_path):
    engine_port, port = free_port(), free_port()
    served = serve("--engine", f"127.0.0.1:{engine_port}", "--port", str(port),
                   gateway__backend_start_timeout="120")
    engine = None
    try:
        served.wait_for("not reachable (attempt 1)", timeout=60)
        engine = Spawned([*TOPICBRIDGE, "engine", "--port", str(engine_port), "--data-dir", str(tmp_path / "e")])
        engine.wait_for("topicbridge engine listening on", timeout=60)
        served.wait_for("Uvicorn running on", timeout=90)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
    finally:
        served.stop()
        if engine is not None:
            engine.stop()


def test_a_backend_whose_extra_is_not_installed_is_one_line_naming_the_install_command():
    hide = "import sys; sys.modules['aiokafka'] = None; from gateway.cli import main; sys.exit(main())"
    served = Spawned([sys.executable, "-c", hide, "serve", "--backend", "kafka", "--port", str(free_port())])
    assert served.exit_code() == 2
    assert served.output == ["topicbridge: the kafka backend needs aiokafka, which is not installed: "
                             "pip install 'topicbridge[kafka]'\n"]


def test_a_broker_flag_for_another_backend_is_refused():
    served = serve("--bootstrap", "127.0.0.1:9092")
    assert served.exit_code() == 2
    assert served.output == ["topicbridge: --bootstrap is for --backend kafka, not lite\n"]

