"""Sparse linear layer: CSR weight rows (one per output feature) against a dense input.

``out[n, o] = act(sum_j values[j] * data[n, cols[j]] + bias[o] (+ residual[n, o]))`` for the
nonzeros ``j`` of row ``o``. Arguments in call order: ``data [N, I]``, ``indptr [O+1] int32``,
``cols [nnz] int32``, ``values [nnz]``, ``bias [O]``, (``residual [N, O]``), output ``[N, O]``.
Batch-1 linear layers are bound by weight traffic; CSR reads ``8 * nnz`` bytes of weights and
indices instead of ``4 * O * I``.
"""
from __future__ import annotations

from tvm import te, tirx

from .conv2d import _activation


def sparse_dense(batch: int, in_features: int, out_features: int, *, act: str = "none",
                 has_residual: bool = False):
    """TE tensors; inputs in call order (see the module docstring)."""
    nnz = tirx.Var("nnz", "int32")
    data = te.placeholder((batch, in_features), "float32", name="data")
    indptr = te.placeholder((out_features + 1,), "int32", name="indptr")
    cols = te.placeholder((nnz,), "int32", name="cols")
    values = te.placeholder((nnz,), "float32", name="values")
    bias = te.placeholder((out_features,), "float32", name="bias")
    residual = te.placeholder((batch, out_features), "float32", name="residual") if has_residual else None

    def row(n, o):
        start = indptr[o]
        j = te.reduce_axis((0, indptr[o + 1] - start), name="j")
        return te.sum(values[start + j] * data[n, cols[start + j]], axis=j)

    acc = te.compute((batch, out_features), row, name="spmv")

    def body(n, o):
        v = acc[n, o] + bias[o]
        if residual is not None:
            v = v + residual[n, o]
        return _activation(v, act)

    out = te.compute((batch, out_features), body, name="out")
    inputs = [data, indptr, cols, values, bias] + ([residual] if residual is not None else [])
    return inputs, out
