"""App directories: reading [tool.corolla.app], run config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.core._errors import AppLoadError, ConfigError
from corolla.project import (
    AppConfig,
    load_component,
    merge_run_config,
    parse_overrides,
)

PYPROJECT = """
[project]
name = "demo-app"

[tool.corolla.app]
serverapp = "demo_pkg.server:app"
clientapp = "demo_pkg.client:app"

[tool.corolla.app.config]
num-server-rounds = 3
lr = 0.1
optimizer.name = "sgd"

[tool.corolla.app.simulation]
num-nodes = 7
"""


def _app(tmp_path: Path, text: str = PYPROJECT) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_load_reads_components_config_and_simulation_defaults(tmp_path):
    app = AppConfig.load(_app(tmp_path))

    assert app.name == "demo-app"
    assert app.server_ref.reference == "demo_pkg.server:app"
    assert app.server_ref.search_path == str(tmp_path.resolve())
    assert app.config == {"num-server-rounds": 3, "lr": 0.1, "optimizer.name": "sgd"}
    assert app.simulation == {"num-nodes": 7}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[project]\nname='x'\n", "no \\[tool.corolla.app\\] table"),
        ("[tool.corolla.app]\nserverapp='a:b'\n", "clientapp"),
        ("[tool.corolla.app]\nserverapp='ab'\nclientapp='a:b'\n", "serverapp"),
        ("not toml [", "not valid TOML"),
        (
            "[tool.corolla.app]\nserverapp='a:b'\nclientapp='a:b'\n"
            "[tool.corolla.app.config]\nx=[1,2]\n",
            "'x' must be a bool",
        ),
    ],
)
def test_load_rejects_bad_files_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        AppConfig.load(_app(tmp_path, text))


def test_load_of_a_missing_directory_or_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        AppConfig.load(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"pyproject.toml"):
        AppConfig.load(tmp_path)


def test_overrides_are_parsed_as_toml_values_with_string_fallback():
    parsed = parse_overrides(["a=1", "b=0.5", "c=true", 'd="x y"', "e=plain", "f = 2 "])

    assert parsed == {"a": 1, "b": 0.5, "c": True, "d": "x y", "e": "plain", "f": 2}


@pytest.mark.parametrize("item", ["novalue", "=3"])
def test_malformed_override_is_rejected(item):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides([item])


def test_merge_rejects_unknown_keys_but_accepts_seed():
    defaults = {"lr": 0.1}

    assert merge_run_config(defaults, {"lr": 0.2, "seed": 3}) == {"lr": 0.2, "seed": 3}
    with pytest.raises(ConfigError, match=r"unknown run config key.*'lrr'"):
        merge_run_config(defaults, {"lrr": 0.2})


def test_load_component_errors_name_the_problem(tmp_path):
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('bad import')\n")
    (tmp_path / "fine_mod.py").write_text("value = 42\n")

    assert load_component("fine_mod:value", tmp_path) == 42
    with pytest.raises(AppLoadError, match="module:attribute"):
        load_component("fine_mod.value")
    with pytest.raises(AppLoadError, match="RuntimeError: bad import"):
        load_component("broken_mod:app", tmp_path)
    with pytest.raises(AppLoadError, match="no attribute 'missing'"):
        load_component("fine_mod:missing", tmp_path)


def test_federations_are_read_from_the_pyproject(tmp_path):
    text = (
        PYPROJECT
        + '\n[tool.corolla.federations.local]\naddress = "127.0.0.1:9093"\ninsecure = true\n'
    )

    app = AppConfig.load(_app(tmp_path, text))

    assert app.federations == {"local": {"address": "127.0.0.1:9093", "insecure": True}}


def test_federations_must_be_tables(tmp_path):
    text = PYPROJECT + '\n[tool.corolla]\nfederations = "x"\n'

    with pytest.raises(ConfigError, match="federations"):
        AppConfig.load(_app(tmp_path, text))
