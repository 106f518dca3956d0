"""The public surface of ``corolla`` is exactly the intended names."""

from __future__ import annotations

import subprocess
import sys

import corolla


def test_top_level_exports():
    assert sorted(corolla.__all__) == sorted(
        [
            "ArrayRecord",
            "ClientApp",
            "ConfigRecord",
            "Context",
            "CorollaError",
            "Error",
            "FedAvg",
            "Grid",
            "History",
            "Message",
            "MessageType",
            "MetricRecord",
            "RecordDict",
            "ServerApp",
            "Strategy",
            "__version__",
            "run_simulation",
        ]
    )
    for name in corolla.__all__:
        assert hasattr(corolla, name)


def test_importing_corolla_loads_no_optional_dependency():
    code = (
        "import sys, corolla, corolla.data, corolla.frameworks, corolla.simulation; "
        "import corolla.runtime, corolla.telemetry; "
        "print(sorted(m for m in ('torch', 'sklearn', 'ray', 'flwr', 'mlxtend', 'matplotlib', "
        "'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"
