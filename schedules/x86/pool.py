"""x86 schedule of the NaN-keeping max-pool (``fscnn_tvm/nan_safe.legalize_max_pool2d``).

The padded input is stored de-interleaved by column phase, so a vector of consecutive outputs of
a row reads consecutive addresses for every window tap: per group of (image, channel) planes, in
parallel, the planes are padded as the depthwise conv's are (``conv2d.plane_groups``,
``pad_per_plane``: in L1/L2), then each row is swept in steps of up to 4 vectors of outputs with
the window taps unrolled. (ResNet-50's 3x3/2 pool at 112x112: 1.0 ms scalar before. The padded
copy of the whole map made VGG16's first pool, 64@224 2x2/2, 2.56 ms with DRAM-cold caches and
0.95 warm; per plane 1.09 and 0.58; RESULTS.md, session 13.)
"""
from __future__ import annotations

from tvm import s_tir, tirx

from fscnn_tvm.kinds import Compute, compute_of

from .conv2d import pad_per_plane, plane_groups


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
    pad = sch.get_sblock("pad")
    plane = plane_groups(sch, pad, b, c)
    sch.vectorize(ji)
    sch.unroll(ry)
    sch.unroll(rx)
    init = sch.decompose_reduction(pool, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    pad_per_plane(sch, pad, plane)
    return sch.mod["main"]
