"""x86 schedule of the Winograd conv (``fscnn_tvm/ops/winograd.py``).

- input transform: per (channel, block of ``p_tile`` tiles), the ``a x a`` transformed values are
  unrolled and the block of tiles is one vector, so the tile's ``a^2`` loads are shared by all
  ``a^2`` outputs;
- GEMM: a register tile of ``p_tile`` tiles x ``oc_block`` output channels, kept in registers over
  the input-channel loop (one broadcast of ``V``, ``p_tile`` FMAs per step), then stored;
- output transform: per (image, channel block, tile), unrolled over the ``m x m`` outputs and
  vectorised over the ``oc_block`` channels, epilogue included.
"""
from __future__ import annotations

from tvm import s_tir, tirx

from fscnn_tvm.kinds import Compute, compute_of

from .conv2d import _loops_below, _unroll_vectorize, schedule_pad


ALIAS_FLOATS = 1024  # 4 KB: addresses this far apart share L1 sets (and 4K-alias loads to stores)
CACHE_LINE_FLOATS = 16


def _loops_named(sch: s_tir.Schedule, block, anchor, extents: dict) -> dict:
    """The loops of ``block`` below ``anchor`` by name: after ``compute_at`` a loop exists only
    for an iteration variable of extent > 1, in the block's order (``extents``: name -> extent)."""
    names = [n for n, e in extents.items() if e > 1]
    loops = _loops_below(sch, block, anchor)
    if len(loops) != len(names):
        raise RuntimeError(f"winograd schedule: expected loops {names}, found {len(loops)}")
    return dict(zip(names, loops))


def schedule_winograd(sch: s_tir.Schedule, attrs: dict) -> s_tir.Schedule:
    """``attrs``: the kernel's ``fscnn.*`` attributes (see ``kernels._winograd_conv``)."""
    m, oc_block, p_tile, block_rows = (attrs[k] for k in ("tile", "oc_block", "p_tile", "block_rows"))
    a, kbs, jbs, ic = m + 2, attrs["oc_blocks"], attrs["tile_blocks"], attrs["in_channels"]
    # the output transform drives the loop nest: per (image, block of tile rows), in parallel,
    # the block's input transform, its GEMM, then its outputs
    out = sch.get_sblock("out")
    b, k, y, x = sch.get_loops(out)
    kb, kv = sch.split(k, [None, oc_block])
    ty, vh = sch.split(y, [None, m])
    tx, vw = sch.split(x, [None, m])
    tyo, tyi = sch.split(ty, [None, block_rows])
    sch.reorder(b, tyo, kb, tyi, tx, vh, vw, kv)
    outer = sch.fuse(b, tyo)
    sch.parallel(outer)
    sch.unroll(vh)
    sch.unroll(vw)
    sch.vectorize(kv)
    gemm = sch.get_sblock("gemm")
    sch.compute_at(gemm, outer)
    vt = sch.get_sblock("input_transform")
    sch.compute_at(vt, outer)
    # V [N, blocks, a, a, JB, IC, pt] and M [N, blocks, a, a, KB, JB, pt, ob] are swept a^2
    # streams at a time; a stride of a multiple of 4 KB per (eps, nu) maps every stream to the
    # same cache sets (64->64@224, p_tile 16: 14.3 ms against 8.8 with p_tile 14)
    for block in (vt, gemm):
        sch.storage_align(block, 0, axis=3, factor=ALIAS_FLOATS, offset=CACHE_LINE_FLOATS)

    # input transform: per (p_tile tiles, channel) B^T d then (B^T d) B, every element of the
    # a x a tile unrolled and the p_tile tiles one vector (contiguous loads: the padded input
    # is de-interleaved by column phase)
    lv = _loops_named(sch, vt, outer, {"e": a, "u": a, "jb": jbs, "c": ic, "pi": p_tile})
    sch.reorder(*[lv[n] for n in ("jb", "c", "e", "u", "pi") if n in lv])
    col = sch.get_sblock("input_col")
    sch.compute_at(col, lv["c"])
    _unroll_vectorize(sch, _loops_below(sch, col, lv["c"]))
    _unroll_vectorize(sch, [lv[n] for n in ("e", "u", "pi") if n in lv])

    # GEMM: accumulators of p_tile tiles x oc_block channels in registers over the channel loop
    lg = _loops_named(sch, gemm, outer, {"e": a, "u": a, "kb": kbs, "jb": jbs, "pi": p_tile,
                                         "v": oc_block, "rc": ic})
    sch.reorder(*[lg[n] for n in ("e", "u", "kb", "jb", "rc", "pi", "v") if n in lg])
    anchor = next(lg[n] for n in ("jb", "kb", "u") if n in lg)
    acc = sch.cache_write(gemm, 0, "global")
    sch.reverse_compute_at(acc, anchor)
    _unroll_vectorize(sch, [lg[n] for n in ("pi", "v") if n in lg])
    init = sch.decompose_reduction(gemm, lg["rc"])
    for block in (init, acc):
        _unroll_vectorize(sch, _loops_below(sch, block, anchor))
    schedule_pad(sch)
    return sch


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:
    """Schedule an fscnn Winograd PrimFunc; ``None`` if ``func`` is not one."""
    if compute_of(func) != Compute.CONV2D_WINOGRAD:
        return None
    sch = s_tir.Schedule(func)
    names = ("tile", "oc_block", "p_tile", "block_rows", "oc_blocks", "tile_blocks", "in_channels")
    schedule_winograd(sch, {k: int(func.attrs[f"fscnn.{k}"]) for k in names})
    return sch.mod["main"]
