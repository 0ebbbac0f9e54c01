"""Run a compiled model: ``load(path)`` -> :class:`Runner`. Needs only TVM and numpy (no torch).

Every library that fscnn-tvm writes carries a small JSON description of itself (input shape and
dtype, target, plan) in a Relax function named ``fscnn_meta``, so a runner can check inputs and
explain itself with nothing but the ``.so``.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import tvm
from tvm import relax

from .errors import InputError, ModelLoadError
from .tvm_compat import native_stderr_silenced

META_FUNCTION = "fscnn_meta"


def _device(device: str):
    if device == "cpu":
        return tvm.cpu()
    if device == "cuda":
        return tvm.cuda()
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


class Runner:
    """A callable compiled model: ``runner(x) -> numpy array`` (a tuple for several outputs)."""

    def __init__(self, executable, device: str = "cpu", source: str = "<memory>", meta: dict | None = None):
        self.device = device
        self.source = source
        self._executable = executable
        self._vm = None
        if meta is None:  # a loaded library: its description lives inside it
            try:
                meta = json.loads(str(self._machine()[META_FUNCTION]()))
            except ModelLoadError:
                raise
            except Exception:  # noqa: BLE001 - any failure means "not one of ours"
                raise ModelLoadError(f"{source}: not an fscnn-tvm library (no {META_FUNCTION} "
                                     "description inside)") from None
        self.meta = meta
        self.input_shape = tuple(self.meta["input_shape"])
        self.input_dtype = self.meta["input_dtype"]

    def _machine(self):
        """The Relax VM on the device, made on first use (a CUDA model compiles without a GPU)."""
        if self._vm is None:
            self._dev = _device(self.device)
            if not self._dev.exist:
                raise ModelLoadError(f"{self.source}: no {self.device} device here to run it on "
                                     "(it can still be exported)")
            self._vm = relax.VirtualMachine(self._executable, self._dev)
        return self._vm

    @property
    def plan(self) -> list:
        """The per-layer plan the library was built with (one ``plan.LayerPlan`` per conv/linear)."""
        from .plan import LayerPlan  # noqa: PLC0415 - TVM only, no torch

        return [LayerPlan.from_dict(row) for row in self.meta["plan"]]

    def explain(self) -> str:
        """The plan as a table: per layer the predicted time of each kernel kind, the choice, why."""
        from .plan import format_plan  # noqa: PLC0415

        return format_plan(self.plan)

    def _check(self, x) -> np.ndarray:
        arr = x if isinstance(x, np.ndarray) else np.asarray(getattr(x, "detach", lambda: x)())
        if tuple(arr.shape) != self.input_shape:
            raise InputError(f"{self.source}: input has shape {tuple(arr.shape)}, expected "
                             f"{self.input_shape}")
        if str(arr.dtype) != self.input_dtype:
            raise InputError(f"{self.source}: input has dtype {arr.dtype}, expected "
                             f"{self.input_dtype} (convert with .astype('{self.input_dtype}'))")
        return np.ascontiguousarray(arr)

    def _run(self, tensor):
        return self._machine()["main"](tensor)

    def __call__(self, x):
        self._machine()
        out = self._run(tvm.runtime.tensor(self._check(x), self._dev))
        outs = [o.numpy() for o in out] if not hasattr(out, "numpy") else [out.numpy()]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def benchmark(self, x, repeat: int = 10, warmup: int = 1) -> list[float]:
        """Wall-clock latencies in seconds of ``repeat`` runs on ``x`` (input copy excluded)."""
        self._machine()
        tensor = tvm.runtime.tensor(self._check(x), self._dev)
        for _ in range(warmup):
            self._run(tensor)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self._run(tensor)
            self._dev.sync()
            times.append(time.perf_counter() - start)
        return times


def load(path: str, device: str = "cpu") -> Runner:
    """Load a library written by ``CompiledModel.export_library`` (or ``fscnn-tvm compile``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path}: no such file")
    try:
        with native_stderr_silenced():
            lib = tvm.runtime.load_module(path)
    except Exception as err:  # noqa: BLE001 - dlopen / format errors come in many types
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        if "load_from_bytes.cuda" in first:
            raise ModelLoadError(f"{path}: built for CUDA; loading it needs TVM's CUDA runtime and a GPU "
                                 "(none here)") from None
        raise ModelLoadError(f"{path}: cannot load as a compiled model ({first})") from None
    return Runner(lib, device, source=path)
