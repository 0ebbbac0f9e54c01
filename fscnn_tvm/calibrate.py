"""``fscnn-tvm calibrate``: measure a set of layers on this machine and fit the performance model.

The calibration layers are deliberately *not* the zoo's layers (``benchmarks/perf_model.py``
checks the fitted model on those): 3x3 convs from 96 channels at 64x64 down to 384 at 10x10, a
stride-2 3x3, 1x1 convs wide and narrow (one with stride 2), a 5x5, a depthwise 3x3, linear
layers at batch 1 to 16, and weights larger than L2 and than L3 (a 151 MB linear; a 1024->1536
3x3 whose CSR weights outgrow L3). Each is timed dense once (and, for 3x3 stride-1 convs, as
Winograd F(2x2) and F(4x4), with four more such layers from 32 to 640 channels that only the
dense kinds are timed on), then CSR on an unstructured mask and BSR8 and BSR4 on an 8x1 block
mask at a few densities, and the activation-sparse kernel (dense weights) on inputs with 0 to 95%
zeros; every kernel cold, as in a model run (``measure.KernelTimer``). The fit
is non-negative least squares on relative error (:func:`perf_model.fit`); the profile records the
target, TVM version, host CPU, caches and fit error.
"""
from __future__ import annotations

import logging
import sys
import time

import numpy as np
from tqdm import tqdm

from . import kinds, perf_model, profiles, sparse, targets
from .layer import conv_layer, linear_layer
from .measure import KernelTimer
from .ops.conv2d import Conv2dSpec
from .plan import dense_candidates, sparse_support

log = logging.getLogger("fscnn_tvm")

# (cin, cout, k, stride, hw, groups) | ("linear", in, out, batch)
LAYERS = [
    (96, 96, 3, 1, 64, 1),
    (192, 192, 3, 1, 24, 1),
    (384, 384, 3, 1, 10, 1),
    (160, 160, 3, 2, 40, 1),
    (48, 96, 5, 1, 20, 1),
    (128, 384, 1, 1, 32, 1),
    (768, 192, 1, 1, 12, 1),
    (48, 192, 1, 1, 48, 1),
    (384, 768, 1, 2, 24, 1),
    (1536, 384, 1, 1, 6, 1),
    (144, 144, 3, 1, 28, 144),
    ("linear", 4608, 1536, 1),
    ("linear", 1536, 768, 1),
    ("linear", 9216, 2048, 1),
    ("linear", 2048, 2048, 4),
    # weights past the caches (issue 17): a linear of 151 MB and a conv whose sparse weights at 0.3
    # outgrow L3 (streamed again per register tile), and linears at batch 8 and 16
    ("linear", 9216, 4096, 1),
    (1024, 1536, 3, 1, 14, 1),
    ("linear", 4096, 2048, 8),
    ("linear", 1024, 768, 16),
    # 1x1s that widen a small map (ResNet-50's conv3 at 14x14 and 7x7): the activation-sparse
    # kernel ran 1.4-2x over its prediction there when no calibration layer was like them (issue 16)
    (256, 1024, 1, 1, 14, 1),
    (512, 2048, 1, 1, 7, 1),
]
# 3x3 stride-1 layers timed with the dense kinds only (Winograd's terms: big maps, deep and narrow,
# a 14x14 map where F(2x2) and F(4x4) are close)
WINOGRAD_LAYERS = [(32, 48, 3, 1, 120, 1), (640, 640, 3, 1, 12, 1), (160, 320, 3, 1, 36, 1),
                   (384, 384, 3, 1, 14, 1)]
QUICK = [0, 2, 5, 9, 11]  # a subset for tests: 3x3, small 3x3, 1x1 wide and small, linear
DENSITIES = (0.5, 0.3, 0.1, 0.04)  # 0.5: where plans choose between dense and sparse
# input zero fractions the activation-sparse kernel is timed at (dense weights, every groups=1 conv)
ACT_ZEROS = (0.0, 0.5, 0.8, 0.95)


def _layer(entry, weight, input_zeros: float | None = None):
    if entry[0] == "linear":
        return linear_layer(entry[3], weight, input_zeros=input_zeros)
    cin, cout, k, stride, hw, groups = entry
    spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), (stride, stride), (k // 2,) * 4, (1, 1), groups)
    return conv_layer(spec, weight, input_zeros=input_zeros)


def _weight_shape(entry):
    if entry[0] == "linear":
        return (entry[2], entry[1])
    cin, cout, k, _, _, groups = entry
    return (cout, cin // groups, k, k)


def measure_samples(target, quick: bool = False, min_repeat_ms: int = 20, progress: bool = False):
    """(layer, kind, seconds) for every calibration measurement."""
    timer = KernelTimer(target, min_repeat_ms=min_repeat_ms)
    chosen = [LAYERS[i] for i in QUICK] if quick else LAYERS + WINOGRAD_LAYERS
    cuda = target.kind.name == "cuda"
    samples = []
    bar = tqdm(chosen, desc="calibrate", unit="layer", file=sys.stderr, disable=not progress)
    for i, entry in enumerate(bar):
        w = np.random.default_rng(i).standard_normal(_weight_shape(entry)).astype("float32")
        dense_layer = _layer(entry, w)
        for kind in [kinds.DENSE] if cuda else dense_candidates(dense_layer):
            samples.append((dense_layer, kind, timer.seconds(dense_layer, kind)))
        conv = entry[0] != "linear"
        if not cuda and entry not in WINOGRAD_LAYERS and (entry[5] == 1 if conv else entry[3] == 1):
            for zeros in ACT_ZEROS:  # dense weights, inputs with this many zeros (batch-1 linears)
                layer = _layer(entry, w, zeros)
                samples.append((layer, kinds.ACT_SPARSE, timer.seconds(layer, kinds.ACT_SPARSE)))
        if sparse_support(dense_layer) is not None or entry in WINOGRAD_LAYERS:
            continue
        for density in DENSITIES:
            layer = _layer(entry, w * sparse.magnitude_mask(w, 1 - density))
            samples.append((layer, "csr", timer.seconds(layer, "csr")))
            if conv:  # 8x1 blocks, run as BSR8 and as BSR4 (both compete for such weights)
                layer = _layer(entry, w * sparse.magnitude_mask(w, 1 - density, block=(8, 1)))
                samples += [(layer, kind, timer.seconds(layer, kind)) for kind in ("bsr8", "bsr4")]
    return samples


def calibrate(target="llvm", quick: bool = False, min_repeat_ms: int = 20, progress: bool = False):
    """Measure, fit and return a :class:`profiles.Profile` for ``target`` (not saved)."""
    target = targets.parse(target)
    start = time.perf_counter()
    samples = measure_samples(target, quick, min_repeat_ms, progress)
    lanes = targets.vector_lanes(target)
    cuda = target.kind.name == "cuda"
    coef, error = perf_model.fit(samples, lanes, profiles.BUILTIN_CUDA if cuda else profiles.BUILTIN, cuda,
                                 None if cuda else targets.caches(target))
    log.info("calibrated %d samples in %.0f s; fit median relative error %.1f%%",
             len(samples), time.perf_counter() - start, 100 * error)
    return profiles.Profile(targets.tag(target), coef, lanes,
                            profiles.profile_meta(len(samples), error, target), source="calibrated")
