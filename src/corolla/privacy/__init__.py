"""Privacy: differential privacy with a privacy accountant, and secure aggregation (SecAgg+),
working with the ordinary strategies through the aggregator contract."""

__all__: list[str] = []
