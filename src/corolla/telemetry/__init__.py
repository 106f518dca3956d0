"""Telemetry: OpenTelemetry traces of the rounds of a run, across its processes.

:class:`Tracing` makes and exports spans (off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
set; OpenTelemetry, the ``telemetry`` extra, is imported only then); :class:`RoundTraces`
is what a ServerApp's grid records of each round. Above ``core`` only: the simulation and
the runtime build on it.
"""

from ._rounds import RoundTraces
from ._tracing import ENDPOINT_VARIABLES, Tracing

__all__ = ["ENDPOINT_VARIABLES", "RoundTraces", "Tracing"]
