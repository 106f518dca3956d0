"""FedProx (Li et al., 2020): FedAvg plus a proximal term in each node's local objective.

The server side is FedAvg's parts with ``proximal-mu`` added to every train config. Nodes add
``mu / 2 * |w - w_global|^2`` to their loss; the helpers here compute that term (and its
gradient ``mu * (w - w_global)``) for NumPy training loops, and the term as a differentiable
tensor for PyTorch ones (torch, the extra ``torch``, is imported only when that helper is
called). Note Flower's FedProx example adds the unsquared norm; this is the paper's term.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..core import ConfigError, MissingExtraError
from ._composed import ComposedStrategy

__all__ = [
    "PROXIMAL_MU_KEY",
    "FedProx",
    "proximal_gradient",
    "proximal_term",
    "torch_proximal_term",
]

#: The train-config entry that carries mu to the nodes (Flower's name).
PROXIMAL_MU_KEY = "proximal-mu"


class FedProx(ComposedStrategy):
    """FedAvg that sends ``proximal-mu`` to training nodes; aggregation is FedAvg's.

    Parameters
    ----------
    proximal_mu
        Weight of the proximal term; 0 makes the nodes' objective FedAvg's.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``proximal_mu`` is negative or not finite.
    """

    def __init__(self, *, proximal_mu: float = 0.0, **options: Any) -> None:
        if not 0.0 <= proximal_mu < float("inf"):
            raise ConfigError(f"proximal_mu must be a finite number >= 0, got {proximal_mu}")
        super().__init__(**options)
        self._train_settings = {PROXIMAL_MU_KEY: proximal_mu}

    @property
    def proximal_mu(self) -> float:
        """The weight of the proximal term, sent to training nodes as ``proximal-mu``."""
        return float(self._train_settings[PROXIMAL_MU_KEY])


def _pairs(
    arrays: Mapping[str, np.ndarray[Any, Any]], global_arrays: Mapping[str, np.ndarray[Any, Any]]
) -> Iterable[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    if list(arrays) != list(global_arrays):
        raise ConfigError(
            f"local arrays {list(arrays)} do not match the global arrays {list(global_arrays)}"
        )
    for name, a in arrays.items():
        g = global_arrays[name]
        if np.shape(a) != np.shape(g):
            raise ConfigError(f"array {name!r} has shape {np.shape(a)}, global {np.shape(g)}")
        yield name, np.asarray(a), np.asarray(g)


def proximal_term(
    arrays: Mapping[str, np.ndarray[Any, Any]],
    global_arrays: Mapping[str, np.ndarray[Any, Any]],
    mu: float,
) -> float:
    """``mu / 2 * |w - w_global|^2`` over all arrays, in float64.

    Raises
    ------
    ConfigError
        If the two sets of arrays differ in names or shapes.
    """
    total = 0.0
    for _, a, g in _pairs(arrays, global_arrays):
        diff = a.astype(np.float64) - g
        total += float(np.vdot(diff, diff).real)
    return 0.5 * mu * total


def proximal_gradient(
    arrays: Mapping[str, np.ndarray[Any, Any]],
    global_arrays: Mapping[str, np.ndarray[Any, Any]],
    mu: float,
) -> dict[str, np.ndarray[Any, Any]]:
    """The gradient of :func:`proximal_term`: ``mu * (w - w_global)``, per array, in each
    local array's dtype; add it to the loss gradient before the optimizer step.

    Raises
    ------
    ConfigError
        If the two sets of arrays differ in names or shapes.
    """
    return {
        name: (mu * (a - g.astype(a.dtype, copy=False))).astype(a.dtype, copy=False)
        for name, a, g in _pairs(arrays, global_arrays)
    }


def torch_proximal_term(params: Iterable[Any], global_params: Iterable[Any], mu: float) -> Any:
    """``mu / 2 * sum |p - p_global|^2`` as a differentiable torch scalar.

    ``params`` are the model's parameters (e.g. ``model.parameters()``), ``global_params``
    the global ones in the same order: tensors (detached here) or NumPy arrays. Add the
    result to the loss before ``backward()``.

    Raises
    ------
    MissingExtraError
        If torch is not installed (extra ``torch``).
    ConfigError
        If the two sequences differ in length or shapes.
    """
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("torch", "torch") from exc
    local = list(params)
    reference = list(global_params)
    if len(local) != len(reference):
        raise ConfigError(f"{len(local)} parameters but {len(reference)} global ones")
    total = torch.zeros((), dtype=torch.float32)
    for p, g in zip(local, reference):
        g_tensor = torch.as_tensor(g).detach().to(device=p.device, dtype=p.dtype)
        if g_tensor.shape != p.shape:
            raise ConfigError(f"parameter of shape {tuple(p.shape)}, global {tuple(g.shape)}")
        total = total.to(p.device) + torch.sum((p - g_tensor) ** 2)
    return (mu / 2.0) * total
