"""x86 schedule of the dense linear kernel in ``fscnn_tvm/ops/dense.py``.

A tile of up to 4 batch rows x ``out_block`` outputs stays in vector registers while the packed
weight block ``[I, out_block]`` streams through once; output blocks run in parallel.
"""
from __future__ import annotations

from tvm import s_tir, tirx

from fscnn_tvm.kinds import Compute, compute_of

BATCH_TILE = 4
K_CHUNK = 512  # inputs per weight chunk when several batch tiles share it (128 KB at 64 outputs)


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:  # noqa: ARG001
    """Schedule an fscnn dense PrimFunc; ``None`` if ``func`` is not one."""
    if compute_of(func) != Compute.DENSE:
        return None
    sch = s_tir.Schedule(func)
    acc = sch.get_sblock("dense")
    n, b, v, k = sch.get_loops(acc)
    batch = int(sch.get(n).extent)
    no, ni = sch.split(n, [None, min(batch, BATCH_TILE)])
    chunked = batch > BATCH_TILE  # the batch tiles share each chunk of the weight block, from L2
    if chunked:
        ko, k = sch.split(k, [None, K_CHUNK])
        sch.reorder(b, ko, no, k, ni, v)
    else:
        sch.reorder(b, no, k, ni, v)
    sch.vectorize(v)
    sch.unroll(ni)
    sch.parallel(b)
    sch.reverse_compute_at(sch.get_sblock("out"), b if chunked else no)
    sch.set_scope(acc, 0, "global")  # "local" lowers to a heap workspace per block; "global" to stack
    init = sch.decompose_reduction(acc, ko if chunked else k)
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    return sch.mod["main"]
