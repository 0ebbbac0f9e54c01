"""Calibration data: the zero fraction of every layer's input on sample inputs (issue 16).

``compile(..., calibration_data=X)`` (``--calibration-data x.npy``) runs the samples through the
model compiled without activation-sparse kernels and records, for each conv2d/linear, the
fraction of its input that is zero: mean and spread over the samples. The plan then weighs the
activation-sparse kernel (``ops/act_sparse_conv2d.py``) at that density; without calibration data
it has none to weigh, and says so.

The inputs are read where the compiled model's kernels are called (a Relax VM instrument sees
every call's arguments), so this works for any model we import, torch or ONNX.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import InputError

KERNEL_PREFIX = "fscnn_"  # the symbols of our layer kernels (kernels.Kernel.symbol)


def _as_array(item, where: str) -> np.ndarray:
    arr = np.asarray(item)
    if arr.dtype.kind != "f":
        raise InputError(f"calibration data {where}: dtype {arr.dtype} is not floating point "
                         "(expected float32 samples like the model's input)")
    return arr.astype(np.float32, copy=False)


def load(data) -> list[np.ndarray] | np.ndarray:
    """``data`` as given (an array or a list of arrays), or read from a ``.npy`` path."""
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.isfile(path):
            raise InputError(f"{path}: calibration data file not found")
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"{path}: not a .npy array of calibration samples ({e})") from None
    return data


def samples(data, input_shape: tuple[int, ...]) -> list[np.ndarray]:
    """The model inputs to run: ``data`` is an array ``(N, C, H, W)`` of samples (run
    ``input_shape[0]`` at a time) or a list of arrays each of the input's shape (or of one
    sample's ``(C, H, W)`` at batch 1). A clear :class:`InputError` names what does not fit."""
    data = load(data)
    batch, one = input_shape[0], tuple(input_shape[1:])
    if isinstance(data, (list, tuple)):
        if not data:
            raise InputError("calibration data: an empty list (give at least one sample)")
        runs = []
        for i, item in enumerate(data):
            arr = _as_array(item, f"item {i}")
            if arr.shape == one and batch == 1:
                arr = arr[None]
            if arr.shape != tuple(input_shape):
                raise InputError(f"calibration data item {i}: shape {arr.shape}, the model's input is "
                                 f"{tuple(input_shape)}")
            runs.append(arr)
        return runs
    arr = _as_array(data, "array")
    if arr.ndim != len(input_shape) or tuple(arr.shape[1:]) != one:
        raise InputError(f"calibration data: shape {arr.shape}, expected (N, {', '.join(map(str, one))}) "
                         f"samples of the model's input {tuple(input_shape)}")
    if arr.shape[0] == 0:
        raise InputError("calibration data: 0 samples (give at least one)")
    if arr.shape[0] % batch:
        raise InputError(f"calibration data: {arr.shape[0]} samples is not a multiple of the model's "
                         f"batch {batch}")
    return [np.ascontiguousarray(arr[i:i + batch]) for i in range(0, arr.shape[0], batch)]


def zero_fractions(compiled, runs: list[np.ndarray], layers: int) -> list[tuple[float, float] | None]:
    """(mean, standard deviation over the runs) of the zero fraction of each of the ``layers``
    layers' input (a kernel call's first argument), running ``compiled``; ``None`` for a layer
    without a kernel of ours. Calls are matched to layers by ``compiled.call_order`` (a run makes
    them in dataflow order, not the plan's)."""
    from tvm.relax import VMInstrumentReturnKind  # noqa: PLC0415 - TVM, only when calibrating

    seen: list[float] = []

    def instrument(func, symbol, before_run, ret_value, *args):
        if before_run and str(symbol).startswith(KERNEL_PREFIX):
            x = args[0].numpy()
            seen.append(float(np.count_nonzero(x == 0)) / max(x.size, 1))
        return VMInstrumentReturnKind.NO_OP

    order = compiled.call_order
    vm = compiled._machine()
    per_run = []
    vm.set_instrument(instrument)
    try:
        for x in runs:
            seen.clear()
            compiled(x)
            if len(seen) != len(order):
                raise RuntimeError(f"internal: calibration saw {len(seen)} layer kernel calls, the "
                                   f"model has {len(order)}")
            per_run.append(list(seen))
    finally:
        vm.set_instrument(lambda *a: VMInstrumentReturnKind.NO_OP)
    table = np.array(per_run).reshape(len(runs), len(order))
    found: list[tuple[float, float] | None] = [None] * layers
    for call, index in enumerate(order):
        found[index] = (float(table[:, call].mean()), float(table[:, call].std()))
    return found
