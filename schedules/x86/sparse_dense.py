"""x86 schedule of the CSR linear kernel in ``fscnn_tvm/ops/sparse_dense.py``.

Rows (output features) run in parallel; the epilogue is inlined into the row's write.
The data-dependent inner product stays a scalar loop (a gather per nonzero).
"""
from __future__ import annotations

from tvm import s_tir, tirx


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:  # noqa: ARG001
    """Schedule an fscnn CSR linear PrimFunc; ``None`` if ``func`` is not one."""
    if not func.attrs or func.attrs.get("fscnn.kernel") != "sparse_dense":
        return None
    sch = s_tir.Schedule(func)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        loops = sch.get_loops(block)
        sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])
    return sch.mod["main"]
