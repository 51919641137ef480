"""`topicbridge engine --metrics-port`: the engine's sizes and fsync/snapshot histograms at
/metrics, read with prometheus_client's parser after real work through the gRPC face."""

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from adapters.base import Message, TopicSpec
from adapters.lite_remote import RemoteLiteBackend

from .engine_process import EngineProcess

METRICS_LINE = re.compile(r"metrics on (http://\S+/metrics)")


def scrape(url: str) -> dict:
    text = httpx.get(url, timeout=10).text
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels or "le" not in sample.labels}


async def test_engine_metrics_show_what_was_published_subscribed_and_fsynced(tmp_path):
    engine = EngineProcess(tmp_path / "engine", fsync="always", extra_args=["--metrics-port", "0"])
    backend = RemoteLiteBackend(engine.start())
    try:
        url = METRICS_LINE.search(engine.output).group(1)
        empty = scrape(url)
        await backend.start()
        await backend.create_topic(TopicSpec("jobs"))
        await backend.create_topic(TopicSpec("replies", lite=True))
        for n in range(3):
            await backend.publish("jobs", Message(f"job {n}".encode()))
        consumer = await backend.lite_consumer("replies", "gw", client_id="gw-1")
        await consumer.subscribe(["reply-a", "reply-b"])
        await backend.publish("replies", Message(b"answer"), lite_topic="reply-a")
        after = scrape(url)
        await consumer.close()
    finally:
        await backend.close()
        engine.stop()
    assert after["topicbridge_engine_topics"] >= 2
    assert after["topicbridge_engine_lite_topics"] >= 2
    assert after["topicbridge_engine_subscriptions"] == 2
    assert after["topicbridge_engine_ready_clients"] == 1       # reply-a has a message for gw-1
    assert after["topicbridge_engine_messages_retained"] - empty["topicbridge_engine_messages_retained"] == 4
    assert after["topicbridge_engine_commitlog_bytes"] > empty["topicbridge_engine_commitlog_bytes"]
    assert after["topicbridge_engine_commitlog_segments"] >= 1
    assert after["topicbridge_engine_fsync_seconds_count"] > empty.get("topicbridge_engine_fsync_seconds_count", 0)
    assert "topicbridge_engine_snapshot_seconds_count" in after
    assert after["topicbridge_engine_healthy"] == 1


def test_a_metrics_port_in_use_is_refused_with_a_clear_line(tmp_path):
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        engine = EngineProcess(None, extra_args=["--metrics-port", str(taken.getsockname()[1])])
        try:
            engine.start()
        except RuntimeError:
            pass
        assert "cannot serve metrics on port" in engine.output
        assert engine.process.wait(10) == 1
    finally:
        taken.close()
