"""The pointwise GEMM's two loop orders side by side: pixel block outer (one epilogue per block)
against the chunked order (``rules.pointwise_chunk``: pixel chunk in L2, channel block's weights
in L1, epilogue per tile), on this machine's caches, whatever the rule would pick here.

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/pointwise_orders.py

Both outputs are checked against numpy before timing; medians of interleaved rounds.
"""
from __future__ import annotations

import argparse

import numpy as np
import tvm

from fscnn_tvm import fast_math, kernels, targets
from fscnn_tvm.layer import conv_layer
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.schedules import schedule_func
from fscnn_tvm.schedules.x86.rules import pointwise_chunk, pointwise_chunk_tiles
from fscnn_tvm.testing import TOLERANCE, interleaved, markdown_table

SHAPES = [(16, 96, 112), (24, 144, 56), (144, 24, 56), (64, 256, 56), (256, 64, 56), (128, 512, 28),
          (512, 128, 28), (1024, 256, 16), (2048, 512, 8)]


def timed(spec: Conv2dSpec, chunk: int, target):
    w = np.random.default_rng(1).standard_normal((spec.out_channels, spec.in_channels, 1, 1)).astype("float32")
    kernel = kernels.build_kernel(conv_layer(spec, w), "dense", target)
    func = kernel.func.with_attr("fscnn.pixel_chunk", chunk)
    lib = fast_math.compile(kernel.module(schedule_func(func, target)), target)
    in_shape, out_shape = kernel.shapes(conv_layer(spec, w))
    x = np.random.default_rng(0).standard_normal(in_shape).astype("float32")
    args = [tvm.runtime.tensor(a, tvm.cpu()) for a in [x] + kernel.constants + [np.zeros(out_shape, "float32")]]
    lib(*args)
    ref = np.maximum(np.einsum("oi,nip->nop", w[:, :, 0, 0], x), 0)
    err = float(np.abs(args[-1].numpy() - ref).max() / np.abs(ref).max())
    if err > TOLERANCE:
        raise RuntimeError(f"{spec}: chunk {chunk}: relative error {err:.1e}")
    ev = lib.mod.time_evaluator("main", tvm.cpu(), number=5, repeat=1)
    return lambda: ev(*args).mean, err


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    target = targets.parse("llvm")
    caches = targets.caches(target)
    print(f"target {target}, caches {caches}\n")
    rows = []
    for ic, oc, hw in SHAPES:
        spec = Conv2dSpec(1, ic, hw, hw, oc, (1, 1))
        kernel = kernels.build_kernel(conv_layer(spec, np.zeros((oc, ic, 1, 1), "float32")), "dense", target)
        columns, oc_tile = int(kernel.func.attrs["fscnn.ow_tile"]), int(kernel.func.attrs["fscnn.oc_block"])
        rule = pointwise_chunk(spec, columns, oc_tile, caches.l1, caches.l2, str(target.attrs.get("mcpu", "")))
        chunk = rule or pointwise_chunk_tiles(spec, columns, caches.l2)
        (block, e1), (chunked, e2) = timed(spec, 0, target), timed(spec, chunk, target)
        med = interleaved({"block": block, "chunked": chunked}, args.rounds, self_timed=True)
        rows.append([f"{ic}->{oc}@{hw}", f"{oc_tile}x{columns}", str(chunk), "chunked" if rule else "block",
                     f"{med['block'] * 1e3:.3f}", f"{med['chunked'] * 1e3:.3f}",
                     f"{med['block'] / med['chunked']:.2f}x", f"{max(e1, e2):.1e}"])
    print(markdown_table(["layer", "tile", "chunk tiles", "rule picks", "block-outer ms", "chunked ms",
                          "chunked speedup", "max rel err"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
