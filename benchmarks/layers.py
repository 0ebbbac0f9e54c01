"""Per-layer kernels: our dense, CSR and BSR8 against PyTorch's conv2d, side by side in one run.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/layers.py

Layers: VGG16 conv2_2, conv3_2, conv4_2, conv5_2 and ResNet-50 1x1 1024->256@14, 3x3 256@14,
1x1 64->256@56. CSR runs an unstructured magnitude mask; BSR8 a block-pruned (8x1) mask of the
same sparsity. Effective GF/s = 2 * nnz * OH * OW / time. Every kernel output is checked
against torch before it is timed; rounds are interleaved and medians reported.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import tvm

from fscnn_tvm import sparse, targets
from fscnn_tvm.layer import conv_layer
from fscnn_tvm.measure import compiled_kernel
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.testing import TOLERANCE, interleaved, markdown_table

LAYERS = {  # name: (in_channels, out_channels, kernel, spatial)
    "vgg.conv2_2": (128, 128, 3, 112),
    "vgg.conv3_2": (256, 256, 3, 56),
    "vgg.conv4_2": (512, 512, 3, 28),
    "vgg.conv5_2": (512, 512, 3, 14),
    "r50.1x1_1024_256@14": (1024, 256, 1, 14),
    "r50.3x3_256@14": (256, 256, 3, 14),
    "r50.1x1_64_256@56": (64, 256, 1, 56),
}


def measure(name, cin, cout, k, hw, sparsity, target, rounds, threads):
    spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), padding=(k // 2,) * 4)
    rng = np.random.default_rng(1)
    dense_w = rng.standard_normal((cout, cin, k, k)).astype("float32") * 0.05
    weights = {"dense": dense_w,
               "csr": dense_w * sparse.magnitude_mask(dense_w, sparsity),
               "bsr8": dense_w * sparse.magnitude_mask(dense_w, sparsity, block=(8, 1))}
    runs = {}
    for kind, w in weights.items():
        if kind != "dense" and sparsity == 0:
            continue
        lib, args, x = compiled_kernel(conv_layer(spec, w), kind, target)
        ref = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=k // 2))
        err = float(np.abs(args[-1].numpy() - ref.numpy()).max() / max(float(ref.abs().max()), 1e-30))
        if err > TOLERANCE:
            raise RuntimeError(f"{name} {kind}: relative error {err:.1e}")
        evaluator = lib.mod.time_evaluator("main", tvm.cpu(), number=3, repeat=1)
        runs[kind] = (lambda ev=evaluator, a=args: ev(*a).mean, np.count_nonzero(w))
    torch.set_num_threads(threads)
    xt = torch.from_numpy(np.random.default_rng(0).standard_normal((1, cin, hw, hw)).astype("float32"))
    wt = torch.from_numpy(weights["csr"] if sparsity else dense_w)

    def torch_run():
        start = time.perf_counter()
        for _ in range(3):
            torch.relu(torch.nn.functional.conv2d(xt, wt, padding=k // 2))
        return (time.perf_counter() - start) / 3

    runners = {"torch": torch_run, **{kind: fn for kind, (fn, _) in runs.items()}}
    med = {kind: t * 1e3 for kind, t in interleaved(runners, rounds, self_timed=True).items()}
    flops = {kind: 2 * nnz * hw * hw for kind, (_, nnz) in runs.items()}
    return med, flops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", default="0,0.5,0.7,0.8,0.9,0.95")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    target = targets.parse("llvm")
    print(f"target {target}, {args.threads} thread(s), median of {args.rounds} interleaved rounds\n")
    rows = []
    for name in args.layers.split(","):
        cin, cout, k, hw = LAYERS[name]
        for sp in (float(s) for s in args.sparsity.split(",")):
            print(f"... {name} at {sp:.2f}", file=sys.stderr, flush=True)
            med, flops = measure(name, cin, cout, k, hw, sp, target, args.rounds, args.threads)
            row = [name, f"{sp:.2f}", f"{med['torch']:.3f}", f"{med['dense']:.3f}"]
            for kind in ("csr", "bsr8"):
                row += ([f"{med[kind]:.3f}", f"{flops[kind] / med[kind] / 1e6:.0f}", f"{med['torch'] / med[kind]:.2f}x"]
                        if kind in med else ["-", "-", "-"])
            rows.append(row)
    print(markdown_table(["layer", "sparsity", "torch ms", "dense ms", "CSR ms", "CSR GF/s", "CSR x torch",
                          "BSR8 ms", "BSR8 GF/s", "BSR8 x torch"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
