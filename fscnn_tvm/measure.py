"""Time one layer's kernel on this machine: the ground truth the performance model is fitted to.

A kernel is built and compiled once per :attr:`kernels.Kernel.key` (the sparse kernels take the
nonzero count as a symbolic size, so every sparsity of one shape shares one compiled function) and
then timed with TVM's ``time_evaluator`` on seeded random input. Used by ``fscnn-tvm calibrate``,
``fscnn-tvm explain --measure`` and ``benchmarks/perf_model.py``.
"""
from __future__ import annotations

import numpy as np
import tvm

from . import fast_math, kernels
from .layer import Layer


COLD_FLUSH_BYTES = 64 << 20  # more than any L3 a core shares
COLD_REPEAT = 9  # cold calls timed one by one: the median of this many


class KernelTimer:
    """Builds, caches and times layer kernels for one target (this CPU, or a CUDA GPU here)."""

    def __init__(self, target: tvm.target.Target, min_repeat_ms: int = 20, repeat: int = 3):
        if target.kind.name == "cuda":
            self.dev = tvm.cuda()
            if not self.dev.exist:
                raise NotImplementedError("measuring CUDA kernels needs a CUDA GPU on this machine; "
                                          "none was found")
        elif target.kind.name == "llvm":
            self.dev = tvm.cpu()
        else:
            raise NotImplementedError(f"measuring kernels needs a CPU or CUDA target, got {target.kind.name!r}")
        self.target = target
        self.min_repeat_ms = min_repeat_ms
        self.repeat = repeat
        self._compiled: dict = {}

    def _library(self, kernel: kernels.Kernel):
        lib = self._compiled.get(kernel.key)
        if lib is None:
            from .schedules import schedule_func  # noqa: PLC0415 - heavy

            mod = kernel.module(schedule_func(kernel.func, self.target))
            lib = self._compiled[kernel.key] = fast_math.compile(mod, self.target)
        return lib

    def seconds(self, layer: Layer, kind: str, knobs: dict | None = None) -> float:
        """Median seconds of one call of ``layer``'s ``kind`` kernel (input and residual random);
        ``knobs``: a configuration other than the rules' (see ``kernels.build_kernel``).

        CPU kernels are timed as they run in a model: with cold caches (:data:`COLD_FLUSH_BYTES`
        flushed before each call). In a model run at batch 1 a layer's weights were evicted by the
        other layers' since its last call; a kernel timed alone in a loop finds weights of up to
        L3's size in the cache (4096->1000 linear: 0.17 ms looped, 0.29 ms cold; ResNet-50's 1x1
        2048->512@7: 0.40 and 0.58 ms; RESULTS.md, issue 17)."""
        kernel = kernels.build_kernel(layer, kind, self.target, knobs)
        lib = self._library(kernel)
        dev = self.dev
        rng = np.random.default_rng(0)
        in_shape, out_shape = kernel.shapes(layer)
        data = input_for(layer, in_shape, rng)
        extra = [rng.standard_normal(out_shape).astype("float32")] if layer.residual is not None else []
        args = [tvm.runtime.tensor(a, dev) for a in
                [data, *kernel.constants, *extra, np.zeros(out_shape, "float32")]]
        if self.target.kind.name == "llvm":
            evaluator = lib.mod.time_evaluator("main", dev, number=1, repeat=max(COLD_REPEAT, self.repeat),
                                               cache_flush_bytes=COLD_FLUSH_BYTES)
        else:
            evaluator = lib.mod.time_evaluator("main", dev, number=1, repeat=self.repeat,
                                               min_repeat_ms=self.min_repeat_ms)
        return float(np.median(evaluator(*args).results))


def input_for(layer: Layer, shape, rng) -> np.ndarray:
    """Seeded random input of ``shape`` with the layer's calibrated zero fraction, if it has one
    (the zeros at random places: no channel or pixel structure)."""
    data = rng.standard_normal(shape).astype("float32")
    if layer.input_zeros is not None:
        data[rng.random(shape) < layer.input_zeros[0]] = 0.0
    return data


def compiled_kernel(layer: Layer, kind: str, target: tvm.target.Target, knobs: dict | None = None):
    """``layer``'s ``kind`` kernel (``knobs``: see ``kernels.build_kernel``) compiled on its own,
    with its arguments on the CPU and the seeded input; run once, so ``args[-1]`` holds the output.
    Returns ``(lib, args, x)``."""
    from .schedules import schedule_func  # noqa: PLC0415 - heavy

    kernel = kernels.build_kernel(layer, kind, target, knobs)
    lib = fast_math.compile(kernel.module(schedule_func(kernel.func, target)), target)
    dev = tvm.cpu()
    in_shape, out_shape = kernel.shapes(layer)
    x = input_for(layer, layer.in_shape, np.random.default_rng(0))
    args = [tvm.runtime.tensor(a, dev) for a in
            [x.reshape(in_shape)] + kernel.constants + [np.zeros(out_shape, "float32")]]
    lib(*args)
    return lib, args, x
