"""Hypothesis strategies for messages, on top of the core record strategies."""

from __future__ import annotations

from hypothesis import strategies as st

from corolla.core import Error, Message, Metadata

from ..core.strategies import record_dicts

uint64 = st.integers(0, 2**64 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)

message_types = st.sampled_from(
    ["train", "evaluate", "query", "system", "train.fedprox", "query.stats_v2"]
)

metadata = st.builds(
    Metadata,
    run_id=uint64,
    message_id=st.text(max_size=12),
    src_node_id=uint64,
    dst_node_id=uint64,
    reply_to_message_id=st.text(max_size=12),
    group_id=st.text(max_size=6),
    message_type=message_types,
    ttl=st.floats(min_value=1e-3, max_value=1e9),
    created_at=st.floats(min_value=0, max_value=4e9),
)

errors = st.builds(Error, code=int64, reason=st.text(max_size=40))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    meta = draw(metadata)
    if draw(st.booleans()):
        return Message(draw(record_dicts), metadata=meta)
    return Message(error=draw(errors), metadata=meta)


user_configs = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(st.booleans(), int64, st.floats(), st.text(max_size=8)),
    max_size=5,
)
