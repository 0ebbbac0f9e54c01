"""Tuning tasks: one base task per distinct kernel of a planned model, and its knob variants.

A dense conv's register tile is sampled inside its schedule (``schedules/x86/conv2d.space``) and
searched by MetaSchedule for each output-channel block (a compute-level knob, so each block is its
own workload). A sparse conv's knobs (register tile in vectors, input-channel chunks, aligned
layout) and a Winograd conv's (tiles per GEMM register block, tile rows per block) shape the
compute: each configuration is its own workload, a fixed (hand-scheduled) variant of the base task.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import tvm

from .. import kernels
from ..kinds import Compute, compute_of
from ..layer import conv_spec

DEFAULT_TRIALS = 8  # per base task


@dataclass
class Task:
    """One workload to measure: a kernel (base task) or a configuration of it (variant)."""

    name: str
    base: str  # the base task's name (equal to name for the base configuration)
    config: dict  # compute-level knobs (kernels.build_kernel's ``knobs``)
    kernel: kernels.Kernel
    func: tvm.tirx.PrimFunc  # what MetaSchedule schedules (hand-scheduled already for variants)
    space: str  # "ow_tile" (sampled in the schedule) | "fixed" (the hand schedule)
    trials: int
    layer: object  # the first layer with this kernel (layer.Layer)
    kind: str  # the plan's kernel kind
    layers: list[str] = field(default_factory=list)  # every layer with this kernel


def task_name(kernel: kernels.Kernel) -> str:
    """A stable name for a kernel: its symbol and a digest of its key (shape, knobs, epilogue)."""
    return f"{kernel.symbol}_{hashlib.sha1(repr(kernel.key).encode()).hexdigest()[:10]}"


def sparse_stages(layout, lanes: int) -> list[dict[str, list[int]]]:
    """The sparse conv's knobs and the values to measure, in stages; a stage measures every
    combination of its knobs' values, the other knobs at their best so far: the register tile (in
    vectors; the hand rule assumes 32 vector registers, AVX2 has 16), then the input-channel
    chunks, then the aligned layout (CSR with kw > 1 only). A handful of values each: the
    performance model counts instructions and traffic, not register spills or cache fit. (Tile and
    chunks measured jointly found the same on ResNet-50@0.9 for 1.6x the measurements.)"""
    spec = layout.spec
    hand_tv = layout.tile // lanes
    if layout.block_rows > 1:
        tiles = list(range(1, max(hand_tv, 3) + 1))
    else:
        tiles = sorted({hand_tv, 4, 6, 8, 10, 12})
    chunks = sorted({c for c in (layout.chunks // 2, layout.chunks, layout.chunks * 2, 2 if layout.chunks == 1 else 0)
                     if 1 <= c <= spec.in_channels})
    stages = [{"tile_vectors": tiles}, {"chunks": chunks}]
    if layout.block_rows == 1 and spec.kernel[1] > 1:
        stages.append({"align": sorted({1, lanes})})
    return stages


def winograd_stages(layout) -> list[dict[str, list[int]]]:
    """The Winograd kernel's knobs, in stages: the GEMM's register block (tiles of a row), then
    the tile rows per block (every divisor of the tile rows up to 16, and all of them: small
    blocks keep V and M in L2, large ones stream U fewer times)."""
    tw, th = layout.tiles_w, layout.tiles_h
    tiles = sorted({t for t in (layout.p_tile, 4, 7, 8, 10, 12, 14, 16, tw) if 1 <= t <= min(tw, 16)})
    rows = sorted({r for r in range(1, min(th, 16) + 1) if th % r == 0} | {th, layout.block_rows})
    return [{"p_tile": tiles}, {"block_rows": rows}]


def knob_stages(base: Task, lanes: int) -> tuple[dict, list[dict[str, list[int]]]]:
    """(the rules' knobs, the stages to sweep) of a fixed-workload task (sparse conv, Winograd)."""
    from .. import kinds  # noqa: PLC0415
    from ..schedules.x86 import rules as x86_rules  # noqa: PLC0415

    spec = conv_spec(base.layer)
    parsed = kinds.Kind.parse(base.kind)
    if parsed.family == "winograd":
        layout = x86_rules.winograd_layout(spec, parsed.rows, lanes)
        return {"p_tile": layout.p_tile, "block_rows": layout.block_rows}, winograd_stages(layout)
    layout = x86_rules.sparse_conv_layout(spec, parsed.rows, lanes)
    hand = {"tile_vectors": layout.tile // lanes, "chunks": layout.chunks, "align": layout.align}
    return hand, sparse_stages(layout, lanes)


def variant(base: Task, config: dict, target, trials: int = 1) -> Task:
    """``base``'s kernel built with ``config``: a sparse conv's is a fixed, hand-scheduled
    workload; a dense conv's is searched by MetaSchedule (``trials``)."""
    from ..schedules import schedule_func  # noqa: PLC0415
    from ..schedules.x86 import conv2d as x86_conv  # noqa: PLC0415

    if not config:
        return base
    kernel = kernels.build_kernel(base.layer, base.kind, target, config)
    name = base.name + "".join(f"_{k}{v}" for k, v in sorted(config.items()))
    if base.space == "ow_tile":
        n = min(trials, len(x86_conv.ow_tile_candidates(kernel.func)))
        return Task(name, base.name, dict(config), kernel, kernel.func, "ow_tile", n, base.layer, base.kind,
                    base.layers)
    return Task(name, base.name, dict(config), kernel, schedule_func(kernel.func, target), "fixed", 1,
                base.layer, base.kind, base.layers)


def oc_block_options(base: Task, lanes: int) -> list[int]:
    """Output-channel blocks to search a dense conv with, besides the rule's: 1, 2 or 4 vectors
    (fewer output columns per register tile as the block grows)."""
    from ..ops.conv2d import oc_vectorizable  # noqa: PLC0415

    spec = conv_spec(base.layer)
    hand = int(base.kernel.func.attrs["fscnn.oc_block"])
    return [b for b in (lanes, 2 * lanes, 4 * lanes)
            if b != hand and b <= max(lanes, spec.out_channels) and oc_vectorizable(spec, b)]


def extract_tasks(layers: list, plan: list, target: tvm.target.Target, trials: int = DEFAULT_TRIALS) -> list[Task]:
    """The base tasks of a planned model, one per distinct kernel (see the module docstring)."""
    from ..schedules import schedule_func  # noqa: PLC0415 - heavy
    from ..schedules.x86 import conv2d as x86_conv  # noqa: PLC0415

    if target.kind.name != "llvm":
        raise NotImplementedError(f"tune: target {target.kind.name!r} is not tunable yet; tune an llvm "
                                  "target (CUDA kernels keep their hand schedules)")
    tasks: dict[str, Task] = {}
    for layer, row in zip(layers, plan):
        kernel = kernels.build_kernel(layer, row.kernel, target)
        if kernel is None:
            continue
        name = task_name(kernel)
        if name in tasks:
            tasks[name].layers.append(layer.name)
            continue
        kind = compute_of(kernel.func)
        if kind == Compute.CONV2D_OC_BLOCKED:
            n = min(trials, len(x86_conv.ow_tile_candidates(kernel.func)))
            tasks[name] = Task(name, name, {}, kernel, kernel.func, "ow_tile", n, layer, row.kernel, [layer.name])
        elif kind in (Compute.SPARSE_CONV2D, Compute.CONV2D_WINOGRAD):
            tasks[name] = Task(name, name, {}, kernel, schedule_func(kernel.func, target), "fixed", 1,
                               layer, row.kernel, [layer.name])
    return list(tasks.values())


