"""x86 fallback schedule for the PrimFuncs TVM legalises from the remaining ops.

Pooling, elementwise ops that were not fused into a kernel, reshapes and concatenations. Blocks
that can be inlined into their neighbours are; each remaining block's leading spatial loops are
fused and run in parallel, and a purely spatial block is vectorised along its innermost
``lanes`` elements. Nothing here changes what is computed, only how.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import normalize_prim_func, try_inline


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:
    """Parallelise and vectorise every block; always applies (the last rule of the list)."""
    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if infos is None:  # an opaque block dlight cannot analyse: leave it as TVM wrote it
        return func
    if len(infos) > 1:
        infos = try_inline(sch, infos)
    for info in infos:
        kinds = [it.kind for it in info.iters]
        loops = [it.loop_rv for it in info.iters]
        n_spatial = next((i for i, k in enumerate(kinds) if k != "S"), len(kinds))
        if n_spatial == 0:
            continue
        try:
            _parallel_vectorize(sch, loops, n_spatial, n_spatial == len(kinds), lanes)
        except s_tir.ScheduleError:
            continue  # primitives are atomic: the block keeps what was applied before
    return sch.mod["main"]


def _parallel_vectorize(sch: s_tir.Schedule, loops, n_spatial: int, all_spatial: bool, lanes: int):
    fused = sch.fuse(*loops[:n_spatial]) if n_spatial > 1 else loops[0]
    extent = sch.get(fused).extent
    if all_spatial and isinstance(extent, tirx.IntImm) and int(extent) >= 4 * lanes:
        outer, inner = sch.split(fused, [None, lanes])
        sch.parallel(outer)
        sch.vectorize(inner)
    else:
        sch.parallel(fused)
