"""A/B of the aligned CSR layout (taps split by column shift, every load aligned) against the
unaligned one, per layer at 90% sparsity, timed interleaved in one run; its results set
``kernels.ALIGN_MIN_CHANNELS``.

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/aligned.py
"""
from __future__ import annotations

import sys

import numpy as np
import tvm

from fscnn_tvm import kernels, prune, targets
from fscnn_tvm.measure import conv_layer
from fscnn_tvm.ops.conv2d import Conv2dSpec

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from layers import LAYERS, _compiled  # noqa: E402

EXTRA = {  # the other VGG16 3x3 shapes with fewer than 256 input channels
    "vgg.conv1_2": (64, 64, 3, 224),
    "vgg.conv2_1": (64, 128, 3, 112),
    "vgg.conv3_1": (128, 256, 3, 56),
    "r50.3x3_128@28": (128, 128, 3, 28),
    "r50.3x3_64@56": (64, 64, 3, 56),
}


def _build(spec, weight, target, aligned):
    """The CSR kernel, aligned or not, with the tile rule's choice for that layout."""
    lanes = targets.vector_lanes(target)
    align = lanes if aligned else 1
    knobs = {"align": align, "tile_vectors": kernels.sparse_conv_tile(spec, 1, lanes, align) // lanes}
    lib, args, _ = _compiled(conv_layer(spec, weight), "csr", target, knobs)
    return lib.mod.time_evaluator("main", tvm.cpu(), number=3, repeat=1), args


def main() -> int:
    target = targets.parse("llvm")
    print(f"target {target}, 90% unstructured, median of 7 interleaved rounds\n")
    print("| layer | rule | unaligned ms | aligned ms | aligned speedup |")
    print("|---|---|---|---|---|")
    for name, (cin, cout, k, hw) in {**LAYERS, **EXTRA}.items():
        if k == 1:
            continue
        spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), padding=(k // 2,) * 4)
        w = np.random.default_rng(1).standard_normal((cout, cin, k, k)).astype("float32")
        w *= prune.magnitude_mask(w, 0.9)
        built = {v: _build(spec, w, target, v) for v in (False, True)}
        times = {v: [] for v in built}
        for _ in range(7):
            for v, (ev, args) in built.items():
                times[v].append(ev(*args).mean * 1e3)
        off, on = np.median(times[False]), np.median(times[True])
        lanes = targets.vector_lanes(target)
        rule = "aligned" if kernels.sparse_conv_align(spec, 1, lanes) > 1 else "unaligned"
        print(f"| {name} | {rule} | {off:.3f} | {on:.3f} | {off / on:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
