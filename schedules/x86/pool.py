"""x86 schedule of the NaN-keeping max-pool (``fscnn_tvm/nan_safe.legalize_max_pool2d``).

The padded input is stored de-interleaved by column phase, so a vector of consecutive outputs of
a row reads consecutive addresses for every window tap: per (image, channel, output row), in
parallel, the row is swept in steps of up to 4 vectors of outputs with the window taps unrolled.
The padding copy is scheduled as the conv kernels' (``conv2d.schedule_pad``).
(ResNet-50's 3x3/2 pool at 112x112: 1.0 ms scalar before.)
"""
from __future__ import annotations

from tvm import s_tir, tirx

from fscnn_tvm.kinds import Compute, compute_of

from .conv2d import schedule_pad


def row_vector(width: int, lanes: int) -> int:
    """Outputs per vectorised step: the widest that divides the row, up to 4 vectors (a
    predicated tail scalarises the whole loop), unless that is under half a vector on a row
    longer than 4 vectors. The running max lives in the output row, so each window tap is a
    load-max-store chain through L1: one vector per step waits on it, 4 overlap (ResNet-50's
    3x3/2 pool, 56 outputs a row: 0.74 ms with steps of 14, 0.27 with one step of 56)."""
    widest = 4 * lanes
    fits = max(d for d in range(1, widest + 1) if width % d == 0)
    return fits if fits * 2 > lanes or width <= widest else lanes


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:
    if compute_of(func) != Compute.MAX_POOL2D:
        return None
    sch = s_tir.Schedule(func)
    pool = sch.get_sblock("pool_max")
    b, c, i, j, ry, rx = sch.get_loops(pool)
    jo, ji = sch.split(j, [None, row_vector(int(sch.get(j).extent), lanes)])
    sch.reorder(jo, ry, rx, ji)
    sch.parallel(sch.fuse(b, c, i))
    sch.vectorize(ji)
    sch.unroll(ry)
    sch.unroll(rx)
    init = sch.decompose_reduction(pool, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    schedule_pad(sch)
    return sch.mod["main"]
