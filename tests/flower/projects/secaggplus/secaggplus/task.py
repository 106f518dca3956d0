"""The model and each node's update: a step toward the node's own target.

Pure NumPy, so that the plain (unmasked) FedAvg of these updates can be computed apart
from any federation.
"""

import numpy as np

SHAPES = [(4, 3), (3,)]
#: How far a node's update moves the model toward its target.
STEP = 0.8


def initial_model() -> list[np.ndarray]:
    return [np.zeros(shape) for shape in SHAPES]


def target(partition_id: int) -> list[np.ndarray]:
    """The partition's target, within [-2, 2]: far inside SecAgg+'s clipping range."""
    rng = np.random.default_rng(500 + partition_id)
    return [rng.uniform(-2.0, 2.0, size=shape) for shape in SHAPES]


def num_examples(partition_id: int) -> int:
    return 40 + 25 * partition_id


def update(model: list[np.ndarray], partition_id: int) -> list[np.ndarray]:
    return [m + STEP * (t - m) for m, t in zip(model, target(partition_id))]
