"""Performance model vs measurement: a grid of layer shapes x sparsities, every kernel kind timed.

    # measure the grid (minutes) and keep the samples, then score the model against them
    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/perf_model.py collect -o benchmarks/perf_model_samples.json
    .venv/bin/python benchmarks/perf_model.py score benchmarks/perf_model_samples.json [--profile P]
    # whole models: the auto plan's kernels against the oracle's (fastest measured kernel per layer)
    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/perf_model.py plans

Shapes: every distinct conv/linear of VGG16 and ResNet-50 at 224x224, AlexNet's and
MobileNetV2's larger 1x1s, odd ones (5x5, 7x7 stride 1, dilation 2, odd sizes, batch 4), and
linears at batch 8 and maps of 320x320 (weights and maps past the caches). Every kernel is timed
cold, as in a model run (``measure.KernelTimer``). Per shape: our dense-weight kinds once, and at each sparsity the CSR kernel on an unstructured mask,
the BSR8 and CSR kernels on an 8x1 block mask (convs). ``score`` reports the decision accuracy
(the model's choice is the measured fastest, or within 5% of it), the median relative error of
each kind's predicted time, and the worst misses.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from fscnn_tvm import kinds, perf_model, plan, profiles, sparse, targets
from fscnn_tvm.layer import conv_layer, linear_layer
from fscnn_tvm.measure import KernelTimer
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.testing import markdown_table

SPARSITIES = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)

# name: ("conv", cin, cout, k, stride, pad, dilation, hw, batch) | ("linear", in, out, batch)
GRID = {
    "vgg.conv1_2": ("conv", 64, 64, 3, 1, 1, 1, 224, 1),
    "vgg.conv2_1": ("conv", 64, 128, 3, 1, 1, 1, 112, 1),
    "vgg.conv2_2": ("conv", 128, 128, 3, 1, 1, 1, 112, 1),
    "vgg.conv3_1": ("conv", 128, 256, 3, 1, 1, 1, 56, 1),
    "vgg.conv3_2": ("conv", 256, 256, 3, 1, 1, 1, 56, 1),
    "vgg.conv4_1": ("conv", 256, 512, 3, 1, 1, 1, 28, 1),
    "vgg.conv4_2": ("conv", 512, 512, 3, 1, 1, 1, 28, 1),
    "vgg.conv5_2": ("conv", 512, 512, 3, 1, 1, 1, 14, 1),
    "vgg.fc6": ("linear", 25088, 4096, 1),
    "vgg.fc7": ("linear", 4096, 4096, 1),
    "vgg.fc8": ("linear", 4096, 1000, 1),
    "r50.l1.1x1_64_64": ("conv", 64, 64, 1, 1, 0, 1, 56, 1),
    "r50.l1.3x3_64": ("conv", 64, 64, 3, 1, 1, 1, 56, 1),
    "r50.l1.1x1_64_256": ("conv", 64, 256, 1, 1, 0, 1, 56, 1),
    "r50.l1.1x1_256_64": ("conv", 256, 64, 1, 1, 0, 1, 56, 1),
    "r50.l2.1x1_256_128": ("conv", 256, 128, 1, 1, 0, 1, 56, 1),
    "r50.l2.3x3_128_s2": ("conv", 128, 128, 3, 2, 1, 1, 56, 1),
    "r50.l2.down_256_512_s2": ("conv", 256, 512, 1, 2, 0, 1, 56, 1),
    "r50.l2.1x1_128_512": ("conv", 128, 512, 1, 1, 0, 1, 28, 1),
    "r50.l2.1x1_512_128": ("conv", 512, 128, 1, 1, 0, 1, 28, 1),
    "r50.l2.3x3_128": ("conv", 128, 128, 3, 1, 1, 1, 28, 1),
    "r50.l3.1x1_512_256": ("conv", 512, 256, 1, 1, 0, 1, 28, 1),
    "r50.l3.3x3_256_s2": ("conv", 256, 256, 3, 2, 1, 1, 28, 1),
    "r50.l3.down_512_1024_s2": ("conv", 512, 1024, 1, 2, 0, 1, 28, 1),
    "r50.l3.1x1_256_1024": ("conv", 256, 1024, 1, 1, 0, 1, 14, 1),
    "r50.l3.1x1_1024_256": ("conv", 1024, 256, 1, 1, 0, 1, 14, 1),
    "r50.l3.3x3_256": ("conv", 256, 256, 3, 1, 1, 1, 14, 1),
    "r50.l4.1x1_1024_512": ("conv", 1024, 512, 1, 1, 0, 1, 14, 1),
    "r50.l4.3x3_512_s2": ("conv", 512, 512, 3, 2, 1, 1, 14, 1),
    "r50.l4.down_1024_2048_s2": ("conv", 1024, 2048, 1, 2, 0, 1, 14, 1),
    "r50.l4.1x1_512_2048": ("conv", 512, 2048, 1, 1, 0, 1, 7, 1),
    "r50.l4.1x1_2048_512": ("conv", 2048, 512, 1, 1, 0, 1, 7, 1),
    "r50.l4.3x3_512": ("conv", 512, 512, 3, 1, 1, 1, 7, 1),
    "r50.fc": ("linear", 2048, 1000, 1),
    "alexnet.conv2_5x5": ("conv", 64, 192, 5, 1, 2, 1, 27, 1),
    "alexnet.conv3": ("conv", 192, 384, 3, 1, 1, 1, 13, 1),
    "alexnet.conv4": ("conv", 384, 256, 3, 1, 1, 1, 13, 1),
    "mbv2.1x1_96_576": ("conv", 96, 576, 1, 1, 0, 1, 14, 1),
    "mbv2.1x1_960_320": ("conv", 960, 320, 1, 1, 0, 1, 7, 1),
    "odd.7x7_s1": ("conv", 32, 64, 7, 1, 3, 1, 28, 1),
    "odd.3x3_dil2": ("conv", 64, 64, 3, 1, 2, 2, 33, 1),
    "odd.3x3_odd": ("conv", 96, 160, 3, 1, 1, 1, 19, 1),
    "odd.3x3_batch4": ("conv", 128, 128, 3, 1, 1, 1, 14, 4),
    "odd.1x1_batch4": ("conv", 256, 256, 1, 1, 0, 1, 14, 4),
    "odd.linear_batch4": ("linear", 1024, 1024, 4),
    # weights past L2 and L3, batches of linears, big maps (issue 17)
    "big.linear_4096_b8": ("linear", 4096, 4096, 8),
    "big.linear_9216_4096": ("linear", 9216, 4096, 1),
    "big.linear_9216_4096_b8": ("linear", 9216, 4096, 8),
    "big.linear_25088_b8": ("linear", 25088, 4096, 8),
    "big.3x3_32@320": ("conv", 32, 32, 3, 1, 1, 1, 320, 1),
    "big.1x1_16_64@320": ("conv", 16, 64, 1, 1, 0, 1, 320, 1),
}


def make_layer(name: str, weight: np.ndarray):
    entry = GRID[name]
    if entry[0] == "linear":
        return linear_layer(entry[3], weight, name=name)
    _, cin, cout, k, s, p, d, hw, n = entry
    spec = Conv2dSpec(n, cin, hw, hw, cout, (k, k), (s, s), (p,) * 4, (d, d))
    return conv_layer(spec, weight, name=name)


def weight_shape(name: str) -> tuple[int, ...]:
    entry = GRID[name]
    return (entry[2], entry[1]) if entry[0] == "linear" else (entry[2], entry[1], entry[3], entry[3])


def collect(args) -> int:
    target = targets.parse(args.target)
    timer = KernelTimer(target, min_repeat_ms=args.min_repeat_ms)
    names = args.layers.split(",") if args.layers else list(GRID)
    samples = []
    start = time.perf_counter()
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        w = rng.standard_normal(weight_shape(name)).astype("float32")
        conv = GRID[name][0] == "conv"
        dense_layer = make_layer(name, w)
        rows = [dict(sparsity=0.0, mask="dense", kind=kind, seconds=timer.seconds(dense_layer, kind))
                for kind in plan.dense_candidates(dense_layer)]
        dense_s = rows[0]["seconds"]
        for sp in SPARSITIES:
            masks = {"unstructured": sparse.magnitude_mask(w, sp)}
            if conv:
                masks["block8"] = sparse.magnitude_mask(w, sp, block=(8, 1))
            for mask_name, mask in masks.items():
                layer = make_layer(name, w * mask)
                kinds = ["csr"] + (["bsr8"] if mask_name == "block8" else [])
                for kind in kinds:
                    rows.append(dict(sparsity=sp, mask=mask_name, kind=kind, seconds=timer.seconds(layer, kind)))
        for row in rows:
            samples.append(dict(layer=name, shape=GRID[name], **row))
        print(f"[{i + 1}/{len(names)}] {name}: dense {dense_s * 1e3:.3f} ms, {len(rows)} samples "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    meta = dict(target=targets.tag(target), host=targets.host_cpu(), date=time.strftime("%Y-%m-%d"),
                min_repeat_ms=args.min_repeat_ms)
    with open(args.output, "w") as f:
        json.dump(dict(meta=meta, samples=samples), f, indent=0)
    print(f"wrote {len(samples)} samples to {args.output}", file=sys.stderr)
    return 0


def _layer_for(sample, cache={}):  # noqa: B006 - per-process cache of synthetic weights
    """The synthetic layer of a sample (weights regenerated with the same seed and mask)."""
    name, sp, mask = sample["layer"], sample["sparsity"], sample["mask"]
    key = (name, sp, mask)
    if key not in cache:
        i = list(GRID).index(name)
        w = np.random.default_rng(i).standard_normal(weight_shape(name)).astype("float32")
        if mask == "unstructured":
            w = w * sparse.magnitude_mask(w, sp)
        elif mask == "block8":
            w = w * sparse.magnitude_mask(w, sp, block=(8, 1))
        cache.clear() if len(cache) > 4 else None
        cache[key] = make_layer(name, w)
    return cache[key]


def score(args) -> int:
    with open(args.samples) as f:
        data = json.load(f)
    target = targets.parse(args.target)
    profile = (profiles.builtin_profile(target) if args.profile == "builtin"
               else profiles.load_profile(target, args.profile))
    samples = [s for s in data["samples"] if s["layer"] in GRID]
    dense: dict = {}  # layer -> dense-weight kind -> seconds
    for s in samples:
        if s["mask"] == "dense":
            dense.setdefault(s["layer"], {})[s["kind"]] = s["seconds"]
    errors = {"dense": [], "winograd": [], "csr": [], "bsr8": []}
    by_case: dict = {}
    for s in samples:
        if s["mask"] == "dense":
            continue
        layer = _layer_for(s)
        pred = perf_model.predict(layer, s["kind"], profile)
        errors[s["kind"]].append((abs(pred - s["seconds"]) / s["seconds"], s["layer"], s["sparsity"], s["mask"]))
        key = (s["layer"], s["sparsity"], s["mask"])
        if key not in by_case:  # the choice, not the layer: the grid's weights total tens of GB
            by_case[key] = {"measured": {}, "choice": plan.choose(layer, profile)}
        case = by_case[key]
        case["measured"][s["kind"]] = s["seconds"]
    for name, times in dense.items():
        layer = _layer_for(dict(layer=name, sparsity=0.0, mask="dense"))
        for kind, t in times.items():
            errors[kinds.Kind.parse(kind).family].append(
                (abs(perf_model.predict(layer, kind, profile) - t) / t, name, 0.0, kind))
    right, misses = 0, []
    for (name, sp, mask), case in by_case.items():
        choice = case["choice"]
        # the decision is among the kinds the compiler would consider for this weight (BSR8 only
        # where the weight is block-pruned: not on a full-density "block" mask)
        measured = {k: t for k, t in dict(case["measured"], **dense[name]).items() if k in choice.times}
        best = min(measured, key=measured.get)
        ok = measured[choice.kind] <= 1.05 * measured[best]
        right += ok
        if not ok:
            misses.append((measured[choice.kind] / measured[best], name, sp, mask, choice.kind, best))
    total = len(by_case)
    print(f"profile: {profile.source}")
    print(f"decision accuracy: {right}/{total} = {right / total:.1%} (within 5% of the measured fastest)")
    for kind, errs in errors.items():
        if errs:
            e = np.array([x[0] for x in errs])
            print(f"{kind:>5}: median relative error {np.median(e):.1%}, p90 {np.percentile(e, 90):.1%}, n={len(e)}")
    all_err = np.array([x[0] for errs in errors.values() for x in errs])
    print(f"  all: median relative error {np.median(all_err):.1%}")
    if misses:
        print("\nwrong choices (chosen/fastest time, layer, sparsity, mask, chosen, fastest):")
        for m in sorted(misses, reverse=True):
            print(f"  {m[0]:.2f}x {m[1]} {m[2]} {m[3]} {m[4]} {m[5]}")
    if args.verbose:
        print("\nlargest time errors:")
        worst = sorted((x + (k,) for k, errs in errors.items() for x in errs), reverse=True)[:20]
        for e, name, sp, mask, kind in worst:
            print(f"  {e:.0%} {kind} {name} {sp} {mask}")
    return 0


def plans(args) -> int:
    """End to end: the auto plan's measured time against the oracle plan, summed over layers."""
    from fscnn_tvm.explain import explain

    rows = []
    for spec in args.models.split(","):
        report = explain(spec, target=args.target, profile=args.profile, measure=True)
        t = report.totals()
        right = sum(bool(r.right) for r in report.rows)
        sparse_layers = sum(r.plan.kernel != "dense" for r in report.rows)
        rows.append([spec, f"{t['measured']:.2f}", f"{t['oracle']:.2f}", f"{t['measured'] / t['oracle']:.3f}",
                     f"{t['all_dense']:.2f}", f"{right}/{len(report.rows)}", sparse_layers])
        print(f"... {spec}", file=sys.stderr, flush=True)
        if args.verbose:
            print(report.format(), file=sys.stderr)
    print(markdown_table(["model", "auto plan ms", "oracle plan ms", "auto / oracle", "all dense ms", "choices right",
                          "sparse layers"], rows))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect", help="measure the grid")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--target", default="llvm")
    p.add_argument("--layers", help="comma-separated subset of the grid")
    p.add_argument("--min-repeat-ms", type=int, default=20)
    p = sub.add_parser("score", help="score the model against measured samples")
    p.add_argument("samples")
    p.add_argument("--target", default="llvm")
    p.add_argument("--profile", help="profile JSON (default: the target's committed profile; "
                                     "'builtin': the built-in conservative one)")
    p.add_argument("-v", "--verbose", action="store_true")
    p = sub.add_parser("plans", help="auto plan vs oracle plan of whole models (per-layer times summed)")
    p.add_argument("--models", default="vgg16,vgg16@0.5,vgg16@0.7,vgg16@0.9,resnet50,resnet50@0.5,"
                                        "resnet50@0.7,resnet50@0.9")
    p.add_argument("--target", default="llvm")
    p.add_argument("--profile")
    p.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    return {"collect": collect, "score": score, "plans": plans}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
