"""Privacy: differential privacy with a privacy accountant, and secure aggregation (SecAgg+),
working with the ordinary strategies through the aggregator contract."""

# Differential privacy: central (CentralDP, clipping on the server or the nodes, fixed or
# adaptive), local (LocalDP), the accountant, and the kernels they are built from.
from ._accountant import PrivacyAccountant
from ._aggregate import ClippedSum
from ._central import AdaptiveClipping, CentralDP
from ._clipping import (
    adaptive_clipping_norm,
    add_gaussian_noise,
    clip_update,
    l2_norm,
    noise_share_stddev,
    update_noise_multiplier,
)
from ._mods import CLIPPING_NORM_KEY, UNCLIPPED_KEY, ClippingMod, LocalDP, clipping_mod

# Secure aggregation (SecAgg+).
from ._secagg import SecAggPlus
from ._secagg_mod import secaggplus_mod
from ._secagg_sum import MaskedSum

__all__ = [
    # Differential privacy
    "CLIPPING_NORM_KEY",
    "UNCLIPPED_KEY",
    "AdaptiveClipping",
    "CentralDP",
    "ClippedSum",
    "ClippingMod",
    "LocalDP",
    "PrivacyAccountant",
    "adaptive_clipping_norm",
    "add_gaussian_noise",
    "clip_update",
    "clipping_mod",
    "l2_norm",
    "noise_share_stddev",
    "update_noise_multiplier",
    # Secure aggregation (SecAgg+)
    "MaskedSum",
    "SecAggPlus",
    "secaggplus_mod",
]
