"""Privacy: differential privacy with a privacy accountant, and secure aggregation (SecAgg+),
working with the ordinary strategies through the aggregator contract."""

# Secure aggregation (SecAgg+).
from ._secagg import SecAggPlus
from ._secagg_mod import secaggplus_mod
from ._secagg_sum import MaskedSum

__all__: list[str] = [
    # Secure aggregation (SecAgg+).
    "MaskedSum",
    "SecAggPlus",
    "secaggplus_mod",
]
