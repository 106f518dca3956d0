"""Fixtures of the Flower tests: child processes always stopped (the end-to-end tests'),
and Flower's own final model of each project a corpus module lists."""

from __future__ import annotations

import pytest

from ..runtime.test_e2e import processes
from .corpus import FlowerModels

__all__ = ["flower_models", "processes"]


@pytest.fixture(scope="module")
def flower_models(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> FlowerModels:
    """Flower's runs of the module's ``CASES`` (project name: number of nodes), found at
    its ``PROJECTS``."""
    cases, projects = request.module.CASES, request.module.PROJECTS
    return FlowerModels(tmp_path_factory, {name: (projects[name], cases[name]) for name in cases})
