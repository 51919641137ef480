"""The lite subscription quota: a group setting the proxy sends in the settings; the client enforces it."""

import pytest

from adapters.errors import QuotaExceededError
from adapters.rocketmq.protocol import pb

from tests.contract.helpers import lite_parent


async def test_quota_comes_from_the_group_and_is_enforced_by_the_client(open_backend):
    backend = await open_backend(lite_subscription_quota=3)
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    assert consumer.quota == 3                      # lite.sub.client.quota, as the proxy reported it
    await consumer.subscribe(["a", "b", "c"])
    with pytest.raises(QuotaExceededError) as err:
        await consumer.subscribe(["d"])
    assert (err.value.limit, err.value.client_id) == (3, consumer.client_id)
    with pytest.raises(QuotaExceededError):
        await consumer.sync(["a", "b", "c", "d"])
    assert consumer.interest == {"a", "b", "c"}     # a refused change leaves the InterestSet as it was
    await consumer.subscribe(["a"])                 # already there: no change, no error
    await consumer.sync(["c", "d", "e"])
    assert consumer.interest == {"c", "d", "e"}


async def test_the_proxys_own_quota_refusal_is_a_quota_error(open_backend):
    backend = await open_backend(lite_subscription_quota=3)
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    # The proxy only refuses a single request far above the quota (quota + 300): go around the
    # client's own check to see its answer mapped.
    with pytest.raises(QuotaExceededError) as err:
        await consumer._sync(pb.PARTIAL_ADD, {f"t{i}" for i in range(304)})
    assert err.value.limit == 3


async def test_a_full_sync_to_nothing_clears_the_interest_set(backend):
    parent = await lite_parent(backend)
    consumer = await backend.lite_consumer(parent, "gw")
    await consumer.subscribe(["a", "b"])
    await consumer.sync([])
    assert consumer.interest == frozenset()
    await consumer.subscribe(["c"])
    assert consumer.interest == {"c"}
