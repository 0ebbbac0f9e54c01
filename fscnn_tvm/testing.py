"""References and measuring helpers shared by the tests, the benchmarks and the demo."""
from __future__ import annotations

import time

import numpy as np


def random_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def torch_reference(model, x: np.ndarray) -> np.ndarray:
    """``model(x)`` in PyTorch eager mode, as numpy."""
    import torch  # noqa: PLC0415

    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| (the project's fp32 comparison, bound 1e-4)."""
    scale = float(np.abs(expected).max()) or 1.0
    return float(np.abs(np.asarray(actual) - expected).max()) / scale


def time_torch(model, x: np.ndarray, repeat: int = 10, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` eager PyTorch runs (no autograd)."""
    import torch  # noqa: PLC0415

    xt = torch.from_numpy(x)
    with torch.no_grad():
        for _ in range(warmup):
            model(xt)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            model(xt)
            times.append(time.perf_counter() - start)
    return times
