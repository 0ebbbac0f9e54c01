"""References and helpers shared by the tests, the benchmarks and the demo.

``TOLERANCE`` is the project's fp32 bound: max |actual - expected| <= TOLERANCE * max |expected|.
Everything that imports torch does so inside the function, so the runtime path stays torch-free.
"""
from __future__ import annotations

import time

import numpy as np

TOLERANCE = 1e-4


def random_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def torch_reference(model, x: np.ndarray) -> np.ndarray:
    """``model(x)`` in PyTorch eager mode, as numpy."""
    import torch  # noqa: PLC0415

    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| (the project's fp32 comparison, bound ``TOLERANCE``)."""
    scale = float(np.abs(expected).max()) or 1.0
    return float(np.abs(np.asarray(actual) - expected).max()) / scale


def check_against_torch(model, shape, sparse="auto", target="llvm", seed=0, profile=None):
    """Compile ``model`` and assert it matches eager PyTorch on seeded random data; returns the
    compiled model."""
    import fscnn_tvm  # noqa: PLC0415

    model = model.eval()
    compiled = fscnn_tvm.compile(model, input_shape=shape, target=target, sparse=sparse, profile=profile)
    x = random_input(shape, seed)
    expected = torch_reference(model, x)
    actual = compiled(x)
    err = relative_error(actual, expected)
    if actual.shape != expected.shape:  # raised, not asserted: the check must hold under python -O
        raise AssertionError(f"output shape {actual.shape}, torch gives {expected.shape}")
    if err > TOLERANCE:
        raise AssertionError(f"relative error {err:.2e} > {TOLERANCE}")
    return compiled


def randomize_(module, seed: int = 0):
    """Deterministic weights (and BN statistics) for a test module."""
    from .models import init_deterministic  # noqa: PLC0415

    return init_deterministic(module, seed)


def sparsify_(module, sparsity: float, seed: int = 0):
    """Zero a random ``sparsity`` fraction of every conv/linear weight (unstructured)."""
    import torch  # noqa: PLC0415

    gen = np.random.default_rng(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                keep = gen.random(m.weight.shape) >= sparsity
                m.weight.mul_(torch.from_numpy(keep.astype(np.float32)))
    return module


def conv_block(cin, cout, k, stride=1, padding=0, dilation=1, groups=1, bias=True, bn=False, act="relu",
               residual=False):
    """conv (+BN) (+residual) (+activation): every epilogue the rewrite can fuse, as a torch module."""
    from torch import nn  # noqa: PLC0415

    class ConvBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias=bias)
            self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
            self.act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "none": nn.Identity()}[act]
            self.residual = residual

        def forward(self, x):
            y = self.bn(self.conv(x))
            if self.residual:
                y = y + x
            return self.act(y)

    return ConvBlock()


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


# ---------------------------------------------------------------- benchmarks: side by side in one run

def interleaved(runners: dict, rounds: int, self_timed: bool = False) -> dict[str, float]:
    """Median seconds of each runner, timed in interleaved rounds (a, b, c, a, b, c, ...) so that
    machine noise hits all of them alike; one warm-up call each first. A runner is a callable of
    no arguments; with ``self_timed`` it returns its own seconds (a TVM ``time_evaluator``),
    otherwise its wall time is taken."""
    for fn in runners.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            start = time.perf_counter()
            result = fn()
            times[name].append(float(result) if self_timed else time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def zoo_specs(models: str, sparsities: str) -> list[str]:
    """The zoo specs a benchmark runs: every comma-separated model at every comma-separated
    sparsity (``0`` = unpruned; ``0.9:8x1`` = block-pruned), e.g. ``resnet50@0.9``."""
    return [name if sp in ("0", "0.0") else f"{name}@{sp}"
            for name in models.split(",") for sp in sparsities.split(",")]


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table (how every benchmark prints its results, ready for RESULTS.md)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- real ONNX models

def prune_onnx(model, sparsity: float, skip_first_conv: bool = True):
    """A copy of an ONNX model (made static first, so weights held in ``Constant`` nodes are
    initializers) with every Conv/Gemm/MatMul weight magnitude-pruned to ``sparsity``."""
    from onnx import numpy_helper  # noqa: PLC0415

    from .sparse import magnitude_mask  # noqa: PLC0415

    weights = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
            weights.append(node.input[1])
    if skip_first_conv and weights:
        weights = weights[1:]
    wanted = set(weights)
    for init in model.graph.initializer:
        if init.name in wanted:
            w = numpy_helper.to_array(init)
            if w.ndim in (2, 4) and w.dtype == np.float32:
                init.CopyFrom(numpy_helper.from_array(w * magnitude_mask(w, sparsity), init.name))
    return model


def text_image(shape, seed: int = 0) -> np.ndarray:
    """A synthetic page (white, with dark strokes) normalised as PP-OCR expects ((x - 0.5) / 0.5):
    real detectors give outputs near 1 on it, where random noise gives ~1e-7 everywhere."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    img = np.ones((c, h, w), "float32")
    for _ in range(12):
        y0, x0 = rng.integers(0, max(1, h - 8)), rng.integers(0, max(1, w - 40))
        img[:, y0:y0 + rng.integers(3, 8), x0:x0 + rng.integers(10, 40)] = 0.0
    return np.repeat(((img - 0.5) / 0.5)[None], n, axis=0).astype("float32")
