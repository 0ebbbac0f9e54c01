"""Sparse linear layer: CSR weight rows (one per output feature) against a dense input.

``out[n, o] = act(sum_j values[j] * data[n, cols[j]] + bias[o] (+ residual[n, o]))`` over the
nonzeros ``j`` of row ``o``. Arguments in call order: ``data [N, I]``, ``indptr [O+1] int32``,
``cols [nnz]`` (:func:`index_dtype`), ``values [nnz]``, ``bias [O]``, (``residual [N, O]``),
output ``[N, O]``.

A linear layer's weights are read once per call, so they are what it streams (from DRAM where
they outgrow the last-level cache). Each row's nonzeros are read once for the whole batch:

- the batch is staged transposed (``[I, N]``, the images of one input feature contiguous), so a
  nonzero is one broadcast value times one contiguous vector of ``N`` images (up to ``lanes``
  per tile), no gather;
- :data:`UNROLL` nonzeros at a time into as many independent accumulators (no FMA latency chain);
  at batch 1 they are scalars: a vector gather per ``lanes`` nonzeros measured slower than
  scalar loads (9216x4096 at 75%: 4.70 against 3.66 ms, RESULTS.md);
- column indices are 16-bit where the layer has at most 65536 inputs: 6 bytes per nonzero
  streamed instead of 8.

Written as plain TIR (no blocks): it is scheduled by construction.
"""
from __future__ import annotations

import tvm

from .activations import ACTIVATION_SCRIPT as _ACT

UNROLL = 8  # nonzeros per step: independent accumulators (2 FMA pipes x 4 cycles)


def index_dtype(in_features: int) -> str:
    """The column index type of a CSR linear weight: ``uint16`` where it can hold every column."""
    return "uint16" if in_features <= 1 << 16 else "int32"


def batch_tile(batch: int, lanes: int) -> int:
    """Images per accumulator vector: the batch, split into near-equal tiles of at most ``lanes``."""
    tiles = -(-batch // lanes)
    return -(-batch // tiles)


def sparse_dense_script(batch: int, in_features: int, out_features: int, lanes: int,
                        act: str = "none", has_residual: bool = False) -> str:
    n, i, o = batch, in_features, out_features
    idx = index_dtype(i)
    nb = batch_tile(n, lanes)
    res_arg = f'residual: T.Buffer(({n}, {o}), "float32"), ' if has_residual else ""
    # Scalars are written out inline: a named scalar (``x: T.int32 = ...``) and a "local" buffer
    # both lower to a heap workspace allocated per row here, which cost ~130 ns a row.
    start, count = "indptr[r]", "(indptr[r + 1] - indptr[r])"
    full = f"({count} // {UNROLL} * {UNROLL})"

    def col(j: str) -> str:
        return f"T.Cast('int32', cols[{j}])" if idx != "int32" else f"cols[{j}]"

    # x[c, b]: image b of input feature c. Batch 1 reads the input as it is.
    staged = n > 1
    x = (lambda c, b: f"xt[{c}, {b}]") if staged else (lambda c, b: f"data[{b}, {c}]")
    stage = f"""
    xt = T.decl_buffer(({i}, {n}), "float32", scope="global")
    for c, b in T.grid({i}, {n}):
        xt[c, b] = data[b, c]""" if staged else ""

    def tile(width: int, first: str) -> str:
        """One row for images ``first .. first + width``, in UNROLL accumulators of width lanes."""
        loop = "T.vectorized" if width > 1 else "range"
        b = f"{first} + v"
        j = f"{start} + s * {UNROLL} + u"
        tail = f"{start} + {full} + e"
        res_term = f" + residual[{b}, r]" if has_residual else ""
        result = _ACT[act].format(v=f"total[v]{res_term}")
        return f"""
            acc = T.decl_buffer(({UNROLL}, {width}), "float32", scope="global")
            total = T.decl_buffer(({width},), "float32", scope="global")
            for u in T.unroll({UNROLL}):
                for v in {loop}({width}):
                    acc[u, v] = T.float32(0)
            for s in range({count} // {UNROLL}):
                for u in T.unroll({UNROLL}):
                    for v in {loop}({width}):
                        acc[u, v] = acc[u, v] + values[{j}] * {x(col(j), b)}
            for e in range({count} - {full}):
                for v in {loop}({width}):
                    acc[0, v] = acc[0, v] + values[{tail}] * {x(col(tail), b)}
            for v in {loop}({width}):
                total[v] = bias[r]
            for u in T.unroll({UNROLL}):
                for v in {loop}({width}):
                    total[v] = total[v] + acc[u, v]
            for v in range({width}):
                out[{b}, r] = {result}"""

    tiles = f"""
        for t in range({n // nb}):""" + tile(nb, f"t * {nb}")
    if n % nb:
        tiles += """
        for t in range(1):""" + tile(n % nb, str(n // nb * nb))
    return f"""
# from tvm.script import tirx as T
@T.prim_func
def main(data: T.Buffer(({n}, {i}), "float32"), indptr: T.Buffer(({o + 1},), "int32"), cols_h: T.handle, values_h: T.handle, bias: T.Buffer(({o},), "float32"), {res_arg}out: T.Buffer(({n}, {o}), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    nnz = T.int32()
    cols = T.match_buffer(cols_h, (nnz,), "{idx}")
    values = T.match_buffer(values_h, (nnz,), "float32"){stage}
    for r in T.parallel({o}):{tiles}
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
