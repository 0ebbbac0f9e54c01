"""The CPU legalisations of exp, sigmoid, SiLU and softmax on the vectorisable exp (fast_math.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fscnn_tvm.testing import TOLERANCE, relative_error


class _ExpOps(torch.nn.Module):
    def __init__(self, axis):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return (torch.softmax(x, self.axis) + torch.sigmoid(x) + torch.nn.functional.silu(x) * 0.5
                + torch.exp(x * 0.1))


@pytest.mark.parametrize("axis", [1, -1])
def test_exp_ops_match_torch_with_nan_and_infinities(axis):
    import fscnn_tvm

    model = _ExpOps(axis).eval()
    x = (np.random.default_rng(0).standard_normal((2, 16, 4, 50)) * 5).astype("float32")
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    compiled = fscnn_tvm.compile(model, x.shape)
    out, ref = compiled(x), model(torch.from_numpy(x)).numpy()
    assert (np.isnan(out) == np.isnan(ref)).all() and np.isnan(ref).any()
    finite = np.isfinite(ref)
    assert relative_error(out[finite], ref[finite]) <= TOLERANCE


def test_exp_ops_use_no_scalar_expf():
    """Structural: the compiled CPU code calls no expf (the scalar libm exp)."""
    import tvm

    import fscnn_tvm

    compiled = fscnn_tvm.compile(_ExpOps(1).eval(), (1, 8, 4, 32))
    source = compiled._executable.mod.imports[0].inspect_source("asm") if hasattr(
        compiled._executable, "mod") else ""
    assert source and "expf" not in source, tvm.__version__
