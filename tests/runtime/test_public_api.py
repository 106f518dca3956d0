"""The public surface of corolla.runtime is exactly what is intended."""

from __future__ import annotations

import corolla.runtime


def test_exported_names() -> None:
    assert set(corolla.runtime.__all__) == {
        "DEFAULT_CONTROL_ADDRESS",
        "DEFAULT_FLEET_ADDRESS",
        "AccountsClient",
        "BundleLimits",
        "Clock",
        "ControlClient",
        "GrpcGrid",
        "Link",
        "LinkLimits",
        "LinkStatus",
        "Login",
        "ManualClock",
        "Node",
        "NodeStatus",
        "SystemClock",
        "install_bundle",
        "make_bundle",
    }
    for name in corolla.runtime.__all__:
        assert getattr(corolla.runtime, name) is not None
