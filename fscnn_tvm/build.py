"""The back half of the pipeline, and the compiled model it returns.

A planned model (``pipeline.plan_model``: import, fold, find layers, choose kernels) -> build each
layer's kernel (``kernels``) -> rewrite (``passes.apply_plan``) -> legalise the rest -> schedule
every PrimFunc (``schedules``) -> ``tvm.compile`` (:func:`build_planned`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

import tvm
from tqdm import tqdm
from tvm import relax

from . import __version__, fast_math, fileio, kernels, passes, targets
from .nan_safe import legalize_max_pool2d, nan_safe
from .runtime import META_FUNCTION, Runner, integrity_trailer
from .tvm_compat import native_stderr_silenced

log = logging.getLogger("fscnn_tvm")


def _legalize(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Lower the ops we do not own to TIR and fuse them (TVM's CPU legalisation passes).

    Our kernels carry ``op_pattern`` = opaque so FuseOps leaves them whole: their schedules
    were made for exactly the blocks they have.
    """
    with target:
        return tvm.transform.Sequential([
            relax.transform.LegalizeOps({"relax.nn.max_pool2d": legalize_max_pool2d}),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(["main"]),
        ])(mod)


def _attach_meta(mod: tvm.IRModule, meta: dict) -> tvm.IRModule:
    bb = relax.BlockBuilder(mod)
    with bb.function(META_FUNCTION, []):
        bb.emit_func_output(tvm.ir.expr.StringImm(json.dumps(meta)))
    return bb.get()


class CompiledModel(Runner):
    """A model compiled for one target: call it, read ``.plan``, or ``export_library(path)``."""

    def __init__(self, executable, target: tvm.target.Target, source: str, meta: dict,
                 call_order: list[int] | None = None):
        super().__init__(executable, "cuda" if target.kind.name == "cuda" else "cpu", source, meta)
        self.target = target
        # The plan row of each layer kernel call, in the order a run makes them (passes.apply_plan)
        self.call_order = call_order
        self.verification = None  # a verify.Verification when compiled with verify=True

    def device_source(self) -> str:
        """The generated device code (CUDA C for a CUDA target; empty for a CPU target)."""
        found, todo = [], [self._executable.mod]
        while todo:
            mod = todo.pop()
            if mod.kind == "cuda":
                found.append(mod.inspect_source())
            todo.extend(mod.imports)
        return "\n".join(found)

    def export_library(self, path: str) -> str:
        """Write the shared library atomically (temp file + rename); returns ``path``."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise ValueError(f"{path}: is a directory; give the path of the .so to write")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"{path}: output folder {folder} does not exist")
        with fileio.replacing(path, mode=0o755) as tmp:
            with native_stderr_silenced():
                self._executable.export_library(tmp)
            trailer = integrity_trailer(tmp)  # checked by runtime.load before the file is mapped
            with open(tmp, "ab") as f:
                f.write(trailer)
        return path


def _kernel(layer, row, target, tuned) -> kernels.Kernel | None:
    """The layer's kernel: hand rules, or the tuned configuration and schedule of a tuning log."""
    kind = row.kernel
    knobs = {"fallback": row.fallback, "fallback_zeros": row.fallback_zeros} if row.fallback else None
    kernel = kernels.build_kernel(layer, kind, target, knobs)
    config = tuned.config(kernel) if tuned is not None and kernel is not None else None
    if config is None:
        return kernel
    variant = kernels.build_kernel(layer, kind, target, config) if config else kernel
    func = tuned.schedule(kernel, variant)
    return dataclasses.replace(variant, func=func) if func is not None else variant


def build_planned(planned, tuned=None) -> CompiledModel:
    """Build a planned model (``pipeline.plan_model``): every layer's kernel, the rewrite,
    legalisation, schedules, ``tvm.compile``. ``tuned``: a ``tuning.TunedSchedules``."""
    layers, plan, imported, tgt = planned.layers, planned.plan, planned.imported, planned.target
    progress = tqdm(zip(layers, plan), total=len(layers), desc="kernels", unit="layer",
                    file=sys.stderr, disable=not log.isEnabledFor(logging.INFO))
    built = [_kernel(layer, row, tgt, tuned) for layer, row in progress]
    mod, call_order = passes.apply_plan(imported.mod, layers, built)
    mod = nan_safe(mod)  # the ops TVM lowers itself propagate NaN as in PyTorch
    mod = _legalize(mod, tgt)
    from .schedules import schedule_module  # noqa: PLC0415 - heavy, only needed here

    mod = schedule_module(mod, tgt)  # our kernels and TVM's legalised ops alike
    meta = {"fscnn_tvm": __version__, "tvm": tvm.__version__, "source": imported.source,
            "input_shape": list(imported.input_shape), "input_dtype": "float32",
            "target": targets.describe(tgt), "plan": [row.as_dict() for row in plan]}
    mod = _attach_meta(mod, meta)
    log.info("building %d kernels for %s", sum(isinstance(f, tvm.tirx.PrimFunc)
                                               for _, f in mod.functions_items()), tgt)
    with tvm.transform.PassContext(opt_level=3):
        executable = fast_math.compile(mod, tgt)  # float32 exp on a vector polynomial
    return CompiledModel(executable, tgt, imported.source, meta, call_order)
