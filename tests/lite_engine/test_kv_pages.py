"""A table's pages against a plain sorted list of its keys, for any mix of puts, deletes and
page requests (the keys are held in a SortedList: this holds its order and bounds)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from lite_engine.kv import Table

KEYS = st.text(alphabet="ab/c", min_size=1, max_size=4)
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), KEYS),
    st.tuples(st.just("remove"), KEYS),
    st.tuples(st.just("page"), st.text(alphabet="ab/c", max_size=2), st.text(alphabet="ab/c", max_size=4),
              st.integers(min_value=0, max_value=6)),
), max_size=60)


def reference_page(keys: set[str], prefix: str, after: str, limit: int) -> list[str]:
    return [k for k in sorted(keys) if k.startswith(prefix) and (k > after if after >= prefix else True)][:limit]


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_pages_match_a_plain_sorted_list(ops):
    table, keys = Table(), set()
    for op in ops:
        if op[0] == "set":
            table.set(op[1], op[1].encode(), 1)
            keys.add(op[1])
        elif op[0] == "remove":
            assert table.remove(op[1]) == (op[1] in keys)
            keys.discard(op[1])
        else:
            _, prefix, after, limit = op
            page = table.page(prefix, after, limit)
            assert [k for k, _ in page] == reference_page(keys, prefix, after, limit)
            assert all(v == k.encode() for k, v in page)
    assert list(table.keys) == sorted(keys)
