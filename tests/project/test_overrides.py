"""Run config overrides: KEY=VALUE pairs, typed by the app's defaults, fractions in 0-1."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import ConfigError
from corolla.project import merge_run_config, parse_overrides

DEFAULTS = {
    "num-server-rounds": 40,
    "learning-rate": 0.5,
    "fraction-train": 0.5,
    "dropout.probability": 0.1,
    "use-bias": True,
    "optimizer": "sgd",
    "tag": "007",
}


def _merged(*items: str) -> dict:
    return merge_run_config(DEFAULTS, parse_overrides(items, DEFAULTS))


def test_flowers_quoted_form_and_separate_items_give_the_same_pairs():
    quoted = parse_overrides(["num-server-rounds=3 learning-rate=0.1"], DEFAULTS)
    separate = parse_overrides(["num-server-rounds=3", "learning-rate=0.1"], DEFAULTS)

    assert quoted == separate == {"num-server-rounds": 3, "learning-rate": 0.1}


def test_quoted_values_keep_their_spaces():
    assert parse_overrides(["optimizer=\"adam w\" tag='x y' use-bias=false"]) == {
        "optimizer": "adam w",
        "tag": "x y",
        "use-bias": False,
    }


def test_values_take_the_type_of_their_default():
    merged = _merged("num-server-rounds=3", "learning-rate=1", "tag=008", "optimizer=adam")

    assert merged["num-server-rounds"] == 3
    assert merged["learning-rate"] == 1.0 and isinstance(merged["learning-rate"], float)
    assert merged["tag"] == "008"  # text as written, not the integer 8
    assert merged["optimizer"] == "adam"


def test_seed_is_always_accepted_and_is_an_integer():
    assert _merged("seed=4")["seed"] == 4
    with pytest.raises(ConfigError, match=r"run config seed wants an integer, got 'x'"):
        _merged("seed=x")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "num-server-rounds=five",
            "run config num-server-rounds wants an integer (its default is 40), got 'five'",
        ),
        (
            "num-server-rounds=2.5",
            "run config num-server-rounds wants an integer (its default is 40), got 2.5",
        ),
        ("num-server-rounds=3.0", "got 3.0: write num-server-rounds=3"),
        ("num-server-rounds=true", "wants an integer (its default is 40), got True"),
        ("learning-rate=fast", "run config learning-rate wants a number (its default is 0.5)"),
        ("use-bias=yes", "run config use-bias wants true or false (its default is true)"),
        ("fraction-train=1.5", "run config fraction-train is a fraction from 0 to 1, got 1.5"),
        ("fraction-train=-0.1", "is a fraction from 0 to 1, got -0.1"),
        ("fraction-train=nan", "is a fraction from 0 to 1, got nan"),
        ("dropout.probability=2", "run config dropout.probability is a fraction from 0 to 1"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_with_what_is_expected(item, message):
    with pytest.raises(ConfigError) as raised:
        _merged(item)

    assert message in str(raised.value)


def test_a_fraction_within_range_and_a_large_non_fraction_pass():
    merged = _merged("fraction-train=1", "learning-rate=5")

    assert merged["fraction-train"] == 1.0 and merged["learning-rate"] == 5.0


def test_the_link_checks_typed_values_the_same_way():
    # The link merges what a client sent as typed values, without text to parse.
    with pytest.raises(ConfigError, match="wants an integer"):
        merge_run_config(DEFAULTS, {"num-server-rounds": 2.5})
    with pytest.raises(ConfigError, match="wants text"):
        merge_run_config(DEFAULTS, {"optimizer": 3})


@pytest.mark.parametrize("item", ["novalue", "=3", "a=1 b", "a=1 =2"])
def test_an_item_that_is_not_pairs_is_refused(item):
    with pytest.raises(ConfigError, match="must look like KEY=VALUE"):
        parse_overrides([item])


def test_an_empty_value_is_empty_text():
    assert parse_overrides(["a="]) == {"a": ""}


def test_a_dotted_key_overrides_a_nested_table_entry_as_in_flower():
    defaults = {"optimizer.name": "sgd", "optimizer.lr": 0.1}

    merged = merge_run_config(
        defaults, parse_overrides(["optimizer.lr=0.5 optimizer.name='adam'"], defaults)
    )

    assert merged == {"optimizer.name": "adam", "optimizer.lr": 0.5}


def test_a_toml_file_of_overrides_is_read_flattened(tmp_path):
    path = tmp_path / "overrides.toml"
    path.write_text("num-server-rounds = 7\n[dropout]\nprobability = 0.2\n")

    merged = merge_run_config(DEFAULTS, parse_overrides([str(path)], DEFAULTS))

    assert merged["num-server-rounds"] == 7 and merged["dropout.probability"] == 0.2


def test_a_missing_toml_file_of_overrides_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"run config file .* does not exist"):
        parse_overrides([str(tmp_path / "nope.toml")])


def test_a_toml_file_with_a_list_value_is_refused(tmp_path):
    path = tmp_path / "overrides.toml"
    path.write_text("lr = [1, 2]\n")

    with pytest.raises(ConfigError, match=r"'lr' must be a bool, int, float or string"):
        parse_overrides([str(path)])


_keys = st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z][a-z0-9-]{0,8})?", fullmatch=True)
_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)


def _toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    return repr(value)


@given(st.dictionaries(_keys, _values, min_size=1, max_size=6))
def test_flowers_one_string_form_gives_back_the_typed_values(pairs):
    defaults = {key: type(value)() for key, value in pairs.items()}
    line = " ".join(f"{key}={_toml_literal(value)}" for key, value in pairs.items())

    merged = merge_run_config(defaults, parse_overrides([line], defaults))

    assert merged == pairs
    assert all(type(merged[key]) is type(value) for key, value in pairs.items())
