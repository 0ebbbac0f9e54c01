"""x86 schedules of the dense conv2d kernels in ``fscnn_tvm/ops/conv2d.py``.

``oc_blocked``: register tile of ``ow_tile`` output columns x ``oc_block`` output channels (one or
two vectors); per reduction step one broadcast of an input value and ``ow_tile`` FMAs per vector.
``spatial`` (depthwise and other grouped convs): a tile of ``ow_tile`` output columns of one
channel, vectorised along the width.
Both: the output row loops are fused and parallel, the zero-padding stage is parallel and
vectorised, the epilogue (bias, residual, activation) runs on the tile while it is in registers.
"""
from __future__ import annotations

import math
import re

import tvm
from tvm import s_tir, tirx

from fscnn_tvm.kinds import Compute, compute_of

from .rules import pad_plane_group


PARTITION = "pragma_loop_partition_hint"  # LoopPartition splits off the interior: no bounds checks


def _pad_block(sch: s_tir.Schedule):
    try:
        return sch.get_sblock("pad")
    except Exception:  # noqa: BLE001 - no padding stage in this kernel
        return None


def _schedule_plane_pad(sch: s_tir.Schedule, loops: list) -> None:
    """A pad's loops over one (image, channel) plane: rows, columns (vectorised), or rows,
    phases, columns for ``deinterleaved_padded_input`` (the phases unrolled inside a plain column
    loop: vectorised, its strided loads became gathers, ~20 cycles per 8 floats on Zen 5, 2.0 of
    10 ms on Winograd 64->64@224)."""
    sch.annotate(loops[0], PARTITION, 1)
    if len(loops) == 3:
        _, phases, columns = loops
        sch.reorder(columns, phases)
        sch.unroll(phases)
        sch.annotate(columns, PARTITION, 1)
    else:
        sch.vectorize(loops[-1])


def schedule_pad(sch: s_tir.Schedule) -> None:
    """The padding stage (``ops/conv2d.padded_input`` or ``deinterleaved_padded_input``), if the
    kernel has one, as a whole-map copy: (image, channel) planes in parallel."""
    pad = _pad_block(sch)
    if pad is None:
        return
    loops = sch.get_loops(pad)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    _schedule_plane_pad(sch, loops[2:])


def _finish_tile(sch: s_tir.Schedule, conv, xo, reduce_outer) -> None:
    """Accumulators in registers, epilogue at the tile, init split off and vectorised."""
    sch.reverse_compute_at(sch.get_sblock("out"), xo)
    sch.set_scope(conv, 0, "global")  # "local" lowers to a heap workspace per tile; "global" to stack
    init = sch.decompose_reduction(conv, reduce_outer)  # after vectorize/unroll (TVM_NOTES 7)
    for block in (init, sch.get_sblock("out")):
        _unroll_vectorize(sch, _loops_below(sch, block, xo))


def _loops_below(sch: s_tir.Schedule, block, anchor) -> list:
    loops = sch.get_loops(block)
    anchor_sref = sch.get_sref(anchor)
    index = next(i for i, lp in enumerate(loops) if sch.get_sref(lp).same_as(anchor_sref))
    return loops[index + 1:]


def _unroll_vectorize(sch: s_tir.Schedule, loops: list) -> None:
    """Vectorise the innermost loop and unroll the others (loops of extent 1 are left alone)."""
    loops = [lp for lp in loops if int(sch.get(lp).extent) > 1]
    if not loops:
        return
    sch.vectorize(loops[-1])
    for lp in loops[:-1]:
        sch.unroll(lp)


def schedule_oc_blocked(sch: s_tir.Schedule, ow_tile: int) -> s_tir.Schedule:
    conv = sch.get_sblock("conv")
    n, cb, y, x, v, rc, ry, rx = sch.get_loops(conv)
    xo, xi = sch.split(x, [None, ow_tile])
    sch.reorder(n, cb, y, xo, rc, ry, rx, xi, v)
    sch.vectorize(v)
    sch.unroll(xi)
    sch.parallel(sch.fuse(n, cb, y))
    _finish_tile(sch, conv, xo, rc)
    schedule_pad(sch)
    return sch


LINE_FLOATS = 16  # floats per 64-byte cache line


def with_weight_prefetch(func: tirx.PrimFunc, rows: int) -> tirx.PrimFunc:
    """``func`` (a scheduled ``oc_blocked`` conv) with a software prefetch of the next output-
    channel block's weights spread over the current block's ``rows`` output rows.

    At batch 1 a layer's weights were evicted since its last run, so they come from L3 or DRAM;
    the first row of a channel block reads them at ~18 bytes a cycle (2 vectors per 14 FMAs),
    several times what one core streams from DRAM, and the remaining rows find them in L2. On
    maps of few rows the kernel waits on DRAM for most of its first row: 320->1280 1x1 @7 took
    0.219 ms with cold weights against 0.157 with weights in L3. Each reduction step of row
    ``y`` now prefetches the line of block ``cb + 1`` at ``(y * steps + step) / rows`` of its
    length, so the next block arrives while this one computes (0.159 ms cold; RESULTS.md,
    issue 15). TVM has no prefetch schedule primitive for CPUs: the statement is inserted in
    the scheduled function's TVMScript and the function read back; ``func`` is returned as it
    was where its loop nest is not the one ``schedule_oc_blocked`` makes. A MetaSchedule
    record replayed from a tuning log is used as it was tuned, without the prefetch.
    """
    text = func.script()
    weight = re.search(r"weight: T\.Buffer\(\((\d+), (\d+), (\d+), (\d+), (\d+)\), \"float32\"\)", text)
    if weight is None:
        return func
    ocb, icg, kh, kw, lanes = (int(d) for d in weight.groups())
    grid = re.search(rf"\n( *)for rc, ry, rx in T\.grid\({icg}, {kh}, {kw}\):\n", text)
    root = '    # with T.sblock("root"):\n'
    if grid is None or root not in text:
        return func
    # the (batch, block, row) loop around the reduction; a padded conv has the pad's loop before it
    fused = ([None] + list(re.finditer(r"for (\w+) in T\.parallel\((\d+)\):", text[:grid.start()])))[-1]
    if fused is None:
        return func
    steps, total = icg * kh * kw, ocb * icg * kh * kw * lanes
    var, indent = fused.group(1), grid.group(1) + "    "
    nxt = f"({var} // {rows} % {ocb} + 1) % {ocb} * {steps * lanes}"
    at = f"(({var} % {rows}) * {steps} + (rc * {kh} + ry) * {kw} + rx) * {lanes} // {rows}"
    lines = max(1, -(-lanes // (rows * LINE_FLOATS)))
    stmts = "".join(
        f"{indent}T.evaluate(T.call_llvm_intrin(\"void\", \"llvm.prefetch.p0\", T.address_of("
        f"fscnn_weight_flat[T.min({nxt} + {at} + {j * LINE_FLOATS}, {total - 1})]), 0, 3, 1))\n"
        for j in range(lines))
    text = text[:grid.end()] + stmts + text[grid.end():]
    text = text.replace(root, f'    fscnn_weight_flat = T.decl_buffer(({total},), "float32", data=weight.data)\n', 1)
    from tvm.script import tirx as T  # noqa: PLC0415, N812

    return tvm.script.from_source(text, extra_vars={"T": T})


def schedule_spatial(sch: s_tir.Schedule, ow_tile: int, lanes: int) -> s_tir.Schedule:
    """Depthwise convs pad each channel's plane right before its rows are swept (an L1/L2-sized
    buffer, in place of a padded copy of the whole map: ResNet/MobileNet maps at 112x112 are
    several MB), small planes a group of them at a time (``rules.pad_plane_group``); other
    grouped convs pad the whole input first."""
    conv = sch.get_sblock("conv")
    n, c, y, x, rc, ry, rx = sch.get_loops(conv)
    xo, xm, xi = sch.split(x, [None, ow_tile // lanes, lanes])
    sch.reorder(n, c, y, xo, rc, ry, rx, xm, xi)
    sch.vectorize(xi)
    sch.unroll(xm)
    sch.unroll(rx)
    sch.unroll(ry)
    pad = _pad_block(sch)
    if pad is None or int(sch.get(rc).extent) > 1:
        sch.parallel(sch.fuse(n, c, y))
        _finish_tile(sch, conv, xo, rc)
        schedule_pad(sch)
        return sch
    plane = plane_groups(sch, pad, n, c)
    _finish_tile(sch, conv, xo, rc)
    pad_per_plane(sch, pad, plane)
    return sch


def plane_groups(sch: s_tir.Schedule, pad, n, c):
    """The parallel loop over groups of (image, channel) planes (``rules.pad_plane_group``; a
    group within one image) of the consumer of ``pad`` whose loops ``n, c`` are outermost."""
    shape = [int(iv.dom.extent) for iv in sch.get(pad).iter_vars]  # the padded buffer's
    planes = pad_plane_group(4 * math.prod(shape[2:]), shape[1])
    plane = sch.fuse(n, c)
    if planes > 1:
        plane, _ = sch.split(plane, [None, planes])
    sch.parallel(plane)
    return plane


def pad_per_plane(sch: s_tir.Schedule, pad, plane) -> None:
    """The padding stage computed per group of planes, under ``plane`` (from
    :func:`plane_groups`): an L1/L2-sized buffer in place of a padded copy of the whole map."""
    rank = len(sch.get(pad).iter_vars)
    sch.compute_at(pad, plane)
    _schedule_plane_pad(sch, _loops_below(sch, pad, plane)[2 - rank:])  # a plane's loops


def schedule_spatial_rows(sch: s_tir.Schedule) -> s_tir.Schedule:
    """A depthwise conv as plain loops (``rules.depthwise_row_loop``): (image, channel) planes
    in parallel, rows, columns, the kernel's taps unrolled and the epilogue inside the column
    loop. The zero padding is inlined and its bounds checks split off the interior rows and
    columns by loop partitioning; LLVM's loop vectoriser vectorises the column loop (a stride-2
    tap becomes two vector loads and a permute, an interleaved access group)."""
    pad = _pad_block(sch)
    if pad is not None:
        sch.compute_inline(pad)
    conv = sch.get_sblock("conv")
    n, c, y, x, rc, ry, rx = sch.get_loops(conv)
    sch.parallel(sch.fuse(n, c))
    for loop in (rc, ry, rx):
        sch.unroll(loop)
    sch.annotate(y, PARTITION, 1)
    sch.annotate(x, PARTITION, 1)
    sch.reverse_compute_at(sch.get_sblock("out"), x)
    sch.set_scope(conv, 0, "global")
    sch.decompose_reduction(conv, rc)
    return sch


def pointwise_tiles(sch: s_tir.Schedule, columns: int, lanes: int):
    """The pointwise GEMM's loop nest: (image, pixel block, channel block, reduction) outside
    the register tile (``oc_tile`` channels unrolled x ``columns`` pixels in vectors). Returns
    ``(conv block, n, po, cb, rc)``."""
    conv = sch.get_sblock("conv")
    n, cb, o, p, rc = sch.get_loops(conv)
    po, pv, pi = sch.split(p, [None, columns // lanes, lanes])
    sch.reorder(n, po, cb, rc, o, pv, pi)
    sch.vectorize(pi)
    sch.unroll(pv)
    sch.unroll(o)
    return conv, n, po, cb, rc


def schedule_pointwise(sch: s_tir.Schedule, columns: int, lanes: int) -> s_tir.Schedule:
    """Tiles of ``oc_tile`` channels x ``columns`` pixels, pixel-block outer: the weights (small
    beside the map on the layers this runs) are re-read per pixel block, the map once (measured:
    1.05-1.15x the channel-block-outer order on 16->96@112, 64->256@56, 256->64@56). The epilogue
    runs once per pixel block, over every channel block's tile (kept in a block-sized buffer),
    not after each tile: on a Zen 5 core 1.0-1.35x faster on every ResNet-50 and MobileNetV2
    pointwise layer (64->256@56 + residual 1.08 -> 0.82 ms, 16->96@112 1.14 -> 0.86, 512->128@28
    a tie; RESULTS.md, issue 15). With ``fscnn.pixel_chunk`` (``rules.pointwise_chunk``) the order
    is chunk of pixel blocks outer, channel block, pixel block, with the epilogue per tile
    (on an Intel core 1.1-3.5x on widening layers; RESULTS.md, session 14). With
    ``fscnn.k_chunk`` (``rules.pointwise_k_chunk``, block-outer only) the reduction is split and
    every channel block runs over one chunk of input channels before the next: the accumulators
    are zeroed once per pixel block and reloaded once per chunk."""
    conv, n, po, cb, rc = pointwise_tiles(sch, columns, lanes)
    chunk = int(sch.mod["main"].attrs.get("fscnn.pixel_chunk", 0))
    if chunk:  # rules.pointwise_chunk: pixel chunk in L2, each channel block's weights in L1
        pc, epilogue_at = sch.split(po, [None, chunk])
        sch.reorder(pc, cb, epilogue_at)
        sch.parallel(sch.fuse(n, pc))
        init_at = epilogue_at
    else:
        epilogue_at = sch.fuse(n, po)
        sch.parallel(epilogue_at)
        init_at = cb
    k_chunk = int(sch.mod["main"].attrs.get("fscnn.k_chunk", 0))
    if k_chunk:  # rules.pointwise_k_chunk: every channel block over one chunk of the input at a time
        rco, _ = sch.split(rc, [None, k_chunk])
        sch.reorder(rco, cb)
        rc = rco
    sch.reverse_compute_at(sch.get_sblock("out"), epilogue_at)
    sch.set_scope(conv, 0, "global")  # "local" lowers to a heap workspace per tile; "global" to stack
    init = sch.decompose_reduction(conv, rc)  # per tile, in its registers (per pixel block if chunked)
    _unroll_vectorize(sch, sch.get_loops(init)[-3:] if k_chunk else _loops_below(sch, init, init_at))
    _unroll_vectorize(sch, _loops_below(sch, sch.get_sblock("out"), epilogue_at))
    return sch


def schedule_pointwise_packed(sch: s_tir.Schedule, lanes: int) -> s_tir.Schedule:
    """``conv2d_pointwise_packed``: per panel of output pixels, its gather (vector copies where
    the conv is stride-1 and unpadded), then every channel block's tile over it (the panel in
    L1, the weights from L2), then the epilogue over the panel. Panels run in parallel; the last
    one, past the map's end, is split off (its bounds checks scalarise only it)."""
    conv = sch.get_sblock("conv")
    n, q, cb, o, i, rc = sch.get_loops(conv)
    iv, ii = sch.split(i, [None, lanes])
    sch.reorder(n, q, cb, rc, o, iv, ii)
    sch.vectorize(ii)
    sch.unroll(iv)
    sch.unroll(o)
    sch.parallel(q)
    sch.annotate(q, PARTITION, 1)
    sch.reverse_compute_at(sch.get_sblock("out"), q)
    pad = sch.get_sblock("pad")
    sch.compute_at(pad, q)
    sch.vectorize(sch.split(_loops_below(sch, pad, q)[-1], [None, lanes])[1])  # (channels,) columns
    sch.set_scope(conv, 0, "global")
    init = sch.decompose_reduction(conv, rc)  # per tile, in its registers
    _unroll_vectorize(sch, _loops_below(sch, init, cb))
    loops = _loops_below(sch, sch.get_sblock("out"), q)  # channels, pixels (none of extent 1)
    if len(loops) == 2:  # the channel loop stays a loop: unrolled over 1024 it took minutes to compile
        pv, pi = sch.split(loops[1], [None, lanes])
        sch.vectorize(pi)
        sch.unroll(pv)
    return sch


def ow_tile_candidates(func: tirx.PrimFunc) -> list[int]:
    """Output-column tiles the tuner may sample for an ``oc_blocked`` conv: the hand rule's
    range (kernels.conv_tile), its own choice first."""
    hand = int(func.attrs["fscnn.ow_tile"])
    ow = int(func.attrs["fscnn.out_width"])
    top = int(func.attrs["fscnn.max_ow_tile"])
    return [hand] + [t for t in range(max(2, top // 2), min(ow, top) + 1) if t != hand]


def space(sch: s_tir.Schedule) -> None:
    """MetaSchedule design space (tuning.py): the hand schedule with ``ow_tile`` sampled."""
    func = sch.mod["main"]
    candidates = ow_tile_candidates(func)
    ow_tile = sch.sample_categorical(candidates, [1.0 / len(candidates)] * len(candidates))
    schedule_oc_blocked(sch, ow_tile)


def schedule(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc | None:
    """Schedule an fscnn conv2d PrimFunc; ``None`` if ``func`` is not one."""
    kernel = compute_of(func)
    if kernel not in (Compute.CONV2D_OC_BLOCKED, Compute.CONV2D_SPATIAL, Compute.CONV2D_POINTWISE,
                      Compute.CONV2D_POINTWISE_PACKED):
        return None
    sch = s_tir.Schedule(func)
    ow_tile = int(func.attrs["fscnn.ow_tile"])
    if kernel == Compute.CONV2D_POINTWISE_PACKED:
        schedule_pointwise_packed(sch, lanes)
    elif kernel == Compute.CONV2D_POINTWISE:
        schedule_pointwise(sch, ow_tile, lanes)
    elif kernel == Compute.CONV2D_OC_BLOCKED:
        schedule_oc_blocked(sch, ow_tile)
        if func.attrs.get("fscnn.prefetch_rows"):
            return with_weight_prefetch(sch.mod["main"], int(func.attrs["fscnn.prefetch_rows"]))
    elif func.attrs.get("fscnn.row_loop"):
        schedule_spatial_rows(sch)
    else:
        schedule_spatial(sch, ow_tile, lanes)
    return sch.mod["main"]
