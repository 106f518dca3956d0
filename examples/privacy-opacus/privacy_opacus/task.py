"""The model, the data and DP-SGD: plain PyTorch and Opacus, nothing federated here."""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from corolla.data import Dataset, dirichlet_partition, load_digits

NUM_FEATURES = 64
NUM_CLASSES = 10


class Net(nn.Module):
    """A two-layer perceptron for 8x8 grey images (layers Opacus computes per-example
    gradients of)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(NUM_FEATURES, 32)
        self.fc2 = nn.Linear(32, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def new_model(seed: int) -> Net:
    """A model whose initial weights depend on ``seed`` only (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Net()


def torch_seed(*parts: int) -> int:
    """One seed mixed from several integers (run seed, partition, round)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


@functools.lru_cache(maxsize=2)
def dataset(seed: int) -> Dataset:
    """Digits, split 80/20 into train and held-out test data (loaded once per process)."""
    return load_digits(test_fraction=0.2, seed=seed)


@functools.lru_cache(maxsize=2)
def partitions(num_partitions: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Non-IID split of the training data: class proportions ~ Dirichlet(alpha) per node."""
    labels = dataset(seed).y_train
    return dirichlet_partition(labels, num_partitions, alpha, np.random.default_rng(seed))


def load_partition(
    partition_id: int, num_partitions: int, alpha: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A node's data as ``(x_train, y_train, x_val, y_val)``: 80/20 of its partition."""
    data = dataset(seed)
    index = partitions(num_partitions, alpha, seed)[partition_id]
    index = np.random.default_rng([seed, partition_id]).permutation(index)
    num_val = max(1, len(index) // 5)
    x = torch.from_numpy(data.x_train[index].reshape(-1, NUM_FEATURES))
    y = torch.from_numpy(data.y_train[index])
    return x[num_val:], y[num_val:], x[:num_val], y[:num_val]


def test_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test set, which no node trains on."""
    data = dataset(seed)
    return torch.from_numpy(data.x_test.reshape(-1, NUM_FEATURES)), torch.from_numpy(data.y_test)


def train_private(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    noise_multiplier: float,
    max_grad_norm: float,
    history: str,
    generator: torch.Generator,
) -> tuple[float, str]:
    """DP-SGD with Opacus: Poisson-sampled batches, per-example gradients clipped to
    ``max_grad_norm``, Gaussian noise on their sum. ``history`` is the node's accountant
    history of earlier rounds (JSON); returns the mean training loss and the history
    with this round's steps added.
    """
    net.train()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, generator=generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate)
    total, count = 0.0, 0
    with warnings.catch_warnings():
        # Opacus warns that its noise is not from a cryptographically secure generator
        # (this example seeds it, so that runs are reproducible; production sets
        # secure_mode=True), and PyTorch that the inputs need no gradient.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        engine = PrivacyEngine(accountant="rdp")
        engine.accountant.history = [tuple(step) for step in json.loads(history)]
        module, optimizer, loader = engine.make_private(
            module=net,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            noise_generator=generator,
        )
        for _ in range(epochs):
            for xb, yb in loader:
                if len(yb) == 0:  # Poisson sampling may draw an empty batch
                    continue
                optimizer.zero_grad()
                loss = F.cross_entropy(module(xb), yb)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(yb)
                count += len(yb)
    return (total / count if count else 0.0), json.dumps(engine.accountant.history)


def node_epsilon(history: str, delta: float) -> float:
    """The epsilon the node's data has spent over every round so far, at ``delta``."""
    accountant = RDPAccountant()
    accountant.history = [tuple(step) for step in json.loads(history)]
    return float(accountant.get_epsilon(delta)) if accountant.history else 0.0


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` on ``(x, y)``."""
    net.eval()
    logits = net(x)
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy
