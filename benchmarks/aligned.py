"""A/B of the aligned CSR layout (taps split by column shift, every load aligned) against the
unaligned one, per layer at 90% sparsity, timed interleaved in one run; its results set
``x86_rules.ALIGN_MIN_CHANNELS``.

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/aligned.py
"""
from __future__ import annotations

import sys

import numpy as np
import tvm

from fscnn_tvm import sparse, targets
from fscnn_tvm.layer import conv_layer
from fscnn_tvm.measure import compiled_kernel
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.schedules.x86 import rules as x86_rules
from fscnn_tvm.testing import interleaved, markdown_table

from layers import LAYERS  # benchmarks/ is on the path of a script run from it

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
    knobs = {"align": align, "tile_vectors": x86_rules.sparse_conv_tile(spec, 1, lanes, align) // lanes}
    lib, args, _ = compiled_kernel(conv_layer(spec, weight), "csr", target, knobs)
    return lib.mod.time_evaluator("main", tvm.cpu(), number=3, repeat=1), args


def main() -> int:
    target = targets.parse("llvm")
    print(f"target {target}, 90% unstructured, median of 7 interleaved rounds\n")
    rows = []
    for name, (cin, cout, k, hw) in {**LAYERS, **EXTRA}.items():
        if k == 1:
            continue
        spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), padding=(k // 2,) * 4)
        w = np.random.default_rng(1).standard_normal((cout, cin, k, k)).astype("float32")
        w *= sparse.magnitude_mask(w, 0.9)
        built = {v: _build(spec, w, target, v) for v in (False, True)}
        med = interleaved({v: lambda ev=ev, args=args: ev(*args).mean for v, (ev, args) in built.items()}, 7,
                          self_timed=True)
        off, on = med[False] * 1e3, med[True] * 1e3
        lanes = targets.vector_lanes(target)
        rule = "aligned" if x86_rules.sparse_conv_align(spec, 1, lanes) > 1 else "unaligned"
        print(f"... {name}: {off / on:.2f}x", file=sys.stderr, flush=True)
        rows.append([name, rule, f"{off:.3f}", f"{on:.3f}", f"{off / on:.2f}"])
    print(markdown_table(["layer", "rule", "unaligned ms", "aligned ms", "aligned speedup"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
