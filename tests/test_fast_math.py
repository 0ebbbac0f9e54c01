"""Float32 exp lowered to the vectorisable polynomial in every CPU build (fast_math.py): the ops
TVM lowers itself (softmax, sigmoid, SiLU, exp) keep torch's numbers and NaN/inf semantics."""
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


def test_vector_exp_is_scoped_to_our_builds():
    """TVM's own lowering (scalar expf per lane) outside fast_math.compile, ours inside."""
    import tvm
    from tvm import te, tirx

    from fscnn_tvm import fast_math

    a = te.placeholder((256,), "float32", name="a")
    b = te.compute((256,), lambda i: tirx.sigmoid(a[i]), name="b")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    _, inner = sch.split(sch.get_loops(sch.get_sblock("b"))[0], [None, 16])
    sch.vectorize(inner)
    target = tvm.target.Target({"kind": "llvm"})
    assert "expf" in tvm.compile(sch.mod, target).mod.inspect_source("asm")
    lib = fast_math.compile(sch.mod, target)
    assert "expf" not in lib.mod.inspect_source("asm")
    x = np.linspace(-30, 30, 256, dtype="float32")
    out = tvm.runtime.tensor(np.zeros(256, "float32"))
    lib(tvm.runtime.tensor(x), out)
    np.testing.assert_allclose(out.numpy(), 1 / (1 + np.exp(-x.astype("float64"))), rtol=1e-6, atol=1e-12)
