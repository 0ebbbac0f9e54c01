"""Per-target kernel schedules (installed as ``fscnn_tvm.schedules``).

Precedence, one rule in one place: a PrimFunc already marked ``tirx.is_scheduled`` is kept; every
other PrimFunc gets the first hand schedule of its target's ordered ``RULES`` list that accepts it.
(Tuned records, once the tuning issue lands, come before the hand schedules.)
"""
from __future__ import annotations

import tvm
from tvm import tirx

from fscnn_tvm import targets

from . import x86


def rules_for(target: tvm.target.Target) -> list:
    if target.kind.name == "llvm":
        return x86.RULES
    from . import cuda  # noqa: PLC0415 - only CUDA builds need it

    return cuda.RULES


def schedule_func(func: tirx.PrimFunc, target: tvm.target.Target) -> tirx.PrimFunc:
    """The scheduled version of ``func`` for ``target`` (marked ``tirx.is_scheduled``)."""
    if func.attrs and func.attrs.get("tirx.is_scheduled"):
        return func
    lanes = targets.vector_lanes(target)
    with target:  # CUDA rules read the target (dlight)
        for rule in rules_for(target):
            scheduled = rule(func, lanes)
            if scheduled is not None:
                return scheduled.with_attr("tirx.is_scheduled", True)
    return func


def schedule_module(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Schedule every PrimFunc of ``mod`` that is not scheduled yet."""
    updates = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and not (func.attrs and func.attrs.get("tirx.is_scheduled")):
            updates[gv] = schedule_func(func, target)
    for gv, func in updates.items():
        mod[gv] = func
    return mod
