"""Import-time rewrites (canonicalize.py) against torch: ConvTranspose as a 1x1 conv + shuffle."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fscnn_tvm.testing import check_against_torch, randomize_, sparsify_


class Upsample(nn.Module):
    def __init__(self, cin, cout, k, stride, padding=0, bias=True):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, k, stride, padding, bias=bias)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.sigmoid(self.bn(torch.relu(self.up(x))))


@pytest.mark.parametrize("cin, cout, k, hw, batch, sparsity", [
    (24, 1, 2, 10, 1, 0.0), (16, 8, 2, 7, 2, 0.0), (5, 3, 3, 6, 1, 0.0), (32, 16, 2, 9, 1, 0.9)])
def test_conv_transpose_with_stride_equal_to_kernel_becomes_our_conv(cin, cout, k, hw, batch, sparsity):
    model = sparsify_(randomize_(Upsample(cin, cout, k, k)), sparsity)
    compiled = check_against_torch(model, (batch, cin, hw, hw))
    assert [r.kernel_size for r in compiled.plan] == [(1, 1)]  # planned: a 1x1 conv to cout*k*k channels
    assert compiled.plan[0].out_shape[1] == cout * k * k


@pytest.mark.parametrize("k, stride, padding", [(3, 2, 1), (4, 2, 1), (2, 2, 1)])
def test_other_conv_transposes_keep_tvms_lowering(k, stride, padding):
    model = randomize_(Upsample(8, 4, k, stride, padding))
    compiled = check_against_torch(model, (1, 8, 6, 6))
    assert compiled.plan == []
