"""x86 schedule of the direct sparse conv2d in ``fscnn_tvm/ops/sparse_conv2d.py``.

Per (image, tile, chunk, row): the tile's ``PT = TV x lanes`` outputs live in ``TV`` vector
registers (BSR: ``R x TV``) while the row's nonzeros stream by; per nonzero one broadcast of the
weight and ``TV`` FMAs with contiguous input loads. The accumulator starts from zero (first chunk)
or the tile's partial sum and is stored once per (tile, chunk, row); the zero-fill, the input
staging and the crop/epilogue are vectorised.
"""
from __future__ import annotations

from tvm import s_tir, tirx

from fscnn_tvm.kinds import Compute, compute_of

from .conv2d import _unroll_vectorize

MIN_PARALLEL_TILES = 8  # fewer (image, tile) pairs than this: parallelise over rows instead


def _vectorized_copy_stages(sch: s_tir.Schedule, lanes: int) -> None:
    """Zero-fill, input staging (pad / phase planes) and crop: parallel and vectorised."""
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        name = sch.get(block).name_hint
        loops = sch.get_loops(block)
        if name == "zero":
            outer, inner = sch.split(loops[0], [None, lanes])
            sch.parallel(outer)
            sch.vectorize(inner)
        elif name in ("pad", "out") or name.startswith("phase"):
            # phase planes clamp their reads into bounds, so every vector lane may load
            b, c, _, x = loops
            sch.parallel(sch.fuse(b, c))
            if int(sch.get(x).extent) > 1:
                sch.vectorize(x)


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:
    """Schedule an fscnn sparse conv PrimFunc; ``None`` if ``func`` is not one."""
    if compute_of(func) != Compute.SPARSE_CONV2D:
        return None
    # The row block reads Cp (a chunk's partial sum) and writes it back, which s_tir's parallel
    # check rejects; chunks of one tile run serially in either choice below, so no two threads
    # touch the same outputs.
    sch = s_tir.Schedule(func, enable_check=False)
    apply(sch, lanes)
    return sch.mod["main"]


def apply(sch: s_tir.Schedule, lanes: int) -> None:
    """The schedule's steps on ``sch`` (a schedule of an fscnn sparse conv PrimFunc)."""
    vl = int(sch.mod["main"].attrs["fscnn.lanes"])
    b, po, ch, row = sch.get_loops(sch.get_sblock("row"))
    # Chunks of one (image, tile) accumulate into the same outputs, so they stay serial:
    # parallel over tiles when there are enough of them, else over rows within a chunk.
    if int(sch.get(b).extent) * int(sch.get(po).extent) >= MIN_PARALLEL_TILES:
        sch.parallel(sch.fuse(b, po))
    else:
        sch.parallel(row)
    c = sch.get_sblock("C")
    *spatial, pi, j = sch.get_loops(c)  # CSR: (pi, j); BSR: (r, pi, j)
    pt, pv = sch.split(pi, [None, vl])
    sch.reorder(j, *spatial, pt, pv)
    sch.vectorize(pv)
    for lp in (*spatial, pt):
        sch.unroll(lp)
    init = sch.decompose_reduction(c, j)  # after vectorize/unroll (TVM_NOTES 7)
    _unroll_vectorize(sch, sch.get_loops(init))
    *store_outer, store_pi = sch.get_loops(sch.get_sblock("store"))
    _unroll_vectorize(sch, [*store_outer, *sch.split(store_pi, [None, vl])])
    _vectorized_copy_stages(sch, lanes)
