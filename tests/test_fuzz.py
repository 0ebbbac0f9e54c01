"""A fuzz of random graphs against PyTorch: conv (any kernel, stride, padding, dilation, groups),
pools, residual adds, concats and activations, in random orders, shapes and sparsities.

Each seed builds one graph; 48 run in the default suite (about 40 s on 2 cores), 200 more with
``-m slow``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fscnn_tvm
from fscnn_tvm.testing import TOLERANCE, random_input, randomize_, relative_error, sparsify_, torch_reference

ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.Identity, nn.Hardswish, nn.SiLU, nn.Sigmoid]


class Conv(nn.Module):
    def __init__(self, rng, cin: int, size: int):
        super().__init__()
        k = int(rng.choice([1, 3, 5])) if size >= 5 else 1
        stride = int(rng.choice([1, 1, 2])) if size >= 4 else 1
        dilation = 2 if k == 3 and size >= 6 and rng.random() < 0.2 else 1
        pad = int(rng.integers(0, k // 2 * dilation + 1))
        groups = cin if rng.random() < 0.2 else 1
        cout = cin if groups > 1 else int(rng.integers(3, 19))
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, dilation, groups, bias=bool(rng.random() < 0.7))
        self.bn = nn.BatchNorm2d(cout) if rng.random() < 0.4 else nn.Identity()
        self.act = ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]()
        self.cout = cout
        self.size = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    """x + conv(x) with a shape-keeping conv (3x3 pad 1 or 1x1), then an activation."""

    def __init__(self, rng, c: int):
        super().__init__()
        k = int(rng.choice([1, 3]))
        self.conv = nn.Conv2d(c, c, k, padding=k // 2)
        self.act = nn.ReLU() if rng.random() < 0.7 else nn.Identity()

    def forward(self, x):
        return self.act(x + self.conv(x))


class Concat(nn.Module):
    """Two 1x1 branches side by side."""

    def __init__(self, rng, c: int):
        super().__init__()
        self.a = nn.Conv2d(c, int(rng.integers(2, 9)), 1)
        self.b = nn.Conv2d(c, int(rng.integers(2, 9)), 1)
        self.cout = self.a.out_channels + self.b.out_channels

    def forward(self, x):
        return torch.cat([torch.relu(self.a(x)), self.b(x)], dim=1)


class Head(nn.Module):
    def __init__(self, rng, c: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, int(rng.integers(2, 12)))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


def random_graph(seed: int):
    """(model, input shape) of one random graph."""
    rng = np.random.default_rng(seed)
    batch, c, size = int(rng.choice([1, 1, 2])), int(rng.integers(1, 9)), int(rng.integers(5, 19))
    shape = (batch, c, size, size)
    blocks: list[nn.Module] = []
    for _ in range(int(rng.integers(2, 6))):
        pick = rng.random()
        if pick < 0.5 or size < 2:
            block = Conv(rng, c, size)
            c, size = block.cout, block.size
        elif pick < 0.65:
            block = Residual(rng, c)
        elif pick < 0.8:
            block = Concat(rng, c)
            c = block.cout
        else:
            k = 2 if size >= 2 else 1
            block = (nn.MaxPool2d(k) if rng.random() < 0.6 else nn.AvgPool2d(k))
            size = size // k
        blocks.append(block)
        if size < 1:
            break
    if rng.random() < 0.5 and size >= 1:
        blocks.append(Head(rng, c))
    model = randomize_(nn.Sequential(*blocks), seed)
    sparsity = float(rng.choice([0.0, 0.5, 0.8, 0.95, 1.0]))
    return sparsify_(model, sparsity, seed), shape, sparsity


def _check(seed: int) -> None:
    model, shape, sparsity = random_graph(seed)
    sparse = ["auto", "always", "never"][seed % 3]
    compiled = fscnn_tvm.compile(model, shape, sparse=sparse)
    x = random_input(shape, seed)
    expected = torch_reference(model, x)
    actual = compiled(x)
    assert actual.shape == expected.shape
    err = relative_error(actual, expected)
    assert err <= TOLERANCE, f"seed {seed} ({shape}, sparsity {sparsity}, sparse={sparse}): {err:.2e}\n{model}"


@pytest.mark.parametrize("seed", range(48))
def test_random_graph(seed):
    _check(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(48, 248))
def test_random_graph_more(seed):
    _check(seed)
