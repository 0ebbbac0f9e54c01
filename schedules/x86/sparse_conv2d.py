"""x86 schedule of the direct sparse conv2d in ``fscnn_tvm/ops/sparse_conv2d.py``.

Per (image, tile, row): the tile's ``PT = TV x lanes`` outputs live in ``TV`` vector registers
(BSR: ``R x TV``) while the row's nonzeros stream by; per nonzero one broadcast of the weight and
``TV`` FMAs with contiguous (stride 1) input loads. Accumulators are a ``local`` cache written back
once per tile; the zero-fill, the padded copy and the crop/epilogue are vectorised, and the
(image, tile, row) loops run in parallel.
"""
from __future__ import annotations

from tvm import s_tir, tirx

from .conv2d import _loops_below, _unroll_vectorize


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
    if not func.attrs or func.attrs.get("fscnn.kernel") != "sparse_conv2d":
        return None
    vl = int(func.attrs["fscnn.lanes"])
    block_rows = int(func.attrs["fscnn.block_rows"])
    sch = s_tir.Schedule(func)
    row = sch.get_sblock("row")
    sch.parallel(sch.fuse(*sch.get_loops(row)))
    c = sch.get_sblock("C")
    if block_rows == 1:
        pi, j = sch.get_loops(c)
        pm, pt, pv = sch.split(pi, [1, None, vl])
        sch.reorder(pm, j, pt, pv)
        inner = [pt, pv]
    else:
        r, pi, j = sch.get_loops(c)
        pm, pt, pv = sch.split(pi, [1, None, vl])
        sch.reorder(pm, j, r, pt, pv)
        inner = [r, pt, pv]
    cache = sch.cache_write(c, 0, "local")
    sch.reverse_compute_at(cache, pm)  # the tile's accumulators, written back once
    sch.vectorize(inner[-1])
    for lp in inner[:-1]:
        sch.unroll(lp)
    init = sch.decompose_reduction(c, j)  # after vectorize/unroll (TVM_NOTES 7)
    for block in (init, cache):
        _unroll_vectorize(sch, _loops_below(sch, block, pm))
    _vectorized_copy_stages(sch, lanes)
    return sch.mod["main"]
