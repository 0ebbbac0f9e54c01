"""The activation-sparse conv against our dense kinds on one layer, by the input's zero fraction.

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/act_sparse.py \\
        --layer 512,512,3,28 --zeros 0,0.5,0.7,0.8,0.9 --rounds 15

Every kernel is built by the compiler's own kernel builder for the layer (dense weights), checked
against PyTorch on each input, and timed in interleaved rounds (each round: every kind once, on
inputs with the given fraction of zeros at random places), so the ratios hold on a noisy machine.
``x direct`` is the direct kernel's time over the activation-sparse one's; ``x best dense`` the
same against the fastest dense kind (Winograd for a 3x3).
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="512,512,3,28", help="CIN,COUT,K,HW (stride 1, same padding)")
    p.add_argument("--zeros", default="0,0.5,0.7,0.8,0.9")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--weight-sparsity", type=float, default=None,
                   help="also time CSR on the weights magnitude-pruned to this sparsity (both skipped?)")
    args = p.parse_args()

    import torch  # noqa: PLC0415
    import tvm  # noqa: PLC0415

    from fscnn_tvm import kinds, perf_model, plan, profiles, sparse, targets  # noqa: PLC0415
    from fscnn_tvm.layer import conv_layer  # noqa: PLC0415
    from fscnn_tvm.measure import compiled_kernel  # noqa: PLC0415
    from fscnn_tvm.ops.conv2d import Conv2dSpec  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, markdown_table, relative_error  # noqa: PLC0415

    cin, cout, k, hw = (int(v) for v in args.layer.split(","))
    spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), (1, 1), (k // 2,) * 4)
    target = targets.parse("llvm")
    w = np.random.default_rng(0).standard_normal((cout, cin, k, k)).astype("float32") * 0.05
    layer = conv_layer(spec, w, act="none")
    dense_kinds = plan.dense_candidates(layer)
    libs = {kind: compiled_kernel(layer, kind, target)[:2] for kind in dense_kinds + [kinds.ACT_SPARSE]}
    # The kernel as a plan builds it: the input's nonzeros counted first, and below the break-even
    # zeros predicted against the fallback kind (direct; the best dense kind) that kind runs instead.
    profile = profiles.load_profile(target)
    predicted = {kd: perf_model.predict(layer, kd, profile) for kd in dense_kinds}
    fastest = min(dense_kinds, key=predicted.get)
    fallbacks = {}
    for kd in dict.fromkeys([kinds.DENSE, fastest]):
        even = plan.act_break_even(layer, profile, predicted[kd])
        fallbacks[kd] = even
        libs[f"actsparse>{kd}"] = compiled_kernel(layer, kinds.ACT_SPARSE, target,
                                                  {"fallback": kd, "fallback_zeros": even})[:2]
    dev = tvm.cpu()
    rng = np.random.default_rng(1)
    zeros = [float(z) for z in args.zeros.split(",")]
    if args.weight_sparsity is not None:  # CSR on pruned weights, and actsparse on them (zeros stored)
        pruned = conv_layer(spec, w * sparse.magnitude_mask(w, args.weight_sparsity), act="none")
        libs["csr pruned"] = compiled_kernel(pruned, kinds.CSR, target)[:2]
        libs["actsparse pruned"] = compiled_kernel(pruned, kinds.ACT_SPARSE, target)[:2]
    inputs = {}
    for z in zeros:
        x = rng.standard_normal(layer.in_shape).astype("float32")
        x[rng.random(x.shape) < z] = 0.0
        inputs[z] = x
        ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=k // 2).numpy()
        for kind, (lib, a) in libs.items():
            lib(tvm.runtime.tensor(x.reshape(a[0].shape), dev), *a[1:])
            if "pruned" not in kind:
                err = relative_error(a[-1].numpy().reshape(ref.shape), ref)
                assert err <= 1e-4, (kind, z, err)

    def runner(kind, z):
        lib, a = libs[kind]
        ev = lib.mod.time_evaluator("main", dev, number=1, repeat=3)
        x = tvm.runtime.tensor(inputs[z].reshape(a[0].shape), dev)  # the pointwise kernel sees flat maps
        return lambda: float(np.median(ev(x, *a[1:]).results))

    runners = {(kind, None): runner(kind, zeros[0]) for kind in dense_kinds}
    if args.weight_sparsity is not None:
        runners[("csr pruned", None)] = runner("csr pruned", zeros[0])
        runners.update({("actsparse pruned", z): runner("actsparse pruned", z) for z in zeros})
    runners.update({(kinds.ACT_SPARSE, z): runner(kinds.ACT_SPARSE, z) for z in zeros})
    runners.update({(f"actsparse>{kd}", z): runner(f"actsparse>{kd}", z) for kd in fallbacks for z in zeros})
    med = interleaved(runners, args.rounds, self_timed=True)
    ms = {key: t * 1e3 for key, t in med.items()}
    best = min(dense_kinds, key=lambda kd: ms[(kd, None)])
    print(f"layer {cin}->{cout} {k}x{k} @{hw}x{hw}, target {targets.tag(target)}; dense kinds (ms): "
          + ", ".join(f"{kd} {ms[(kd, None)]:.2f}" for kd in dense_kinds))
    rows = [[f"{z:.2f}", f"{ms[(kinds.ACT_SPARSE, z)]:.2f}", f"{ms[('dense', None)] / ms[(kinds.ACT_SPARSE, z)]:.2f}",
             f"{ms[(best, None)] / ms[(kinds.ACT_SPARSE, z)]:.2f} ({best})"] for z in zeros]
    for kd, even in fallbacks.items():
        for row, z in zip(rows, zeros):
            t = ms[(f"actsparse>{kd}", z)]
            row += [f"{t:.2f}", f"{ms[('dense', None)] / t:.2f}", f"{ms[(best, None)] / t:.2f}"]
    heads = ["input zeros", "actsparse ms", "x direct", "x best dense"]
    for kd, even in fallbacks.items():
        heads += [f"falls back to {kd} below {even:.2f} zeros: ms", "x direct", "x best dense"]
    print(markdown_table(heads, rows))
    if args.weight_sparsity is not None:
        print(f"\nweights pruned to {args.weight_sparsity:.2f}: CSR {ms[('csr pruned', None)]:.2f} ms (any input); "
              "actsparse on them (their zeros multiplied): "
              + ", ".join(f"zeros {z:.2f} {ms[('actsparse pruned', z)]:.2f} ms" for z in zeros))


if __name__ == "__main__":
    main()
