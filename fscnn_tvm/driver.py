"""``fscnn_tvm.compile``: plan (``pipeline.plan_model``), build (``build.build_planned``), verify."""
from __future__ import annotations

import logging
import time

from . import targets
from .build import CompiledModel, build_planned
from .pipeline import plan_model

log = logging.getLogger("fscnn_tvm")


def compile_model(model, input_shape=None, target="llvm", sparse: str = "auto",
                  tuning_log: str | None = None, profile=None, verify: bool = False,
                  winograd: bool = True, calibration_data=None) -> CompiledModel:
    """Compile ``model`` (see :func:`fscnn_tvm.frontend.import_model`) for ``target``.

    ``profile`` (a path or a ``profiles.Profile``) drives ``sparse="auto"``; by default the
    target's calibrated profile in ``tuning_logs/``, else the built-in conservative one.
    ``verify``: run the source model and the compiled one on the same random input
    (:mod:`fscnn_tvm.verify`) and raise :class:`~fscnn_tvm.errors.VerificationError` above the
    tolerance; the report is ``compiled.verification``. ``winograd=False``: no Winograd kernels.
    ``calibration_data``: sample inputs (:func:`fscnn_tvm.input_zeros.samples`) whose zeros the
    plan weighs the activation-sparse kernel on.
    """
    start = time.perf_counter()
    tgt = targets.parse(target)
    tuned = None
    if tuning_log is not None:  # checked before the (slow) import
        from .tuning import TunedSchedules  # noqa: PLC0415 - MetaSchedule, only with a log

        tuned = TunedSchedules(tuning_log, tgt)
    planned = plan_model(model, input_shape, tgt, sparse, profile, winograd, calibration_data)
    compiled = build_planned(planned, tuned)
    if tuned is not None:
        log.info("applied %d tuned records from %s", tuned.applied, tuning_log)
    log.info("compiled %s in %.1f s", planned.imported.source, time.perf_counter() - start)
    if verify:
        from .verify import verify as check  # noqa: PLC0415 - runs torch or ONNX Runtime

        compiled.verification = check(compiled, model)
    return compiled
