"""Sparse linear layer: CSR weight rows (one per output feature) against a dense input.

``out[n, o] = act(sum_j values[j] * data[n, cols[j]] + bias[o] (+ residual[n, o]))`` over the
nonzeros ``j`` of row ``o``. Arguments in call order: ``data [N, I]``, ``indptr [O+1] int32``,
``cols [nnz] int32``, ``values [nnz]``, ``bias [O]``, (``residual [N, O]``), output ``[N, O]``.

Batch-1 linear layers are bound by weight traffic: CSR streams ``8 * nnz`` bytes instead of
``4 * O * I``. The row's nonzeros are consumed ``lanes`` at a time into a vector of partial sums
(one gather of the input per step), so no FMA latency chain limits it; the vector is summed once
per row. Written as plain TIR (no blocks): it is scheduled by construction.
"""
from __future__ import annotations

import tvm

from .activations import ACTIVATION_SCRIPT as _ACT


def sparse_dense_script(batch: int, in_features: int, out_features: int, lanes: int,
                        act: str = "none", has_residual: bool = False) -> str:
    n, i, o, vl = batch, in_features, out_features, lanes
    res_arg = f'residual: T.Buffer(({n}, {o}), "float32"), ' if has_residual else ""
    # Scalars are written out inline: a named scalar (``x: T.int32 = ...``) and a "local" buffer
    # both lower to a heap workspace allocated per row here, which cost ~130 ns a row.
    b, row = f"(br // {o})", f"(br % {o})"
    start, count = f"indptr[{row}]", f"(indptr[{row} + 1] - indptr[{row}])"
    full = f"({count} // {vl} * {vl})"
    res_term = f" + residual[{b}, {row}]" if has_residual else ""
    result = _ACT[act].format(v=f"total[0]{res_term}")
    return f"""
# from tvm.script import tirx as T
@T.prim_func
def main(data: T.Buffer(({n}, {i}), "float32"), indptr: T.Buffer(({o + 1},), "int32"), cols_h: T.handle, values_h: T.handle, bias: T.Buffer(({o},), "float32"), {res_arg}out: T.Buffer(({n}, {o}), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    nnz = T.int32()
    cols = T.match_buffer(cols_h, (nnz,), "int32")
    values = T.match_buffer(values_h, (nnz,), "float32")
    for br in T.parallel({n * o}):
        acc = T.decl_buffer(({vl},), "float32", scope="global")
        total = T.decl_buffer((1,), "float32", scope="global")
        for v in T.vectorized({vl}):
            acc[v] = T.float32(0)
        for c in range({count} // {vl}):
            for v in T.vectorized({vl}):
                acc[v] = acc[v] + values[{start} + c * {vl} + v] * data[{b}, cols[{start} + c * {vl} + v]]
        for t in range({count} - {full}):
            acc[t] = acc[t] + values[{start} + {full} + t] * data[{b}, cols[{start} + {full} + t]]
        total[0] = bias[{row}]
        for v in range({vl}):
            total[0] = total[0] + acc[v]
        out[{b}, {row}] = {result}
"""


def sparse_dense(batch: int, in_features: int, out_features: int, lanes: int, act: str = "none",
                 has_residual: bool = False) -> tvm.tirx.PrimFunc:
    """The CSR linear PrimFunc (already scheduled: plain TIR with explicit vector loops)."""
    if act not in _ACT:
        raise ValueError(f"sparse_dense: unknown activation {act!r}")
    if min(batch, in_features, out_features) < 1:
        raise ValueError(f"sparse_dense: empty shape batch={batch}, in={in_features}, out={out_features}")
    return tvm.script.from_source(sparse_dense_script(batch, in_features, out_features, lanes, act,
                                                      has_residual))
