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
    its ``PROJECTS``: those the module's selected tests name as their ``project``, or
    all of them."""
    cases, projects = request.module.CASES, request.module.PROJECTS
    named = {
        item.callspec.params.get("project")
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    wanted = [name for name in cases if name in named] or list(cases)
    return FlowerModels(tmp_path_factory, {name: (projects[name], cases[name]) for name in wanted})
