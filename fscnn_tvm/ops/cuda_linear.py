"""CUDA linear layers, sparse (CSR) and dense: one thread block per (output feature, image).

The block's ``THREADS`` threads stride over the row's nonzeros (CSR) or its weights (dense) in
steps of ``THREADS``, so consecutive threads read consecutive weights (coalesced), accumulate a
partial sum in a register, and reduce the partial sums in shared memory; thread 0 applies bias,
residual and activation. Written already scheduled, like ``cuda_conv2d.py``.

Arguments: ``data [N, IN]``, CSR: ``indptr [OUT+1] int32, cols [nnz] int32, values [nnz]`` or
dense: ``weight [OUT, IN]``, then ``bias [OUT]``, (``residual [N, OUT]``), ``out [N, OUT]``.
"""
from __future__ import annotations

import tvm

from .activations import ACTIVATION_SCRIPT as _ACT

THREADS = 128


def linear_script(batch: int, in_features: int, out_features: int, sparse: bool, act: str = "none",
                  has_residual: bool = False) -> str:
    res_arg = f'residual: T.Buffer(({batch}, {out_features}), "float32"), ' if has_residual else ""
    res_term = " + residual[b, row]" if has_residual else ""
    value = f"red[0] + bias[row]{res_term}"
    if sparse:
        weight_args = (f'indptr: T.Buffer(({out_features + 1},), "int32"), cols_h: T.handle, '
                       'values_h: T.handle, ')
        matched = ('    nnz = T.int32()\n    cols = T.match_buffer(cols_h, (nnz,), "int32")\n'
                   '    values = T.match_buffer(values_h, (nnz,), "float32")\n')
        at = f"indptr[row] + k * {THREADS} + tx"
        steps = f"(indptr[row + 1] - indptr[row] + {THREADS - 1}) // {THREADS}"
        guard, term = f"{at} < indptr[row + 1]", f"values[{at}] * data[b, cols[{at}]]"
    else:
        weight_args = f'weight: T.Buffer(({out_features}, {in_features}), "float32"), '
        matched = ""
        at = f"k * {THREADS} + tx"
        steps = str(-(-in_features // THREADS))
        guard, term = f"{at} < {in_features}", f"weight[row, {at}] * data[b, {at}]"
    tree = []
    s = THREADS // 2
    while s >= 1:
        tree += [f"                if tx < {s}:",
                 f"                    red[tx] = red[tx] + red[tx + {s}]",
                 '                T.tvm_storage_sync("shared")']
        s //= 2
    tree_text = "\n".join(tree)
    return f"""
# from tvm.script import tirx as T
@T.prim_func
def main(data: T.Buffer(({batch}, {in_features}), "float32"), {weight_args}bias: T.Buffer(({out_features},), "float32"), {res_arg}out: T.Buffer(({batch}, {out_features}), "float32")):
    T.func_attr({{"tirx.noalias": True}})
{matched}    for row in T.thread_binding({out_features}, thread="blockIdx.x"):
        for b in T.thread_binding({batch}, thread="blockIdx.y"):
            for tx in T.thread_binding({THREADS}, thread="threadIdx.x"):
                part = T.alloc_buffer((1,), "float32", scope="local")
                red = T.alloc_buffer(({THREADS},), "float32", scope="shared")
                part[0] = T.float32(0)
                for k in range({steps}):
                    if {guard}:
                        part[0] = part[0] + {term}
                red[tx] = part[0]
                T.tvm_storage_sync("shared")
{tree_text}
                if tx == 0:
                    out[b, row] = {_ACT[act].format(v=value)}
"""


def linear(batch: int, in_features: int, out_features: int, sparse: bool, act: str = "none",
           has_residual: bool = False) -> tvm.tirx.PrimFunc:
    """The CUDA linear PrimFunc (already scheduled)."""
    if act not in _ACT:
        raise ValueError(f"cuda linear: unknown activation {act!r}")
    return tvm.script.from_source(linear_script(batch, in_features, out_features, sparse, act, has_residual))
