"""Test-suite settings shared by every test module."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Wall-clock deadlines make property tests flaky on a loaded 2-core CI machine; the
# properties, not the timings, are what the tests check.
settings.register_profile(
    "corolla", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("corolla")
