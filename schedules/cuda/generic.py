"""CUDA schedules for the PrimFuncs TVM legalises from the remaining ops (pooling, elementwise,
reshapes, reductions): TVM's GPU default rules (``dlight``), tried in order. Every PrimFunc
that reaches a GPU must have its loops bound to threads; ``Fallback`` always can.
"""
from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir.dlight import gpu

_RULES = (gpu.Reduction(), gpu.GeneralReduction(), gpu.Fallback())


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:
    """The first dlight rule that applies, for the current target (``with target:``)."""
    target = tvm.target.Target.current(allow_none=False)
    for rule in _RULES:
        try:
            sch = rule.apply(func, target, False)
        except Exception:  # noqa: BLE001 - a rule that cannot handle this func: try the next
            continue
        if sch is not None:
            if isinstance(sch, list):
                sch = sch[0]
            return sch.mod["main"]
    return None
