"""The public surface of ``corolla.flower``, and its error when flwr is missing."""

from __future__ import annotations

import subprocess
import sys

import corolla.flower


def test_exports():
    assert sorted(corolla.flower.__all__) == sorted(
        [
            "FROM_FLOWER_CODES",
            "FlowerClient",
            "FlowerGrid",
            "NUMPY_STYPE",
            "TO_FLOWER_CODES",
            "array_from_flower",
            "array_record_from_flower",
            "array_record_to_flower",
            "array_to_flower",
            "client_app_adapter",
            "config_record_from_flower",
            "config_record_to_flower",
            "context_from_flower",
            "context_to_flower",
            "error_from_flower",
            "error_to_flower",
            "message_from_flower",
            "message_to_flower",
            "metric_record_from_flower",
            "metric_record_to_flower",
            "record_dict_from_flower",
            "record_dict_to_flower",
            "server_app_adapter",
        ]
    )
    for name in corolla.flower.__all__:
        assert hasattr(corolla.flower, name)


def test_importing_it_without_flwr_names_the_extra_to_install():
    # Arrange: a fresh interpreter in which flwr cannot be imported
    code = (
        "import sys; sys.modules['flwr'] = None\n"
        "from corolla.core import MissingExtraError\n"
        "try:\n"
        "    import corolla.flower\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.package, exc.extra, exc)\n"
    )

    # Act
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    # Assert
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flwr flower ")
    assert "corolla[flower]" in done.stdout


def test_importing_corolla_does_not_import_flwr():
    # Arrange
    code = "import sys, corolla, corolla.core; print('flwr' in sys.modules)"

    # Act
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    # Assert
    assert done.stdout.strip() == "False", done.stderr
