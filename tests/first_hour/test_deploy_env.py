"""What `python -m deploy.kafka start` and `deploy.rocketmq start` print: shell lines that point
the gateway at the broker, which the gateway's own settings loader accepts as they are."""

from __future__ import annotations

from deploy.gateway_env import gateway_env
from gateway.settings import load


def environment(lines: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in lines.splitlines() if line.startswith("export "))


def test_the_kafka_lines_set_the_backend_and_its_bootstrap_servers():
    lines = gateway_env("kafka", kafka__bootstrap_servers="127.0.0.1:39092")
    settings = load(env=environment(lines))
    assert settings["backend"] == "kafka" and settings["kafka"]["bootstrap_servers"] == "127.0.0.1:39092"
    assert "# or: topicbridge serve --backend kafka --bootstrap 127.0.0.1:39092" in lines


def test_the_rocketmq_lines_set_the_proxy_and_the_name_server():
    lines = gateway_env("rocketmq", rocketmq__endpoint="127.0.0.1:38081", rocketmq__admin="127.0.0.1:39876")
    settings = load(env=environment(lines))
    assert settings["backend"] == "rocketmq"
    assert (settings["rocketmq"]["endpoint"], settings["rocketmq"]["admin"]) == ("127.0.0.1:38081", "127.0.0.1:39876")
    assert "--endpoint 127.0.0.1:38081 --namesrv 127.0.0.1:39876" in lines
