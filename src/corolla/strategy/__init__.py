"""Strategies: federated algorithms built on mergeable aggregators."""

from ._fedavg import FedAvg
from ._selection import SelectionPolicy, UniformSelection, sample_size
from ._strategy import EvaluateFn, Result, RoundPlan, Strategy
from ._weighted import ArraySpec, WeightedAverage, array_spec

__all__ = [
    "ArraySpec",
    "EvaluateFn",
    "FedAvg",
    "Result",
    "RoundPlan",
    "SelectionPolicy",
    "Strategy",
    "UniformSelection",
    "WeightedAverage",
    "array_spec",
    "sample_size",
]
