"""The public surface of ``corolla.dashboard`` is exactly the intended names."""

from __future__ import annotations

import corolla.dashboard

PUBLIC = {"Dashboard", "DashboardStatus", "LocalDashboard"}


def test_exports_are_exactly_the_public_names():
    assert set(corolla.dashboard.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(corolla.dashboard, name)
