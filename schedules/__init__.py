"""Per-target kernel schedules (installed as ``fscnn_tvm.schedules``).

Precedence, one rule in one place: **a tuned record, else our hand schedule.** A kernel whose
tuning log entry says its best record measured faster than the hand schedule (same runner, same
job; ``fscnn_tvm/tuning.py``) arrives here already scheduled by that record and marked
``tirx.is_scheduled``, and is kept; every other PrimFunc gets the first hand schedule of its
target's ordered ``RULES`` list that accepts it. Every PrimFunc is scheduled from a copy
(``tvm_compat.fresh_copy``).
"""
from __future__ import annotations

import tvm
from tvm import tirx

from fscnn_tvm import targets
from fscnn_tvm.tvm_compat import fresh_copy

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
    func = fresh_copy(func)
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
