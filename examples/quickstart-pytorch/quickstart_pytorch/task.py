"""The model, the data and the training loop: plain PyTorch, nothing federated here."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corolla.data import Dataset, dirichlet_partition, load_digits

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)


class Net(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool and two linear layers for 8x8 grey images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


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
    """Non-IID split of the training data: class proportions ~ Dirichlet(alpha) per node.

    Every node computes the same split from the same seed, so partitions never overlap.
    """
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
    x = torch.from_numpy(data.x_train[index].reshape(-1, *IMAGE_SHAPE))
    y = torch.from_numpy(data.y_train[index])
    return x[num_val:], y[num_val:], x[:num_val], y[:num_val]


def test_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test set, which no node trains on."""
    data = dataset(seed)
    return torch.from_numpy(data.x_test.reshape(-1, *IMAGE_SHAPE)), torch.from_numpy(data.y_test)


def train(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    generator: torch.Generator,
) -> float:
    """Mini-batch Adam on the cross-entropy; returns the mean training loss.

    The optimizer starts afresh each round; only the weights travel.
    """
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    total, count = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
    return total / count if count else 0.0


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` on ``(x, y)``."""
    net.eval()
    logits = net(x)
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy
