"""Flower projects written in NumPy, unmodified, under Corolla: the final model Flower's
own simulation gives, from Corolla's simulation (both backends) and from a link with
nodes (see ``corpus``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..runtime.test_e2e import Processes
from .corpus import (
    CORPUS,
    ROOT,
    FlowerModels,
    assert_same_model,
    check_simulated,
    run_deployed,
)

#: Each project, with its federation's number of nodes.
CASES = {
    "flower-numpy": 4,
    "legacy_numpyclient": 3,
    "legacy_clipping": 3,
    "custom_strategy": 5,
}
#: Where each is: the example the docs run, and the test corpus.
PROJECTS = {
    "flower-numpy": ROOT / "examples" / "flower-numpy",
    "legacy_numpyclient": CORPUS / "legacy_numpyclient",
    "legacy_clipping": CORPUS / "legacy_clipping",
    "custom_strategy": CORPUS / "custom_strategy",
}

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["process", "inline"])
@pytest.mark.parametrize("project", sorted(CASES))
def test_a_flower_project_simulated_by_corolla_ends_with_flowers_model(
    project: str, backend: str, tmp_path: Path, flower_models: FlowerModels
) -> None:
    check_simulated(PROJECTS[project], CASES[project], backend, tmp_path, flower_models[project])


@pytest.mark.parametrize("project", sorted(CASES))
def test_a_flower_project_deployed_on_a_link_with_nodes_ends_with_flowers_model(
    project: str,
    processes: Processes,
    tmp_path: Path,
    flower_models: FlowerModels,
) -> None:
    # Act: on a link and the project's number of nodes, each with its partition
    saved = run_deployed(PROJECTS[project], CASES[project], processes, tmp_path)

    # Assert: the ServerApp saved Flower's model where it ran
    assert_same_model(saved, flower_models[project])
