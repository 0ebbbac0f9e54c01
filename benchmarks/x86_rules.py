"""Four x86 code-generation rules, each timed off and on, per kernel and in whole models.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/x86_rules.py
    ... benchmarks/x86_rules.py --models mobilenet_v2,resnet50 --target '{"kind": "llvm", "mcpu": "znver3"}'

The rules (``schedules/x86/rules.py``, ``targets.codegen_target``):

- ``prefetch``: an ``oc_blocked`` conv on a map of few rows prefetches the next channel block's
  weights (``weight_prefetch_rows``); timed with DRAM-cold caches, as in a model run;
- ``row_loop``: a 3x3 depthwise conv on wide rows runs as an LLVM-vectorised row loop
  (``depthwise_row_loop``);
- ``pad_group``: a depthwise conv on small maps pads several planes before sweeping them
  (``pad_plane_group``);
- ``no_gather``: AVX-512 modules compile with gathers and scatters discouraged;
- ``pool_planes``: the max-pool pads its input per group of planes, not as a copy of the map
  (off: planes in parallel over the whole-map copy; the pool's rows were in parallel before).

Each kernel is built both ways from the same layer, checked against torch (both outputs), and
timed interleaved; each model is compiled both ways and timed in interleaved rounds.
"""
from __future__ import annotations

import argparse
import contextlib
import json

import numpy as np

PREFETCH = [(960, 160, 1, 7), (320, 1280, 1, 7), (2048, 512, 1, 7), (512, 2048, 1, 7), (512, 512, 3, 7),
            (1024, 256, 1, 14)]  # (in, out, kernel, map); the last two: the rule says no
DEPTHWISE = [(96, 112, 2), (32, 112, 1), (144, 56, 1), (144, 56, 2), (192, 28, 2), (192, 28, 1), (384, 14, 1),
             (576, 14, 2), (960, 7, 1)]  # (channels, map, stride): MobileNetV2's 3x3 depthwise convs


RULES = ("prefetch", "row_loop", "pad_group", "no_gather", "pool_planes")
POOLS = [(64, 224, 2, 2, 0), (128, 112, 2, 2, 0), (512, 14, 2, 2, 0), (64, 112, 3, 2, 1)]  # VGG16's, ResNet's


@contextlib.contextmanager
def rule_off(name: str):
    """The rule ``name`` switched off inside the block."""
    from fscnn_tvm import targets  # noqa: PLC0415
    from fscnn_tvm.schedules.x86 import conv2d, pool, rules  # noqa: PLC0415

    def whole_map_pad(sch, pad, plane):
        conv2d.schedule_pad(sch)

    def planes_in_parallel(sch, pad, n, c):
        plane = sch.fuse(n, c)
        sch.parallel(plane)
        return plane

    switches = {"prefetch": [(rules, "weight_prefetch_rows", lambda *a: 0)],
                "row_loop": [(rules, "depthwise_row_loop", lambda *a: False)],
                "pad_group": [(conv2d, "pad_plane_group", lambda *a: 1)],
                "no_gather": [(targets, "codegen_target", lambda t, m=None: t)],
                "pool_planes": [(pool, "plane_groups", planes_in_parallel), (pool, "pad_per_plane", whole_map_pad)]}
    before = [(module, attr, getattr(module, attr)) for module, attr, _ in switches[name]]
    for module, attr, off in switches[name]:
        setattr(module, attr, off)
    try:
        yield
    finally:
        for module, attr, value in before:
            setattr(module, attr, value)


def _conv(spec, act: str, seed: int = 0):
    from fscnn_tvm.layer import conv_layer  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    icg = spec.in_channels // spec.groups
    w = (rng.standard_normal((spec.out_channels, icg, *spec.kernel)) * 0.05).astype("float32")
    layer = conv_layer(spec, w, act=act)
    layer.bias = rng.standard_normal(spec.out_channels).astype("float32")
    return layer, w


def _run_kernel(layer, w, target, cold: bool):
    """(ms, relative error against torch) of the layer's dense kernel as the rules build it now."""
    import torch  # noqa: PLC0415
    import tvm  # noqa: PLC0415

    from fscnn_tvm import fast_math, kernels, kinds  # noqa: PLC0415
    from fscnn_tvm.layer import conv_spec  # noqa: PLC0415
    from fscnn_tvm.measure import COLD_FLUSH_BYTES  # noqa: PLC0415
    from fscnn_tvm.schedules import schedule_func  # noqa: PLC0415
    from fscnn_tvm.testing import relative_error  # noqa: PLC0415

    kernel = kernels.build_kernel(layer, kinds.DENSE, target)
    lib = fast_math.compile(kernel.module(schedule_func(kernel.func, target)), target)
    x = np.random.default_rng(1).standard_normal(layer.in_shape).astype("float32")
    in_shape, out_shape = kernel.shapes(layer)
    args = [tvm.runtime.tensor(a) for a in [x.reshape(in_shape), *kernel.constants, np.zeros(out_shape, "float32")]]
    lib(*args)
    s = conv_spec(layer)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(layer.bias),
                                     stride=s.stride, padding=(s.padding[0], s.padding[1]), dilation=s.dilation,
                                     groups=s.groups)
    ref = {"relu": torch.relu, "relu6": lambda t: torch.clamp(t, 0, 6)}[layer.act](ref)
    err = relative_error(args[-1].numpy().reshape(ref.shape), ref.numpy())
    if cold:
        ev = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=15, cache_flush_bytes=COLD_FLUSH_BYTES)
    else:
        ev = lib.mod.time_evaluator("main", tvm.cpu(), number=20, repeat=7)
    return float(np.median(ev(*args).results)) * 1e3, err


def kernel_rows(target, lanes: int) -> list[list[str]]:
    from fscnn_tvm.ops.conv2d import Conv2dSpec  # noqa: PLC0415
    from fscnn_tvm.schedules.x86 import conv2d, rules  # noqa: PLC0415

    rows = []
    for ic, oc, k, hw in PREFETCH:
        spec = Conv2dSpec(1, ic, hw, hw, oc, (k, k), padding=(k // 2,) * 4)
        rows.append(_compare("prefetch", f"{ic}->{oc} {k}x{k} @{hw}", spec, "relu", target, cold=True,
                             applies=bool(rules.weight_prefetch_rows(spec, lanes, *rules.conv_tile(spec, lanes)[1:]))))
    for c, hw, stride in DEPTHWISE:
        spec = Conv2dSpec(1, c, hw, hw, c, (3, 3), stride=(stride, stride), padding=(1,) * 4, groups=c)
        name = f"dw {c}@{hw}/{stride}"
        pad = spec.height + 2
        if rules.depthwise_row_loop(spec, lanes):
            rows.append(_compare("row_loop", name, spec, "relu6", target, cold=False, applies=True))
        else:
            width = -(-spec.out_width // lanes) * lanes * stride + 2
            rows.append(_compare("pad_group", name, spec, "relu6", target, cold=False,
                                 applies=conv2d.pad_plane_group(4 * pad * width, c) > 1))
            if stride > 1:
                rows.append(_compare("no_gather", name, spec, "relu6", target, cold=False, applies=lanes == 16))
    return rows


def _run_pool(shape, target, cold: bool):
    """(ms, NaN-aware max error against torch) of the max-pool kernel as the schedules build it now."""
    import torch  # noqa: PLC0415
    import tvm  # noqa: PLC0415
    from tvm import te  # noqa: PLC0415

    from fscnn_tvm import fast_math  # noqa: PLC0415
    from fscnn_tvm.kinds import KERNEL_ATTR, Compute  # noqa: PLC0415
    from fscnn_tvm.measure import COLD_FLUSH_BYTES  # noqa: PLC0415
    from fscnn_tvm.nan_safe import max_pool2d  # noqa: PLC0415
    from fscnn_tvm.schedules import schedule_func  # noqa: PLC0415

    c, hw, k, stride, pad = shape
    oh = (hw + 2 * pad - k) // stride + 1
    data = te.placeholder((1, c, hw, hw), "float32", name="data")
    out = max_pool2d(data, (k, k), (stride, stride), (1, 1), (pad, pad), (oh, oh))
    func = te.create_prim_func([data, out]).with_attr(KERNEL_ATTR, Compute.MAX_POOL2D)
    lib = fast_math.compile(tvm.IRModule({"main": schedule_func(func, target)}), target)
    x = np.random.default_rng(0).standard_normal((1, c, hw, hw)).astype("float32")
    x[0, 0, 1, 1] = np.nan
    args = [tvm.runtime.tensor(x), tvm.runtime.tensor(np.zeros((1, c, oh, oh), "float32"))]
    lib(*args)
    ref = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, stride, pad).numpy()
    got = args[-1].numpy()
    err = 0.0 if np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(
        np.nan_to_num(got), np.nan_to_num(ref)) else float("inf")
    if cold:
        ev = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=15, cache_flush_bytes=COLD_FLUSH_BYTES)
    else:
        ev = lib.mod.time_evaluator("main", tvm.cpu(), number=10, repeat=7)
    return float(np.median(ev(*args).results)) * 1e3, err


def pool_rows(target) -> list[list[str]]:
    rows = []
    for shape in POOLS:
        c, hw, k, stride, pad = shape
        for cold in (False, True):
            rows.append(_compare("pool_planes", f"maxpool {c}@{hw} {k}x{k}/{stride}", shape, None, target, cold,
                                 applies=True, run=_run_pool))
    return rows


def _compare(rule: str, name: str, spec, act: str | None, target, cold: bool, applies: bool, run=None) -> list[str]:
    if run is None:
        layer, w = _conv(spec, act)

        def run(_, target, cold):
            return _run_kernel(layer, w, target, cold)
    times, errs = {"off": [], "on": []}, []
    for _ in range(3):  # interleaved builds and timings
        with rule_off(rule):
            t, e = run(spec, target, cold)
        times["off"].append(t)
        errs.append(e)
        t, e = run(spec, target, cold)
        times["on"].append(t)
        errs.append(e)
    off, on = np.median(times["off"]), np.median(times["on"])
    return [rule, name, "yes" if applies else "no", "DRAM-cold" if cold else "warm", f"{off:.4f}", f"{on:.4f}",
            f"{off / on:.2f}x", f"{max(errs):.1e}"]


def model_rows(names: list[str], target, rounds: int) -> list[list[str]]:
    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import models  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, random_input, relative_error, torch_reference  # noqa: PLC0415

    rows = []
    for spec in names:
        model = models.from_spec(spec).eval()
        shape = (1, 3, 224, 224)
        x = random_input(shape)
        ref = torch_reference(model, x)
        with contextlib.ExitStack() as stack:
            for rule in RULES:
                stack.enter_context(rule_off(rule))
            before = fscnn_tvm.compile(model, input_shape=shape, target=target)
        after = fscnn_tvm.compile(model, input_shape=shape, target=target)
        errs = [relative_error(m(x), ref) for m in (before, after)]
        med = interleaved({"before": lambda: before(x), "after": lambda: after(x)}, rounds)
        rows.append([spec, f"{med['before'] * 1e3:.2f}", f"{med['after'] * 1e3:.2f}",
                     f"{med['before'] / med['after']:.3f}x", f"{max(errs):.1e}"])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="llvm", help="'llvm' (this CPU) or a TVM target as JSON")
    p.add_argument("--models", default="mobilenet_v2,resnet50,vgg16", help="models timed with every rule off and on")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--no-kernels", action="store_true", help="only the models")
    args = p.parse_args(argv)

    import torch  # noqa: PLC0415

    from fscnn_tvm import targets  # noqa: PLC0415
    from fscnn_tvm.testing import markdown_table  # noqa: PLC0415

    torch.set_num_threads(1)
    target = targets.parse(json.loads(args.target) if args.target.startswith("{") else args.target)
    lanes = targets.vector_lanes(target)
    print(f"target {targets.tag(target)} ({lanes} fp32 lanes)")
    if not args.no_kernels:
        print(markdown_table(["rule", "layer", "rule applies", "caches", "off ms", "on ms", "speedup", "max rel err"],
                             kernel_rows(target, lanes) + pool_rows(target)))
    if args.models:
        print(markdown_table(["model", "rules off ms", "rules on ms", "speedup", "max rel err"],
                             model_rows(args.models.split(","), target, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
