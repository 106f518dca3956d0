"""Strategies: federated algorithms built on mergeable aggregators, each assembled from parts
(node sampling, a training part with its aggregator, an optional server optimizer).

Mergeable (O(model) server memory): FedAvg, FedAvgM, FedProx, FedAdagrad, FedAdam, FedYogi,
QFedAvg, Scaffold. Robust, keeping every update (O(n x model)): FedMedian, FedTrimmedAvg,
Krum, MultiKrum, Bulyan.
"""

from ._fedavg import FedAvg
from ._fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi
from ._fedprox import (
    PROXIMAL_MU_KEY,
    FedProx,
    proximal_gradient,
    proximal_term,
    torch_proximal_term,
)
from ._metrics import WeightedMetrics
from ._policies import (
    AttributeLookup,
    AttributeSelection,
    NodeDirectory,
    RecentlySeenSelection,
    WeightedSelection,
    attribute_weight,
)
from ._qfedavg import QFedAvg, QFedAvgAggregator
from ._replies import ArraySpec, array_spec, check_layout, reply_arrays
from ._robust import AllUpdates, Bulyan, FedMedian, FedTrimmedAvg, Krum, MultiKrum
from ._scaffold import (
    CONTROL_DELTA_KEY,
    CONTROL_KEY,
    Scaffold,
    ScaffoldAggregator,
    corrected_gradient,
    load_control,
    store_control,
    update_control,
)
from ._selection import SelectionPolicy, UniformSelection, sample_size
from ._strategy import EvaluateFn, RoundPlan, StopRun, Strategy, WrappedStrategy
from ._weighted import WeightedAverage

__all__ = [
    "CONTROL_DELTA_KEY",
    "CONTROL_KEY",
    "PROXIMAL_MU_KEY",
    "AllUpdates",
    "ArraySpec",
    "AttributeLookup",
    "AttributeSelection",
    "Bulyan",
    "EvaluateFn",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "NodeDirectory",
    "QFedAvg",
    "QFedAvgAggregator",
    "RecentlySeenSelection",
    "RoundPlan",
    "Scaffold",
    "ScaffoldAggregator",
    "SelectionPolicy",
    "StopRun",
    "Strategy",
    "UniformSelection",
    "WeightedAverage",
    "WeightedMetrics",
    "WeightedSelection",
    "WrappedStrategy",
    "array_spec",
    "attribute_weight",
    "check_layout",
    "corrected_gradient",
    "load_control",
    "proximal_gradient",
    "proximal_term",
    "reply_arrays",
    "sample_size",
    "store_control",
    "torch_proximal_term",
    "update_control",
]
