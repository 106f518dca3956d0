"""Hypothesis strategies for Flower's side: records, messages and contexts built with
Flower's own constructors, so the converters read what a Flower app really makes."""

from __future__ import annotations

from typing import Any

from flwr import app as flwr_app
from flwr.app.message import make_message
from hypothesis import strategies as st

from ..core.strategies import arrays, names
from ..transport.strategies import message_types, uint64, user_configs

_ints = st.integers(-(2**63), 2**63 - 1)
# NaN is left out on this side only because Flower's records compare NaN unequal to itself;
# the Corolla-side round trips carry NaN.
_floats = st.floats(allow_nan=False)

flower_array_records = st.dictionaries(names, arrays(), max_size=4).map(
    lambda d: flwr_app.ArrayRecord({k: flwr_app.Array(v) for k, v in d.items()})
)

flower_metric_values = st.one_of(
    _ints, _floats, st.lists(_ints, max_size=4), st.lists(_floats, max_size=4)
)

flower_metric_records = st.dictionaries(names, flower_metric_values, max_size=4).map(
    flwr_app.MetricRecord
)

_config_scalars = [_ints, _floats, st.booleans(), st.text(max_size=8), st.binary(max_size=8)]

flower_config_values = st.one_of(
    *_config_scalars, *(st.lists(s, max_size=4) for s in _config_scalars)
)

flower_config_records = st.dictionaries(names, flower_config_values, max_size=4).map(
    flwr_app.ConfigRecord
)

flower_record_dicts = st.dictionaries(
    names,
    st.one_of(flower_array_records, flower_metric_records, flower_config_records),
    max_size=4,
).map(flwr_app.RecordDict)

#: Flower's error codes that have a Corolla counterpart of their own (INVALID_FAB, 7, is
#: read as APP_LOAD and goes back as LOAD_CLIENT_APP_EXCEPTION, 1).
flower_error_codes = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 8])

flower_metadata = st.builds(
    flwr_app.Metadata,
    run_id=uint64,
    message_id=st.text(max_size=12),
    src_node_id=uint64,
    dst_node_id=uint64,
    reply_to_message_id=st.text(max_size=12),
    group_id=st.text(max_size=6),
    created_at=st.floats(min_value=0, max_value=4e9),
    ttl=st.floats(min_value=1e-3, max_value=1e9),
    message_type=message_types,
)


@st.composite
def flower_messages(draw: st.DrawFn) -> flwr_app.Message:
    metadata = draw(flower_metadata)
    if draw(st.booleans()):
        return make_message(metadata, content=draw(flower_record_dicts))
    error = flwr_app.Error(draw(flower_error_codes), draw(st.text(max_size=40)))
    return make_message(metadata, error=error)


flower_contexts = st.builds(
    flwr_app.Context,
    run_id=uint64,
    node_id=uint64,
    node_config=user_configs,
    state=flower_record_dicts,
    run_config=user_configs,
)


def metadata_fields(metadata: flwr_app.Metadata) -> dict[str, Any]:
    """The fields of a Flower ``Metadata`` that Corolla carries."""
    return {
        name: getattr(metadata, name)
        for name in (
            "run_id",
            "message_id",
            "src_node_id",
            "dst_node_id",
            "reply_to_message_id",
            "group_id",
            "created_at",
            "ttl",
            "message_type",
        )
    }
