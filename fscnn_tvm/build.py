"""The compile pipeline, top to bottom, and the compiled model it returns.

plan (``pipeline.plan_model``: import, fold, find layers, choose kernels) -> build each layer's
kernel (``kernels``) -> rewrite (``passes.apply_plan``) -> legalise the rest -> schedule every
PrimFunc (``schedules``) -> ``tvm.compile``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time

import tvm
from tqdm import tqdm
from tvm import relax

from . import __version__, fast_math, fileio, kernels, passes, targets
from .nan_safe import legalize_max_pool2d, nan_safe
from .pipeline import plan_model
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

    def __init__(self, executable, target: tvm.target.Target, source: str, meta: dict):
        super().__init__(executable, "cuda" if target.kind.name == "cuda" else "cpu", source, meta)
        self.target = target
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


def _kernel(layer, kind: str, target, tuned) -> kernels.Kernel | None:
    """The layer's kernel: hand rules, or the tuned configuration and schedule of a tuning log."""
    kernel = kernels.build_kernel(layer, kind, target)
    config = tuned.config(kernel) if tuned is not None and kernel is not None else None
    if config is None:
        return kernel
    variant = kernels.build_kernel(layer, kind, target, config) if config else kernel
    func = tuned.schedule(kernel, variant)
    return dataclasses.replace(variant, func=func) if func is not None else variant


def compile_model(model, input_shape=None, target="llvm", sparse: str = "auto",
                  tuning_log: str | None = None, profile=None, verify: bool = False,
                  winograd: bool = True) -> CompiledModel:
    """Compile ``model`` (see :func:`fscnn_tvm.frontend.import_model`) for ``target``.

    ``profile`` (a path or a ``profiles.Profile``) drives ``sparse="auto"``; by default the
    target's calibrated profile in ``tuning_logs/``, else the built-in conservative one.
    ``verify``: run the source model and the compiled one on the same random input
    (:mod:`fscnn_tvm.verify`) and raise :class:`~fscnn_tvm.errors.VerificationError` above the
    tolerance; the report is ``compiled.verification``. ``winograd=False``: no Winograd kernels.
    """
    start = time.perf_counter()
    tgt = targets.parse(target)
    tuned = None
    if tuning_log is not None:  # checked before the (slow) import
        from .tuning import TunedSchedules  # noqa: PLC0415 - MetaSchedule, only with a log

        tuned = TunedSchedules(tuning_log, tgt)
    planned = plan_model(model, input_shape, tgt, sparse, profile, winograd)
    layers, plan, imported = planned.layers, planned.plan, planned.imported
    progress = tqdm(zip(layers, plan), total=len(layers), desc="kernels", unit="layer",
                    file=sys.stderr, disable=not log.isEnabledFor(logging.INFO))
    built = [_kernel(layer, row.kernel, tgt, tuned) for layer, row in progress]
    if tuned is not None:
        log.info("applied %d tuned records from %s", tuned.applied, tuning_log)
    mod = passes.apply_plan(imported.mod, layers, built)
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
    log.info("compiled %s in %.1f s", imported.source, time.perf_counter() - start)
    compiled = CompiledModel(executable, tgt, imported.source, meta)
    if verify:
        from .verify import verify as check  # noqa: PLC0415 - runs torch or ONNX Runtime

        compiled.verification = check(compiled, model)
    return compiled
