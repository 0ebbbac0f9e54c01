"""Per-layer kernels: direct, Winograd and sparse kinds against PyTorch and ONNX Runtime, in one run.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/layers.py

Layers: VGG16 conv1_2 .. conv5_2, ResNet-50 1x1 1024->256@14, 3x3 64@56, 3x3 256@14,
1x1 64->256@56, 256->64@56, and MobileNetV2's pointwise 16->96@112, 144->24@56 and depthwise
3x3 96@112 stride 2, 144@56 (conv + ReLU, batch 1; the depthwise ones dense only). "direct" is
the dense kind: the pointwise GEMM kernel on 1x1 layers over maps of whole vectors. Dense weights (sparsity 0): our direct kernel and
Winograd F(2x2)/F(4x4) (3x3 layers) against torch's and ORT's conv, effective GF/s = dense
FLOPs / time (above the FMA roof is the point of Winograd). Sparse weights: CSR on an
unstructured magnitude mask, BSR8 on an 8x1 block mask of the same sparsity, effective GF/s =
2 * nnz * OH * OW / time. Every kernel output is checked against torch before it is timed;
rounds are interleaved and medians reported.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
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
    "vgg.conv1_2": (64, 64, 3, 224),
    "vgg.conv2_2": (128, 128, 3, 112),
    "vgg.conv3_2": (256, 256, 3, 56),
    "vgg.conv4_2": (512, 512, 3, 28),
    "vgg.conv5_2": (512, 512, 3, 14),
    "r50.1x1_1024_256@14": (1024, 256, 1, 14),
    "r50.3x3_64@56": (64, 64, 3, 56),
    "r50.3x3_256@14": (256, 256, 3, 14),
    "r50.1x1_64_256@56": (64, 256, 1, 56),
    "r50.1x1_256_64@56": (256, 64, 1, 56),
    # (cin, cout, kernel, spatial, stride, groups): MobileNetV2's pointwise and depthwise layers
    "mb2.1x1_16_96@112": (16, 96, 1, 112),
    "mb2.1x1_144_24@56": (144, 24, 1, 56),
    "mb2.dw3x3_96@112/2": (96, 96, 3, 112, 2, 96),
    "mb2.dw3x3_144@56": (144, 144, 3, 56, 1, 144),
}


def _ort_conv(w: np.ndarray, k: int, threads: int, stride: int = 1, groups: int = 1):
    """ONNX Runtime running conv + ReLU with weight ``w`` (what its CPU provider does for a layer)."""
    import onnxruntime as ort  # noqa: PLC0415

    conv = torch.nn.Sequential(torch.nn.Conv2d(w.shape[1] * groups, w.shape[0], k, stride, k // 2,
                                               groups=groups, bias=False), torch.nn.ReLU())
    conv[0].weight.data = torch.from_numpy(w)
    path = os.path.join(tempfile.mkdtemp(), "conv.onnx")
    torch.onnx.export(conv.eval(), (torch.zeros(1, w.shape[1] * groups, 8, 8),), path, input_names=["x"],
                      dynamic_axes={"x": {2: "h", 3: "w"}}, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def measure(name, cin, cout, k, hw, sparsity, target, rounds, threads, stride=1, groups=1):
    """Median ms of every kind (and torch, ORT at sparsity 0) and each kind's useful FLOPs."""
    spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), (stride, stride), (k // 2,) * 4, groups=groups)
    rng = np.random.default_rng(1)
    dense_w = rng.standard_normal((cout, cin // groups, k, k)).astype("float32") * 0.05
    winograd = k == 3 and stride == 1 and groups == 1
    if sparsity == 0:
        weights = {"dense": dense_w, **({"winograd2": dense_w, "winograd4": dense_w} if winograd else {})}
    else:
        weights = {"dense": dense_w * sparse.magnitude_mask(dense_w, sparsity),
                   "csr": dense_w * sparse.magnitude_mask(dense_w, sparsity),
                   "bsr8": dense_w * sparse.magnitude_mask(dense_w, sparsity, block=(8, 1))}
    runs = {}
    for kind, w in weights.items():
        lib, args, x = compiled_kernel(conv_layer(spec, w), kind, target)
        ref = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, stride,
                                                    k // 2, 1, groups))
        err = float(np.abs(args[-1].numpy().reshape(ref.shape) - ref.numpy()).max() / max(float(ref.abs().max()), 1e-30))
        if err > TOLERANCE:
            raise RuntimeError(f"{name} {kind}: relative error {err:.1e}")
        evaluator = lib.mod.time_evaluator("main", tvm.cpu(), number=3, repeat=1)
        runs[kind] = (lambda ev=evaluator, a=args: ev(*a).mean,
                      np.count_nonzero(w) if kind in ("csr", "bsr8") else w.size)
    torch.set_num_threads(threads)
    x = np.random.default_rng(0).standard_normal((1, cin, hw, hw)).astype("float32")
    xt = torch.from_numpy(x)
    wt = torch.from_numpy(weights["dense"])

    def timed(fn):
        def run():
            start = time.perf_counter()
            for _ in range(3):
                fn()
            return (time.perf_counter() - start) / 3
        return run

    runners = {"torch": timed(lambda: torch.relu(torch.nn.functional.conv2d(xt, wt, None, stride, k // 2, 1,
                                                                           groups)))}
    if sparsity == 0:
        ort_run = _ort_conv(weights["dense"], k, threads, stride, groups)
        runners["ort"] = timed(lambda: ort_run(x))
    runners.update({kind: fn for kind, (fn, _) in runs.items()})
    with torch.no_grad():
        med = {kind: t * 1e3 for kind, t in interleaved(runners, rounds, self_timed=True).items()}
    pixels = spec.out_height * spec.out_width
    flops = {kind: 2 * nnz * pixels for kind, (_, nnz) in runs.items()}
    flops["torch"] = flops["ort"] = 2 * dense_w.size * pixels
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
    dense_rows, sparse_rows = [], []
    for name in args.layers.split(","):
        cin, cout, k, hw, *strided = LAYERS[name]
        for sp in (float(s) for s in args.sparsity.split(",")):
            if sp and strided and strided[1] > 1:
                continue  # grouped convs run the dense kinds only
            print(f"... {name} at {sp:.2f}", file=sys.stderr, flush=True)
            med, flops = measure(name, cin, cout, k, hw, sp, target, args.rounds, args.threads, *strided)
            if sp == 0:
                row = [name]
                for kind in ("torch", "ort", "dense", "winograd2", "winograd4"):
                    row += ([f"{med[kind]:.3f}", f"{flops['torch'] / med[kind] / 1e6:.0f}"] if kind in med
                            else ["-", "-"])
                best = min((kd for kd in ("dense", "winograd2", "winograd4") if kd in med), key=med.get)
                dense_rows.append(row + [best, f"{med['ort'] / med[best]:.2f}x", f"{med['dense'] / med[best]:.2f}x"])
                continue
            row = [name, f"{sp:.2f}", f"{med['torch']:.3f}", f"{med['dense']:.3f}"]
            for kind in ("csr", "bsr8"):
                row += [f"{med[kind]:.3f}", f"{flops[kind] / med[kind] / 1e6:.0f}", f"{med['torch'] / med[kind]:.2f}x"]
            sparse_rows.append(row)
    if dense_rows:
        print("Dense weights (GF/s: dense FLOPs / time)\n")
        print(markdown_table(["layer", "torch ms", "torch GF/s", "ORT ms", "ORT GF/s", "direct ms", "direct GF/s",
                              "F2 ms", "F2 GF/s", "F4 ms", "F4 GF/s", "fastest", "fastest x ORT",
                              "fastest x direct"], dense_rows))
    if sparse_rows:
        print("\nSparse weights (GF/s: useful FLOPs / time)\n")
        print(markdown_table(["layer", "sparsity", "torch ms", "direct ms", "CSR ms", "CSR GF/s", "CSR x torch",
                              "BSR8 ms", "BSR8 GF/s", "BSR8 x torch"], sparse_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
