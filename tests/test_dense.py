"""Dense linear kernel (ops/dense.py, schedules/x86/dense.py) against torch linear."""
from __future__ import annotations

import pytest
from torch import nn

from fscnn_tvm.testing import randomize_, sparsify_


class MLP(nn.Module):
    def __init__(self, sizes, act=True):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(a, b))
            if act and i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("batch", [1, 4, 5, 9])  # 9: two batch tiles of a chunked weight block
def test_linear_matches_torch(compare, batch):
    compiled = compare(randomize_(MLP([1100, 70, 10])), (batch, 1100))
    assert [r.op for r in compiled.plan] == ["linear", "linear"]
    assert compiled.plan[0].epilogue == "bias+relu"


@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.99])
def test_linear_sparse_weights(compare, sparsity):
    compare(sparsify_(randomize_(MLP([256, 129, 1])), sparsity), (1, 256))


def test_linear_without_bias(compare):
    model = nn.Sequential(nn.Linear(64, 33, bias=False))
    compare(randomize_(model), (2, 64))
