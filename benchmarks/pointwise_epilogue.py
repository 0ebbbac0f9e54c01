"""The pointwise (1x1) GEMM with its epilogue per register tile against per pixel block, one run.

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/pointwise_epilogue.py

"block" is the shipped schedule (``schedules/x86/conv2d.schedule_pointwise``: bias, residual and
ReLU once per pixel block, over every channel block's tile); "tile" the one it replaced (the
epilogue on each tile as it leaves the registers). Both schedule the kernel builder's own kernel
for the layer (bias + ReLU, some with a residual), are checked against PyTorch, and are timed hot
in interleaved rounds.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

LAYERS = [(256, 64, 56, False), (64, 256, 56, True), (64, 256, 56, False), (64, 64, 56, False),
          (256, 128, 56, False), (128, 512, 28, True), (512, 128, 28, False), (512, 256, 28, False),
          (16, 96, 112, False), (24, 144, 56, False), (64, 384, 28, False)]  # cin, cout, map, residual


def schedule_per_tile(sch, columns: int, lanes: int):
    """The replaced schedule: the epilogue at each (pixel block, channel block) tile."""
    from fscnn_tvm.schedules.x86 import conv2d  # noqa: PLC0415

    conv, n, po, cb, rc = conv2d.pointwise_tiles(sch, columns, lanes)
    outer = sch.fuse(n, po, cb)
    sch.parallel(outer)
    conv2d._finish_tile(sch, conv, outer, rc)
    return sch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=31)
    args = p.parse_args()

    import torch  # noqa: PLC0415
    import tvm  # noqa: PLC0415
    from tvm import s_tir  # noqa: PLC0415

    from fscnn_tvm import fast_math, kernels, targets  # noqa: PLC0415
    from fscnn_tvm.layer import conv_layer  # noqa: PLC0415
    from fscnn_tvm.ops.conv2d import Conv2dSpec  # noqa: PLC0415
    from fscnn_tvm.schedules import fresh_copy  # noqa: PLC0415
    from fscnn_tvm.schedules.x86.conv2d import schedule_pointwise  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, markdown_table, relative_error  # noqa: PLC0415

    target = targets.parse("llvm")
    lanes = targets.vector_lanes(target)
    dev = tvm.cpu()
    variants = {"tile": schedule_per_tile, "block": schedule_pointwise}
    runners, names = {}, []
    for cin, cout, hw, residual in LAYERS:
        spec = Conv2dSpec(1, cin, hw, hw, cout, (1, 1), (1, 1), (0, 0, 0, 0))
        rng = np.random.default_rng(0)
        w = rng.standard_normal((cout, cin, 1, 1)).astype("float32") * 0.1
        b = rng.standard_normal(cout).astype("float32")
        # the builder only asks whether there is a residual; the graph expression is not needed
        layer = dataclasses.replace(conv_layer(spec, w, act="relu"), bias=b, residual=object() if residual else None)
        kernel = kernels.build_kernel(layer, "dense", target)
        if kernel.view is None:
            raise SystemExit(f"{cin}->{cout}@{hw}: not a pointwise kernel on this target")
        x = np.maximum(rng.standard_normal((1, cin, hw * hw)).astype("float32"), 0)
        r = rng.standard_normal((1, cout, hw * hw)).astype("float32")
        ref = torch.nn.functional.conv2d(torch.from_numpy(x.reshape(1, cin, hw, hw)), torch.from_numpy(w),
                                         torch.from_numpy(b)).numpy().reshape(1, cout, -1)
        ref = np.maximum(ref + r if residual else ref, 0)
        name = f"{cin}->{cout}@{hw}" + (" + residual" if residual else "")
        names.append(name)
        for variant, schedule in variants.items():
            sch = s_tir.Schedule(fresh_copy(kernel.func))
            schedule(sch, int(kernel.func.attrs["fscnn.ow_tile"]), lanes)
            lib = fast_math.compile(tvm.IRModule({"main": sch.mod["main"].with_attr("tirx.is_scheduled", True)}), target)
            tensors = [tvm.runtime.tensor(a, dev) for a in [x] + kernel.constants + ([r] if residual else [])
                       + [np.zeros((1, cout, hw * hw), "float32")]]
            lib(*tensors)
            err = relative_error(tensors[-1].numpy(), ref)
            assert err <= 1e-4, (name, variant, err)
            func = lib.mod["main"]

            def run(func=func, tensors=tensors):
                start = time.perf_counter()
                func(*tensors)
                return time.perf_counter() - start

            runners[(name, variant)] = run
    med = interleaved(runners, args.rounds, self_timed=True)
    print(f"target {targets.tag(target)}, median of {args.rounds} interleaved rounds, ms")
    print(markdown_table(["layer", "epilogue per tile", "per pixel block", "tile / block"],
                         [[n, f"{med[(n, 'tile')] * 1e3:.3f}", f"{med[(n, 'block')] * 1e3:.3f}",
                           f"{med[(n, 'tile')] / med[(n, 'block')]:.2f}"] for n in names]))


if __name__ == "__main__":
    main()
