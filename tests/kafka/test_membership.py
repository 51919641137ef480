"""The lite group leader's decision (pure: no broker) and its wire format."""

from adapters.kafka.membership import Holds, assign_holds, decode_holds, decode_interest, encode_holds, encode_interest


def test_a_member_alone_is_sole_and_need_not_send_its_interest():
    assert assign_holds({"m1": None}) == {"m1": Holds(sole=True, members=1)}


def test_a_shared_group_first_asks_every_member_for_its_interest():
    decided = assign_holds({"m1": None, "m2": {1: False}})
    assert all(h.resend and not h.digests for h in decided.values())


def test_each_topic_goes_to_one_subscriber_and_stays_with_its_holder():
    decided = assign_holds({"m1": {10: True, 11: False}, "m2": {10: False, 11: False, 12: False}})
    assert decided["m1"].digests == {10}          # held before: kept, although m2 wants it too
    assert decided["m2"].digests == {11, 12}      # 11: nobody held it, m2 held fewer


def test_new_topics_go_to_the_member_holding_fewest():
    decided = assign_holds({"a": {1: True, 2: True, 5: False}, "b": {5: False}})
    assert decided["b"].digests == {5}


def test_interest_and_holds_survive_their_encoding():
    interest = {2**64 - 1: True, 7: False}
    assert decode_interest(encode_interest(interest)) == interest
    assert decode_interest(encode_interest(None)) is None
    holds = Holds(members=3, digests=frozenset({1, 2**63}))
    assert decode_holds(encode_holds(holds)) == Holds(members=3, digests=frozenset({1, 2**63}), settled=True)

