"""Logging of `serve` (gateway/observability/logs.py over lite_engine/logsetup.py): text with timestamps or
JSON with the task fields, one INFO line per ended task, and a broker outage that costs a bounded
number of lines (a real engine process, stopped under a running gateway)."""

import asyncio
import io
import json
import logging
import re

import pytest

from gateway.observability import logs
from gateway.app import Gateway
from gateway.workers.worker import Worker
from lite_engine.logsetup import RepeatFilter, configure
from tests.lite_engine.engine_process import EngineProcess

from .serving import running_gateway

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def captured():
    """The topicbridge handler writing into a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


async def echo(task) -> None:
    await task.artifact(f"echo: {task.text}")
    await task.complete()


def send(text: str) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}]}}}


async def run_one_task(settings: dict) -> str:
    async with running_gateway(settings) as gw:
        card = {"name": "Logged", "description": "Echoes."}
        await gw.gateway.add_part(Worker(gw.gateway.backend, "logged", echo, card=card))
        answer = await gw.http.post("/agents/logged/", json=send("hi"), headers={"A2A-Version": "1.0"})
        task = answer.json()["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        return task["id"]


SETTINGS = {"backend": "lite", "lite": {"data_dir": None, "tick": 0.005}, "gateway": {"instance_id": "gw-logs"}}


async def test_a_task_that_ends_is_one_json_line_with_its_fields(captured):
    options = logs.configure(SETTINGS, fmt="json", stream=captured)
    assert options == {"log_config": None, "access_log": False}
    task_id = await run_one_task(SETTINGS)
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    ended = [line for line in lines if line.get("task_id") == task_id and line.get("state")]
    assert len(ended) == 1, lines
    line = ended[0]
    assert line["level"] == "INFO" and line["logger"] == "topicbridge.tasks"
    assert (line["capability"], line["state"], line["instance"], line["backend"]) == \
        ("logged", "completed", "gw-logs", "lite")
    assert line["duration"] >= 0 and line["time"]


async def test_text_lines_carry_a_timestamp_the_logger_and_the_task_fields(captured):
    logs.configure(SETTINGS, stream=captured)
    task_id = await run_one_task(SETTINGS)
    ended = [line for line in captured.getvalue().splitlines() if f"task_id={task_id}" in line]
    assert len(ended) == 1
    assert TIMESTAMP.match(ended[0]) and " INFO topicbridge.tasks: " in ended[0]
    assert "capability=logged" in ended[0] and "state=completed" in ended[0]


def test_a_bad_level_or_format_is_refused_naming_the_value():
    with pytest.raises(ValueError, match="'loud'"):
        configure("loud")
    with pytest.raises(ValueError, match="'xml'"):
        configure("info", "xml")


def test_a_repeated_warning_is_written_once_per_window_with_the_count_left_out():
    now = [0.0]
    repeat = RepeatFilter(window=10, clock=lambda: now[0])
    log = logging.getLogger("test.repeat")

    def record(reason: str) -> logging.LogRecord:
        return log.makeRecord(log.name, logging.WARNING, __file__, 1, "poll failed (%s)", (reason,), None)

    passed = []
    for second in range(60):        # one failure a second for a minute
        now[0] = float(second)
        r = record(f"attempt {second}")
        if repeat.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 6
    assert passed[0] == "poll failed (attempt 0)"
    assert passed[1] == "poll failed (attempt 10) (and 9 more like it in the last 10s)"
    info = log.makeRecord(log.name, logging.INFO, __file__, 1, "poll failed (%s)", ("x",), None)
    assert repeat.filter(info)       # below WARNING nothing is held back


def test_the_access_log_is_off_or_sampled_by_setting():
    assert logs.configure({"observability": {"access_log": 0}}, stream=io.StringIO())["access_log"] is False
    assert logs.configure({"observability": {"access_log": 1}}, stream=io.StringIO())["access_log"] is True
    sampled = iter([0.05, 0.5, 0.09, 0.99])
    sample = logs.Sample(0.1, rng=lambda: next(sampled))
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "GET /", (), None)
    assert [sample.filter(record) for _ in range(4)] == [True, False, True, False]
    logging.getLogger("uvicorn.access").filters.clear()


OUTAGE_SECONDS = 3.0        # with a 0.5 s window: six windows, as a 60 s outage has with the default 10 s


async def test_a_broker_outage_costs_a_bounded_number_of_lines(tmp_path, captured):
    engine = EngineProcess(tmp_path / "engine", fsync="never")
    settings = {"backend": "lite", "lite": {"mode": "remote", "target": engine.start()},
                "gateway": {"instance_id": "gw-outage"}, "observability": {"repeat_window_seconds": 0.5}}
    logs.configure(settings, stream=captured)
    repeat = next(f for h in logging.getLogger().handlers if h.get_name() == "topicbridge"
                  for f in h.filters if isinstance(f, RepeatFilter))
    gateway = Gateway(settings)
    await gateway.start()
    try:
        before = len(captured.getvalue().splitlines())
        engine.kill()
        # sleep-ok: the outage's length is what is measured; the gateway keeps retrying meanwhile
        await asyncio.sleep(OUTAGE_SECONDS)
        lines = captured.getvalue().splitlines()[before:]
    finally:
        engine.kill()
        async with asyncio.timeout(30):
            await gateway.close()
    records = [line for line in lines if TIMESTAMP.match(line)]
    warnings = [line for line in records if " WARNING " in line or " ERROR " in line]
    print(f"outage of {OUTAGE_SECONDS}s (window 0.5 s): {len(lines)} lines ({len(records)} records) written, "
          f"{repeat.suppressed} repeats left out")
    assert warnings, "the outage was not reported at all"
    # per distinct message one record per window (and the first one's traceback): bounded, not a flood
    templates = {re.sub(r"\d+", "N", line.split(": ", 1)[-1])[:40] for line in warnings}
    assert len(records) <= (OUTAGE_SECONDS / 0.5 + 2) * len(templates)
    assert len(lines) <= len(records) + 60 * len(templates)


@pytest.mark.parametrize("var, value", [("TOPICBRIDGE_OBSERVABILITY__LOG_FORMAT", "xml"),
                                        ("TOPICBRIDGE_OBSERVABILITY__LOG_LEVEL", "loud"),
                                        ("TOPICBRIDGE_OBSERVABILITY__ACCESS_LOG", "2"),
                                        ("TOPICBRIDGE_OBSERVABILITY__REPEAT_WINDOW_SECONDS", "0")])
def test_bad_observability_settings_are_refused_naming_the_key(var, value):
    from gateway.settings import ConfigError, load
    with pytest.raises(ConfigError) as err:
        load(env={var: value})
    assert var.removeprefix("TOPICBRIDGE_").lower().replace("__", ".") in str(err.value)
