"""The front half of the pipeline, written once: import -> find layers -> plan.

``compile``, ``tune``, ``explain`` and guided pruning all start here; they differ only in what they
do with the plan (build it, measure its kernels, print it, prune by it).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import tvm

from . import frontend, passes, profiles, targets
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
               winograd: bool = True) -> PlannedModel:
    """Import ``model`` (see :func:`frontend.import_model`), find its layers and plan each.

    ``target``: see :func:`targets.parse`. ``sparse``: ``auto`` (the performance model chooses)
    | ``always`` | ``never``. ``profile``: a :class:`profiles.Profile`, its path, or ``None`` for the
    target's calibrated one (else the built-in profile, with a warning). ``winograd=False``: no
    Winograd kernels, every dense layer runs the direct convolution (its numerics).
    """
    if sparse not in SPARSE_MODES:  # before the (slow) import
        raise ValueError(f"sparse must be one of {SPARSE_MODES}, got {sparse!r}")
    tgt = targets.parse(target)
    prof = profiles.resolve(tgt, profile)
    start = time.perf_counter()
    imported = frontend.import_model(model, input_shape)
    log.info("imported %s in %.1f s", imported.source, time.perf_counter() - start)
    layers = passes.find_layers(imported.mod, imported.layer_names)
    plan = make_plan(layers, sparse, prof, winograd)
    log.info("plan:\n%s", format_plan(plan))
    return PlannedModel(imported, layers, plan, tgt, prof)
