"""The packed 1x1 GEMM (``conv2d_pointwise_packed``) at three register tiles against the rules' kernel
and the ``oc_blocked`` tile, per 1x1 layer, timed cold as in a model run (``measure.KernelTimer``).

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/pointwise_packed.py

Layers: ResNet-50's three downsamples (1x1 stride 2) and its stride-1 1x1s on 14x14 and 7x7 maps
(pixels not whole vectors). Medians of interleaved rounds; GF/s are the layer's FLOPs over time.
"""
from __future__ import annotations

import argparse

import numpy as np

from fscnn_tvm import kernels, measure, targets
from fscnn_tvm.kinds import KERNEL_ATTR
from fscnn_tvm.layer import conv_layer
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.schedules.x86 import rules
from fscnn_tvm.testing import interleaved, markdown_table

LAYERS = [(256, 512, 56, 2), (512, 1024, 28, 2), (1024, 2048, 14, 2), (1024, 256, 14, 1), (256, 1024, 14, 1),
          (2048, 512, 7, 1), (512, 2048, 7, 1)]
TILES = [(6, 4), (8, 2), (12, 1)]  # (channels, vectors of pixels)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    target = targets.parse("llvm")
    lanes = targets.vector_lanes(target)
    timer = measure.KernelTimer(target)
    print(f"target {target}, caches {targets.caches(target)}\n")
    rows = []
    for ic, oc, hw, stride in LAYERS:
        spec = Conv2dSpec(1, ic, hw, hw, oc, (1, 1), (stride, stride))
        weight = np.random.default_rng(1).standard_normal((oc, ic, 1, 1)).astype("float32")
        layer = conv_layer(spec, weight)
        picked = kernels.build_kernel(layer, "dense", target).func.attrs[KERNEL_ATTR]
        blocked = {"oc_block": rules.conv_tile(spec, lanes)[2]}  # no cache sizes: the oc_blocked tile
        runs = {"rules": lambda: timer.seconds(layer, "dense"),
                "oc_blocked": lambda: timer.seconds(layer, "dense", blocked)}
        for t, v in TILES:
            knobs = {"pointwise_tile": (t, v * lanes)}
            runs[f"{t}x{v * lanes}"] = lambda knobs=knobs: timer.seconds(layer, "dense", knobs)
        med = interleaved(runs, args.rounds, self_timed=True)
        flop = 2.0 * ic * oc * spec.out_height * spec.out_width
        rows.append([f"{ic}->{oc} 1x1/{stride} @{hw}", f"{4 * ic * hw * hw / 2**20:.1f}", str(picked)]
                    + [f"{s * 1e3:.3f} ({flop / s / 1e9:.0f})" for s in med.values()])
    print(markdown_table(["layer", "input MB", "the rules' kernel", "its ms (GF/s)", "oc_blocked ms (GF/s)"]
                         + [f"packed {name} ms (GF/s)" for name in list(runs)[2:]], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
