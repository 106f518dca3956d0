"""Test-suite settings shared by every test module."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# Wall-clock deadlines make property tests flaky on a loaded 2-core CI machine; the
# properties, not the timings, are what the tests check.
settings.register_profile(
    "corolla", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("corolla")

#: Test modules of a quarter of a minute and more on two cores (``--durations=0``),
#: longest first. They are collected before the rest, so that ``pytest -n 2 --dist
#: loadfile`` hands them out first and the workers finish together, rather than one
#: running a long module alone at the end.
SLOW_MODULES = (
    "tests/test_docs.py",
    "tests/flower/test_projects_ml.py",
    "tests/flower/test_projects.py",
    "tests/cli/test_main.py",
    "tests/reproductions/test_fashion_mnist_shards.py",
    "tests/runtime/link/test_fuzz.py",
    "tests/cli/test_accounts.py",
    "tests/strategy/flower/test_differential.py",
    "tests/strategy/test_aggregator_conformance.py",
    "tests/dashboard/test_browser.py",
    "tests/frameworks/test_examples.py",
    "tests/runtime/test_e2e.py",
    "tests/flower/test_secaggplus.py",
    "tests/runtime/link/test_accounts.py",
    "tests/cli/test_new.py",
    "tests/cli/test_hardened_deployment.py",
    "tests/strategy/test_weighted.py",
    "tests/flower/test_deploy.py",
    "tests/runtime/test_tracking.py",
    "tests/runtime/test_bad_input.py",
    "tests/execution/test_process.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: index for index, module in enumerate(SLOW_MODULES)}
    root = config.rootpath

    def order(item: pytest.Item) -> int:
        try:
            module = item.path.relative_to(root).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(module, len(rank))

    items.sort(key=order)  # stable: each module's tests keep their order
