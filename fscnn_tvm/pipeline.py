"""The pipeline, written once: import -> find layers -> (calibrate input zeros) -> plan -> build.

``compile``, ``tune``, ``explain`` and guided pruning all start with :func:`plan_model`; they
differ only in what they do with the plan (build it: ``driver.compile_model``; measure its
kernels, print it, prune by it).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import tvm

from . import frontend, input_zeros, passes, profiles, targets
from .build import build_planned
from .frontend import ImportedModel
from .layer import Layer
from .plan import SPARSE_MODES, LayerPlan, format_plan, make_plan

log = logging.getLogger("fscnn_tvm")


@dataclass
class PlannedModel:
    """A model imported and planned for one target."""

    imported: ImportedModel  # the Relax module, input shape, source
    layers: list[Layer]  # every conv2d/linear with its epilogue, in graph order
    plan: list[LayerPlan]  # one row per layer: kernel kind, predicted times, reason
    target: tvm.target.Target
    profile: profiles.Profile


def plan_model(model, input_shape=None, target="llvm", sparse: str = "auto", profile=None,
               winograd: bool = True, calibration_data=None) -> PlannedModel:
    """Import ``model`` (see :func:`frontend.import_model`), find its layers and plan each.

    ``target``: see :func:`targets.parse`. ``sparse``: ``auto`` (the performance model chooses)
    | ``always`` | ``never``. ``profile``: a :class:`profiles.Profile`, its path, or ``None`` for the
    target's calibrated one (else the built-in profile, with a warning). ``winograd=False``: no
    Winograd kernels, every dense layer runs the direct convolution (its numerics).
    ``calibration_data``: sample inputs (:func:`input_zeros.samples`); each layer's input zero
    fraction is measured on them (a build without activation-sparse kernels runs them) and the
    plan weighs the activation-sparse kernel at it. Without it, no layer gets that kernel.
    """
    if sparse not in SPARSE_MODES:  # before the (slow) import
        raise ValueError(f"sparse must be one of {SPARSE_MODES}, got {sparse!r}")
    tgt = targets.parse(target)
    prof = profiles.resolve(tgt, profile)
    if calibration_data is not None:
        if tgt.kind.name != "llvm":
            raise ValueError(f"calibration data: activation-sparse kernels are x86 only, the target is "
                             f"{tgt.kind.name}")
        calibration_data = input_zeros.load(calibration_data)  # a bad file fails before the import
    start = time.perf_counter()
    imported = frontend.import_model(model, input_shape)
    log.info("imported %s in %.1f s", imported.source, time.perf_counter() - start)
    layers = passes.find_layers(imported.mod, imported.layer_names)
    plan = make_plan(layers, sparse, prof, winograd)
    planned = PlannedModel(imported, layers, plan, tgt, prof)
    if calibration_data is not None:
        runs = input_zeros.samples(calibration_data, imported.input_shape)
        planned = _calibrated(planned, runs, sparse, winograd)
    log.info("plan:\n%s", format_plan(planned.plan))
    return planned


def _calibrated(planned: PlannedModel, runs: list, sparse: str, winograd: bool) -> PlannedModel:
    """``planned`` re-planned with each layer's input zeros measured on ``runs``."""
    start = time.perf_counter()
    probe = build_planned(planned)
    zeros = input_zeros.zero_fractions(probe, runs, len(planned.layers))
    for layer, z in zip(planned.layers, zeros):
        layer.input_zeros = z
    log.info("calibrated input zeros on %d runs in %.1f s", len(runs), time.perf_counter() - start)
    plan = make_plan(planned.layers, sparse, planned.profile, winograd)
    return PlannedModel(planned.imported, planned.layers, plan, planned.target, planned.profile)
