"""FedAvg (McMahan et al., 2017): the weighted average of the nodes' updated arrays."""

from __future__ import annotations

from ._composed import ComposedStrategy, Setting

__all__ = ["FedAvg"]


class FedAvg(ComposedStrategy):
    """Federated Averaging.

    Each round samples ``fraction_train`` of the available nodes (at least
    ``min_train_nodes``), sends them the global arrays, and replaces the global arrays with
    the average of their updates weighted by ``num-examples``. Replies fold into a
    :class:`WeightedAverage` as they arrive: server memory is O(model).

    Parameters
    ----------
    fraction_train, fraction_evaluate
        Fractions of available nodes sampled for training and for evaluation (0 disables
        federated evaluation).
    min_train_nodes, min_evaluate_nodes
        Lower bounds on the number of nodes sampled.
    min_available_nodes
        Nodes that must be connected before a round starts.
    min_train_replies
        Successful replies needed to update the global arrays; with fewer, the round keeps
        the previous arrays and reports it.
    seed, rng
        Randomness of node sampling: an explicit generator, or a seed for a new one.
    selection
        The node selection policy (uniform by default).
    arrays_key, metrics_key, config_key, weight_key
        Names of the records in messages and replies.
    available_timeout
        Seconds to wait for ``min_available_nodes`` before a round (None: no limit).
    precision
        The accumulators' precision (:class:`WeightedAverage`): ``"float64"`` (default) or
        ``"native"`` (the updates' own dtype: half the memory, about twice the folding
        speed for float32 models, float32 rounding).

    Raises
    ------
    ConfigError
        If a fraction is outside its range or a minimum is negative.
    """

    #: The accumulators' precision.
    precision: Setting[str] = Setting("_training")
