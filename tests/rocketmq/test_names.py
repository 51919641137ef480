"""Port names -> RocketMQ names, checked before anything is sent (no broker needed)."""

import pytest

from adapters.errors import InvalidRequestError
from adapters.rocketmq import names


def test_lite_group_is_bound_to_its_parent_one_to_one():
    assert names.lite_group("gw", "tb-reply") == "gw|tb-reply"
    # '|' never occurs in port names, so different (group, parent) pairs never collide
    assert names.lite_group("a_b", "c") != names.lite_group("a", "b_c")


def test_lite_group_longer_than_rocketmq_allows_is_refused_with_the_mapped_name():
    with pytest.raises(InvalidRequestError) as err:
        names.lite_group("g" * 60, "p" * 60)
    assert "120" in err.value.reason and "|" in err.value.reason


@pytest.mark.parametrize("value, reason", [
    ("reply.1", "contains '.'"), ("reply/1", "contains '/'"), ("é", "contains 'é'"),
    ("", "must not be empty"), ("r" * 65, "65 bytes long, the limit is 64"),
])
def test_lite_topic_names_follow_rocketmq_rules(value, reason):
    with pytest.raises(InvalidRequestError) as err:
        names.lite_topic(value)
    assert reason in err.value.reason


def test_a_64_byte_lite_topic_and_a_uuid_are_accepted():
    assert names.lite_topic("x" * 64)
    assert names.lite_topic("3f2b8c1e-4a7d-4e6b-9c0a-1d2e3f4a5b6c")


def test_only_dead_letter_topics_may_use_the_system_prefix():
    assert names.topic("%DLQ%workers", system_ok=True) == "%DLQ%workers"
    for bad in ("%DLQ%workers", "%RETRY%workers", "ns%topic"):
        with pytest.raises(InvalidRequestError):
            names.topic(bad)
    with pytest.raises(InvalidRequestError):
        names.topic("%DLQ%bad.group", system_ok=True)


def test_namespaces_wrap_names_like_the_proxy_does():
    assert names.with_namespace("", "cap") == "cap"
    assert names.with_namespace("team1", "cap") == "team1%cap"
    assert names.with_namespace("team1", "%DLQ%workers") == "%DLQ%team1%workers"
    assert names.lmq("team1%tb-reply", "task-1") == "%LMQ%$team1%tb-reply$task-1"


def test_client_ids_follow_the_embedded_engine_rule():
    assert names.client_id("gw-1.host:9@a") == "gw-1.host:9@a"
    with pytest.raises(InvalidRequestError):
        names.client_id("has space")
