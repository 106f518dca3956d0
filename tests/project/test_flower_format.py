"""Flower projects: [tool.flwr.app], its federations, and how AppConfig reads them."""

from __future__ import annotations

import logging
import os
import pickle

import pytest

from corolla.core import ConfigError
from corolla.project import AppConfig, ComponentRef

from .flower_apps import FEDERATIONS, PYPROJECT, write_flower_project

CLIENT_ADAPTER = "corolla.flower:client_app_adapter"
SERVER_ADAPTER = "corolla.flower:server_app_adapter"


def test_a_flower_project_loads_as_a_flower_app(tmp_path):
    root = write_flower_project(tmp_path)

    app = AppConfig.load(root)

    assert app.kind == "flower"
    assert app.name == "myapp" and app.publisher == "alice"
    assert (app.serverapp, app.clientapp) == ("myapp.server_app:app", "myapp.client_app:app")
    assert app.config == {
        "num-server-rounds": 3,
        "fraction-train": 0.5,
        "local-epochs": 1,
        "lr": 0.01,
        "optimizer.name": "sgd",
    }


def test_a_flower_apps_components_load_through_the_flower_adapters(tmp_path):
    app = AppConfig.load(write_flower_project(tmp_path))

    assert app.server_ref == ComponentRef("myapp.server_app:app", str(app.root), SERVER_ADAPTER)
    assert app.client_ref == ComponentRef("myapp.client_app:app", str(app.root), CLIENT_ADAPTER)
    assert pickle.loads(pickle.dumps(app.client_ref)) == app.client_ref


def test_a_corolla_apps_components_take_the_flower_adapters_only_if_flower_made_them(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.corolla.app]\nserverapp = 'a:s'\nclientapp = 'a:c'\n"
    )

    app = AppConfig.load(tmp_path)

    assert app.kind == "corolla" and app.publisher is None
    root = str(app.root)
    assert app.server_ref == ComponentRef("a:s", root, SERVER_ADAPTER, adapter_for="flwr")
    assert app.client_ref == ComponentRef("a:c", root, CLIENT_ADAPTER, adapter_for="flwr")


def test_the_default_local_federation_gives_the_simulation_defaults(tmp_path):
    app = AppConfig.load(write_flower_project(tmp_path))

    assert app.simulation == {"num-nodes": 10}
    assert app.federations == {"remote-federation": {"address": "127.0.0.1:9093", "insecure": True}}


def test_each_local_federation_keeps_its_simulation_settings_by_name(tmp_path):
    text = (
        PYPROJECT
        + FEDERATIONS
        + ("\n[tool.flwr.federations.big-simulation]\noptions.num-supernodes = 40\n")
    )

    app = AppConfig.load(write_flower_project(tmp_path, text))

    assert app.simulation == {"num-nodes": 10}
    assert app.simulations == {
        "local-simulation": {"num-nodes": 10},
        "big-simulation": {"num-nodes": 40},
    }
    assert sorted(app.federations) == ["remote-federation"]


def test_a_bad_option_of_any_local_federation_is_refused_naming_it(tmp_path):
    text = (
        PYPROJECT
        + FEDERATIONS
        + ("\n[tool.flwr.federations.broken]\noptions.num-supernodes = -1\n")
    )

    with pytest.raises(ConfigError, match=r"num-supernodes of federation 'broken'"):
        AppConfig.load(write_flower_project(tmp_path, text))


def test_cpus_per_node_set_how_many_workers_run_at_once(tmp_path):
    text = PYPROJECT + FEDERATIONS.replace(
        "options.num-supernodes = 10",
        "options.num-supernodes = 10\noptions.backend.client-resources.num-cpus = 2",
    )

    app = AppConfig.load(write_flower_project(tmp_path, text))

    assert app.simulation == {"num-nodes": 10, "workers": max(1, (os.cpu_count() or 1) // 2)}


@pytest.mark.parametrize(
    ("option", "level"),
    [
        ("backend.init-args.num-cpus = 2", logging.INFO),
        ("backend.client-resources.num-gpus = 0.0", logging.INFO),
        # Asked for and not given: the user is told at the default level.
        ("backend.client-resources.num-gpus = 0.5", logging.WARNING),
    ],
)
def test_options_that_mean_nothing_to_corolla_are_skipped_with_a_note(
    tmp_path, caplog, option, level
):
    text = PYPROJECT + FEDERATIONS.replace(
        "options.num-supernodes = 10", f"options.num-supernodes = 4\noptions.{option}"
    )

    with caplog.at_level(logging.INFO, logger="corolla.project"):
        app = AppConfig.load(write_flower_project(tmp_path, text))

    assert app.simulation == {"num-nodes": 4}
    [note] = caplog.records
    assert note.levelno == level
    assert option.partition(" ")[0] in note.getMessage() and "skipped" in note.getMessage()


def test_flowers_configuration_file_gives_the_federations_of_a_project_without_them(tmp_path):
    # flwr 1.41 and 1.42 keep SuperLink connections in $FLWR_HOME/config.toml.
    root = write_flower_project(tmp_path, PYPROJECT)
    flower_config = tmp_path / "config.toml"
    flower_config.write_text(
        '[superlink]\ndefault = "local"\n\n'
        '[superlink.local]\naddress = ":local:"\noptions.num-supernodes = 6\n\n'
        '[superlink.hospitals]\naddress = "link.example.org:9093"\n'
    )

    app = AppConfig.load(root, flower_config=flower_config)

    assert app.simulation == {"num-nodes": 6}
    assert app.federations == {"hospitals": {"address": "link.example.org:9093"}}


def test_a_project_without_federations_anywhere_has_none(tmp_path):
    app = AppConfig.load(
        write_flower_project(tmp_path, PYPROJECT), flower_config=tmp_path / "missing.toml"
    )

    assert app.simulation == {} and app.federations == {}


def test_a_file_with_both_tables_is_read_as_a_corolla_app(tmp_path):
    text = PYPROJECT + "\n[tool.corolla.app]\nserverapp = 'c:s'\nclientapp = 'c:c'\n"

    app = AppConfig.load(write_flower_project(tmp_path, text))

    assert app.kind == "corolla" and app.serverapp == "c:s"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("[tool.flwr.app.components]", "[tool.flwr.other]"),
            r"no \[tool.flwr.app.components\] table",
        ),
        (
            lambda t: t.replace('"myapp.client_app:app"', '"myapp.client_app"'),
            "needs clientapp = \"module:attribute\", got 'myapp.client_app'",
        ),
        (
            lambda t: t.replace('serverapp = "myapp.server_app:app"\n', ""),
            'needs serverapp = "module:attribute", got None',
        ),
        (
            lambda t: t + "\n[tool.flwr.app.config.extra]\nlist = [1, 2]\n",
            "'extra.list' must be a bool",
        ),
        (
            lambda t: t + FEDERATIONS.replace('default = "local-simulation"', 'default = "nope"'),
            "default federation 'nope'",
        ),
        (
            lambda t: t + FEDERATIONS.replace("num-supernodes = 10", "num-supernodes = 0"),
            "num-supernodes of federation 'local-simulation' must be a positive integer",
        ),
    ],
)
def test_a_bad_flower_project_is_refused_with_what_is_wrong(tmp_path, edit, message):
    root = write_flower_project(tmp_path, edit(PYPROJECT))

    with pytest.raises(ConfigError, match=message):
        AppConfig.load(root)


def test_a_file_with_neither_table_names_both(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")

    with pytest.raises(ConfigError, match=r"no \[tool.corolla.app\] table.*nor \[tool.flwr.app\]"):
        AppConfig.load(tmp_path)


def test_a_file_that_is_not_a_fab_is_refused(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT)

    with pytest.raises(ConfigError, match=r"give an app directory or a .fab file"):
        AppConfig.load(path)
