"""fscnn-tvm: compile pruned CNNs into fast sparse/dense inference code with Apache TVM.

Public API (heavy modules load on first use, so ``import fscnn_tvm`` stays cheap and the runtime
path never imports torch):

- ``compile(model, input_shape=None, target="llvm", sparse="auto", tuning_log=None, winograd=True,
  calibration_data=None)``
- ``plan_model(model, input_shape=None, target="llvm", sparse="auto", profile=None, winograd=True)``:
  the plan alone
- ``tune(model, input_shape=None, target="llvm", trials=8, log_dir=None, ...)``
- ``load(path, device="cpu")``
- ``models`` (zoo), ``prune`` (magnitude pruning), ``guided`` (guided pruning), ``plan`` (the table)
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["compile", "plan_model", "tune", "load", "models", "prune", "guided", "plan", "__version__"]


def compile(model, input_shape=None, target="llvm", sparse="auto", tuning_log=None, profile=None,  # noqa: A001
            verify=False, winograd=True, calibration_data=None):
    """Compile a model to a :class:`~fscnn_tvm.build.CompiledModel`.

    ``model``: an ``nn.Module`` (with ``input_shape``), an ``ExportedProgram``, a ``.pt2`` or
    ``.onnx`` path, or a zoo spec like ``"resnet50@0.9"``. ``target``: ``"llvm"`` (this host),
    ``"cuda"``, or a TVM target dict/JSON. ``sparse``: ``"auto"`` (the performance model picks
    per layer) | ``"always"`` | ``"never"``. ``profile``: the performance profile's path or a
    ``profiles.Profile`` (default: the target's in ``tuning_logs/``, else a built-in one).
    ``verify=True``: run the source model (torch, or ONNX Runtime for ``.onnx``) and the compiled
    one on the same random input, report the largest error per output (``.verification``) and
    raise ``VerificationError`` above 1e-4 of max |output|. ``winograd=False``: dense 3x3 layers
    keep the direct convolution (its rounding) instead of Winograd where that is predicted faster.
    ``calibration_data``: sample inputs, an array ``(N, C, H, W)``, a list of input arrays or a
    ``.npy`` path; each layer's input zeros are measured on them and the plan weighs the
    activation-sparse kernel (exact on any input) at them. Without it, no activation-sparse kernels.
    """
    from .driver import compile_model

    return compile_model(model, input_shape, target, sparse, tuning_log, profile, verify, winograd,
                         calibration_data)


def plan_model(model, input_shape=None, target="llvm", sparse="auto", profile=None, winograd=True,
               calibration_data=None):
    """Import and plan ``model`` without building it: a :class:`~fscnn_tvm.pipeline.PlannedModel`
    (the Relax module, the layers, and one plan row per layer with predicted times and reason)."""
    from .pipeline import plan_model as _plan_model

    return _plan_model(model, input_shape, target, sparse, profile, winograd, calibration_data)


def tune(model, input_shape=None, target="llvm", trials=8, log_dir=None, sparse="auto", profile=None,
         rpc_tracker=None, rpc_key=None, progress=False, winograd=True, calibration_data=None):
    """Tune ``model``'s kernels for ``target``; returns a :class:`~fscnn_tvm.tuning.TuneReport`.

    Records go to ``log_dir`` (default ``tuning_logs/<target-tag>/<model>/``); compile with
    ``compile(..., tuning_log=log_dir)``. ``sparse``, ``profile``, ``winograd`` and
    ``calibration_data`` must match the compile's.
    ``rpc_tracker="host:port"`` with ``rpc_key``: measure on the tracker's devices.
    """
    from .tuning import tune as _tune

    return _tune(model, input_shape, target, trials, log_dir, sparse, profile, rpc_tracker, rpc_key, progress,
                 winograd, calibration_data)


def load(path, device="cpu"):
    """Load a compiled ``.so`` as a callable :class:`~fscnn_tvm.runtime.Runner` (no torch needed)."""
    from .runtime import load as _load

    return _load(path, device)


def __getattr__(name):
    if name in ("models", "prune", "guided", "plan"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fscnn_tvm' has no attribute {name!r}")
