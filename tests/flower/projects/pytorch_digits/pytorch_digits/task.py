"""pytorch-digits: the model, the data and the training loop."""

import numpy as np
import torch
from torch import nn

#: The digits are shuffled once, with this seed, then split among the partitions.
DATA_SEED = 42


class Net(nn.Module):
    """A small MLP: 8x8 images, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def initial_model(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def load_data(partition_id: int, num_partitions: int):
    """The partition's training and test sets: its share of the digits, 80/20."""
    # Imported where the data is loaded: the ServerApp, which needs only the model, is
    # spared scikit-learn's import (seconds).
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(DATA_SEED).permutation(len(digits.target))
    part = np.array_split(order, num_partitions)[partition_id]
    x = torch.tensor(digits.data[part] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[part], dtype=torch.int64)
    split = int(0.8 * len(part))
    return (x[:split], y[:split]), (x[split:], y[split:])


def train(net: Net, data, epochs: int, batch_size: int, lr: float) -> float:
    """Mini-batch SGD over the data in its order; the mean loss of the last epoch.

    The steps are taken by hand: the first use of ``torch.optim`` imports TorchDynamo,
    seconds in every process that trains.
    """
    # One thread: the same sums in the same order on every machine.
    torch.set_num_threads(1)
    x, y = data
    net.train()
    total = 0.0
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            net.zero_grad()
            loss = nn.functional.cross_entropy(net(xb), yb)
            loss.backward()
            with torch.no_grad():
                for parameter in net.parameters():
                    parameter -= lr * parameter.grad
            total += loss.item() * len(yb)
    return total / len(y)


def test(net: Net, data) -> tuple[float, float]:
    """Loss and accuracy on the data."""
    torch.set_num_threads(1)
    x, y = data
    net.eval()
    with torch.no_grad():
        logits = net(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy
