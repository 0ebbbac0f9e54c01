"""Activation-sparse conv2d (FalCon, SparseTrain): work in proportion to the input's nonzeros.

A ReLU network feeds its convolutions inputs that are largely zero, differently for every input,
so the zeros are found at run time, and the result is exact for any input: a denser input is
slower, never wrong. Two stages in one PrimFunc:

1. **Compaction**: for every pixel of the zero-padded input and every chunk of ``chunk`` input
   channels (at most :data:`MASK_BITS`), a bitmask of its nonzero channels (bit ``k``: channel
   ``k`` of the chunk) and a copy of its ``chunk`` values side by side. Written without a branch,
   so its cost does not depend on the input; padding pixels have empty masks. Masks and values
   are stored chunk-major (every pixel's of one chunk side by side), so a sweep of one (block,
   ``kh``, chunk) over the rows reads them in address order, which the hardware prefetcher
   follows.
2. **Accumulation** (SparseTrain's loop): a register tile holds ``tile`` consecutive output
   pixels of one row x ``oc_block`` output channels (``oc_block / lanes`` vectors each). For one
   kernel row ``kh`` and one channel chunk, the tile walks the masks of the input pixels under
   it, a set bit at a time (count trailing zeros, clear the lowest bit, until none is left);
   each nonzero is one broadcast of its value times the weight vectors of its channel for every
   kernel column ``kw``, into the accumulators of the outputs that pixel feeds. Which
   accumulator a (pixel, ``kw``) feeds is known when the script is generated (the pixel loop is
   written out), so they stay in registers. Loops run (block, ``kh``, chunk) outside the pixels,
   so the weights in use (``KW x chunk x oc_block`` floats) stay in L1; the tile's partial sums
   go to ``part`` between them.

   Measured on an Intel Xeon core (AVX-512; RESULTS.md, session 17) against the lists this
   replaces (per pixel and chunk: the nonzero channels' weight offsets and values, ended by
   -1), ms at 90% zeros, pixel-major lists / chunk-major lists / masks: 512->512 3x3 @28
   20.0 / 13.8 / 11.8; 64->64 3x3 @56 1.83 / 1.74 / 1.18; 128->128 3x3/2 @56 3.37 / 2.97 /
   1.70; 1x1 1024->256 @14 0.95 / 0.83 / 0.60. Pixel-major, one chunk's lists of neighbouring
   pixels were 2 KB apart and most walks began with a cache miss.
   A mask walk needs no end marker, no padding entries and no second accumulator set for narrow
   kernels (the lists split each one over two for 1x1s; the masks are faster with one).

The epilogue writes NCHW with bias, residual and activation. With a :class:`Fallback`, a first
vector pass counts the input's nonzeros and, on an input with fewer zeros than the fallback's
``min_zeros`` (the plan's break-even against the kind it beat), the whole call goes to that
kind's kernel instead, so a denser input than calibrated costs at most one pass more than that
kernel (512->512 3x3 @28, dense input: 16.95 ms against the direct kernel's 17.10, instead of
24.84). Linear layers: :func:`act_sparse_dense`.

Arguments in call order: ``data [N, C, H, W]``, ``weight`` (flat ``[OB, KH, KW, C, oc_block]``,
:func:`pack_weight`; channels past ``OC`` zero), ``bias [OC]``, the fallback's constants (if
any), (``residual [N, OC, OH, OW]``), output ``[N, OC, OH, OW]``. Groups
must be 1. Plain TIR: scheduled by construction.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
import tvm
from tvm.script import tirx as T

from .activations import ACTIVATION_SCRIPT as _ACT
from .conv2d import Conv2dSpec


MASK_BITS = 64  # input channels per chunk: one int64 mask per pixel


@dataclass(frozen=True)
class ActSparseLayout:
    """The knobs of one activation-sparse conv (``schedules/x86/rules.act_sparse_layout``)."""

    spec: Conv2dSpec
    lanes: int  # fp32 lanes per vector
    oc_block: int  # output channels per block: a multiple of ``lanes``
    tile: int  # output pixels of one row per register tile
    chunk: int  # input channels per mask, at most MASK_BITS (the weights of one chunk stay in L1)

    @property
    def vectors(self) -> int:
        return self.oc_block // self.lanes

    @property
    def hp(self) -> int:
        return self.spec.height + self.spec.padding[0] + self.spec.padding[2]

    @property
    def segments(self) -> int:
        return -(-self.spec.out_width // self.tile)

    @property
    def span(self) -> int:
        """Input pixels under one register tile of a row."""
        return (self.tile - 1) * self.spec.stride[1] + (self.spec.kernel[1] - 1) * self.spec.dilation[1] + 1

    @property
    def wx(self) -> int:
        """Width of the compacted input: the padded width, widened so every tile's span is inside."""
        wp = self.spec.width + self.spec.padding[1] + self.spec.padding[3]
        return max(wp, (self.segments - 1) * self.tile * self.spec.stride[1] + self.span)

    @property
    def chunks(self) -> int:
        return -(-self.spec.in_channels // self.chunk)

    @property
    def blocks(self) -> int:
        return -(-self.spec.out_channels // self.oc_block)

    @property
    def pixels(self) -> int:
        """Pixels of the compacted input (padded, widened): masks and values per chunk."""
        return self.spec.batch * self.hp * self.wx

    def feeds(self, t: int, kw: int) -> int | None:
        """The output pixel of the tile that input pixel ``t`` of its span feeds through kernel
        column ``kw`` (``None``: none)."""
        q, r = divmod(t - kw * self.spec.dilation[1], self.spec.stride[1])
        return q if r == 0 and 0 <= q < self.tile else None


def pack_weight(weight: np.ndarray, layout: ActSparseLayout) -> np.ndarray:
    """OIHW -> flat ``[OB, KH, KW, C, oc_block]`` (zero past ``OC``). (``[OB, KH, C, KW, oc_block]``,
    every ``kw`` of a channel contiguous, measured 7-10% slower at 80-90% zeros.)"""
    oc, ic, kh, kw = weight.shape
    ob, r = layout.blocks, layout.oc_block
    padded = np.zeros((ob * r, ic, kh, kw), np.float32)
    padded[:oc] = weight
    return np.ascontiguousarray(padded.reshape(ob, r, ic, kh, kw).transpose(0, 3, 4, 2, 1)).reshape(-1)


def _compaction(layout: ActSparseLayout) -> str:
    """The masks and values, built one image row and chunk at a time: channel by channel, each
    reading a contiguous row (NCHW read down the channels would stride by a power of two and
    miss L1 on every load); the masks' loop is vectorised across the row."""
    spec = layout.spec
    n, c, h, w = spec.batch, spec.in_channels, spec.height, spec.width
    top, left = spec.padding[0], spec.padding[1]
    hp, wx, ck, chunks, pixels = layout.hp, layout.wx, layout.chunk, layout.chunks, layout.pixels
    last = f"T.min({ck}, {c} - g * {ck})" if c % ck else str(ck)
    at = f"g * {pixels} + (b * {hp} + y + {top}) * {wx} + x + {left}"
    value = f"data[b, g * {ck} + k, y, x]"
    bit = f'T.shift_left(T.Cast("int64", {value} != T.float32(0)), T.Cast("int64", k))'
    return f"""
    for q in range({chunks * pixels}):
        masks[q] = T.int64(0)
    for b, y, g in T.grid({n}, {h}, {chunks}):
        for k in range({last}):
            for x in range({w}):
                masks[{at}] = T.bitwise_or(masks[{at}], {bit})
            for x in range({w}):
                values[({at}) * {ck} + k] = {value}"""


@dataclass(frozen=True)
class Fallback:
    """The kernel an activation-sparse conv runs instead when its input has fewer zeros than
    ``min_zeros`` (counted at run time, over the batch): another PrimFunc of the module, called
    by its GlobalVar (``tvm_compat.as_subroutine``) with the conv's data, its own constant arguments
    (``constants``: their shapes and dtypes, passed after the conv's weight and bias), the
    residual, the output and the ``workspaces`` it needs (``(elements, dtype)`` each; this
    kernel allocates them)."""

    func: tvm.ir.GlobalVar
    constants: tuple  # ((shape, dtype), ...)
    workspaces: tuple  # ((elements, dtype), ...)
    min_zeros: float


def act_sparse_conv2d_script(layout: ActSparseLayout, act: str = "none", has_residual: bool = False,
                             fallback: Fallback | None = None) -> str:
    spec = layout.spec
    n, c, oc = spec.batch, spec.in_channels, spec.out_channels
    oh, ow = spec.out_height, spec.out_width
    kh, kw = spec.kernel
    sh, sw = spec.stride
    dh = spec.dilation[0]
    hp, wx, ob, r = layout.hp, layout.wx, layout.blocks, layout.oc_block
    tile, ck, chunks, segs, pixels = layout.tile, layout.chunk, layout.chunks, layout.segments, layout.pixels
    owp = segs * tile
    res_arg = f'residual: T.Buffer(({n}, {oc}, {oh}, {ow}), "float32"), ' if has_residual else ""

    def store(x: str) -> str:  # one output (pixel x of row y of channel o), the epilogue applied
        res_term = f" + residual[b, o, y, {x}]" if has_residual else ""
        value = f"part[((b * {ob} + o // {r}) * {oh} + y) * {owp * r} + ({x}) * {r} + o % {r}] + bias[o]{res_term}"
        return f"out[b, o, y, {x}] = {_ACT[act].format(v=value)}"

    # The epilogue, a row of one channel at a time as vectors of 16 (the tiles' pixels are 64
    # channels apart in ``part``: one gather, where one float at a time cost ~8 cycles; 512->512 @28:
    # 0.8 -> 0.4 ms); then the rest of the row.
    whole = ow // 16 * 16
    epilogue = f"""
for b, o, y in T.grid({n}, {oc}, {oh}):""" + (f"""
    for xo in range({ow // 16}):
        for xi in T.vectorized(16):
            {store("xo * 16 + xi")}""" if whole else "") + (f"""
    for xi in T.vectorized({ow - whole}):
        {store(f"{whole} + xi")}""" if whole < ow else "")

    # The tile: accumulators acc_{pixel} of oc_block floats (small buffers: registers).
    q0 = f"((b * {ob} + o) * {oh} + y) * {owp * r} + s * {tile * r}"
    lines = ['m = T.decl_buffer((1,), "int64", scope="global")',
             'k = T.decl_buffer((1,), "int32", scope="global")']
    lines += [f'acc_{p} = T.decl_buffer(({r},), "float32", scope="global")' for p in range(tile)]
    first = "i == 0 and g == 0"
    for p in range(tile):
        lines.append(f"for v in T.vectorized({r}):")
        lines.append(f"    acc_{p}[v] = T.if_then_else({first}, T.float32(0), part[{q0} + {p * r} + v])")
    row = f"(b * {hp} + y * {sh} + i * {dh}) * {wx} + s * {tile * sw}"
    lowest = 'T.Cast("int32", T.call_llvm_pure_intrin("int64", "llvm.cttz", m[0], T.bool(False)))'
    for t in range(layout.span):
        taps = [(j, layout.feeds(t, j)) for j in range(kw)]
        taps = [(j, p) for j, p in taps if p is not None]
        if not taps:
            continue
        at = f"g * {pixels} + {row} + {t}"
        lines.append(f"m[0] = masks[{at}]")
        lines.append("while m[0] != T.int64(0):")
        lines.append(f"    k[0] = {lowest}")
        lines.append("    m[0] = T.bitwise_and(m[0], m[0] - T.int64(1))")
        for j, p in taps:
            w_at = f"weight[((o * {kh} + i) * {kw} + {j}) * {c * r} + (g * {ck} + k[0]) * {r} + v]"
            lines.append(f"    for v in T.vectorized({r}):")
            lines.append(f"        acc_{p}[v] = acc_{p}[v] + values[({at}) * {ck} + k[0]] * {w_at}")
    for p in range(tile):
        lines.append(f"for v in T.vectorized({r}):")
        lines.append(f"    part[{q0} + {p * r} + v] = acc_{p}[v]")
    body = "\n".join(" " * 8 + line for line in lines)
    fb_args = "".join(f"fb{k}_h: T.handle, " for k in range(len(fallback.constants))) if fallback else ""
    sparse = f"""
masks = T.decl_buffer(({chunks * pixels},), "int64", scope="global")
values = T.decl_buffer(({chunks * pixels * ck},), "float32", scope="global")
part = T.decl_buffer(({n * ob * oh * owp * r},), "float32", scope="global"){textwrap.dedent(_compaction(layout))}
for b, o, i, g in T.grid({n}, {ob}, {kh}, {chunks}):
    for y, s in T.grid({oh}, {segs}):
{body}{epilogue}"""
    if fallback is not None:
        sparse = _with_fallback(sparse, layout, fallback, has_residual)
    return f"""
# from tvm.script import tirx as T
@T.prim_func
def main(data: T.Buffer(({n}, {c}, {spec.height}, {spec.width}), "float32"), weight_h: T.handle, bias: T.Buffer(({oc},), "float32"), {fb_args}{res_arg}out: T.Buffer(({n}, {oc}, {oh}, {ow}), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    weight = T.match_buffer(weight_h, ({ob * kh * kw * c * r},), "float32"){textwrap.indent(sparse, "    ")}
"""


def _with_fallback(sparse: str, layout: ActSparseLayout, fallback: Fallback, has_residual: bool) -> str:
    """``sparse`` (the kernel's statements) behind a count of the input's nonzeros: with more
    than a ``1 - fallback.min_zeros`` fraction of them, the fallback kernel runs instead."""
    spec, lanes = layout.spec, layout.lanes
    size = spec.batch * spec.in_channels * spec.height * spec.width
    whole = size // lanes * lanes
    limit = int((1.0 - fallback.min_zeros) * size)
    consts = "".join(f'\nfb{k} = T.match_buffer(fb{k}_h, {shape}, "{dtype}")'
                     for k, (shape, dtype) in enumerate(fallback.constants))
    workspaces = "".join(f'\n    ws{k} = T.decl_buffer(({size},), "{dtype}", scope="global")'
                         for k, (size, dtype) in enumerate(fallback.workspaces))
    args = ", ".join(["data.data"] + [f"fb{k}.data" for k in range(len(fallback.constants))]
                     + (["residual.data"] if has_residual else []) + ["out.data"]
                     + [f"ws{k}.data" for k in range(len(fallback.workspaces))])
    total = " + ".join(f"nnz[{v}]" for v in range(lanes))
    return f"""{consts}
flat = T.decl_buffer(({size},), "float32", data=data.data)
nnz = T.decl_buffer(({lanes},), "int32", scope="global")
for v in T.vectorized({lanes}):
    nnz[v] = 0
for i in range({whole // lanes}):
    for v in T.vectorized({lanes}):
        nnz[v] = nnz[v] + T.Cast("int32", flat[i * {lanes} + v] != T.float32(0))
for i in range({whole}, {size}):
    nnz[0] = nnz[0] + T.Cast("int32", flat[i] != T.float32(0))
if {total} > {limit}:{workspaces}
    fallback({args})
else:{textwrap.indent(sparse, "    ")}"""


def act_sparse_conv2d(layout: ActSparseLayout, act: str = "none", has_residual: bool = False,
                      fallback: Fallback | None = None) -> tvm.tirx.PrimFunc:
    """The activation-sparse conv PrimFunc (plain TIR, scheduled by construction), with a
    ``fallback`` kernel for inputs denser than its break-even, or without."""
    if act not in _ACT:
        raise ValueError(f"act_sparse_conv2d: unknown activation {act!r}")
    layout.spec.validate()
    if layout.spec.groups != 1:
        raise ValueError(f"act_sparse_conv2d: groups={layout.spec.groups} is not supported (groups must be 1)")
    if not 0 < layout.chunk <= MASK_BITS:
        raise ValueError(f"act_sparse_conv2d: chunk {layout.chunk} is not in 1..{MASK_BITS} (one int64 mask per pixel)")
    if layout.oc_block % layout.lanes:
        raise ValueError(f"act_sparse_conv2d: oc_block {layout.oc_block} is not a multiple of {layout.lanes} lanes")
    script = act_sparse_conv2d_script(layout, act, has_residual, fallback)
    if fallback is None:
        return tvm.script.from_source(script)

    def call(*args):  # typed: an untyped call failed to build once the callee had a global symbol
        return tvm.ir.Call(fallback.func, list(args), ret_ty="int32")

    return tvm.script.from_source(script, extra_vars={"T": T, "fallback": call})


ROWS = 4  # weight rows of the activation-sparse linear streamed at once


def act_sparse_dense_script(batch: int, in_features: int, out_features: int, lanes: int, act: str = "none",
                            has_residual: bool = False) -> str:
    """The activation-sparse linear layer: per image, the list of its nonzero input features
    (branch-free), then for each one its row of the transposed weight ``[I, O]`` streamed once
    into the outputs, :data:`ROWS` rows side by side. A batch-1 linear layer streams its weights
    from DRAM (larger than the caches, read once); this one reads only the rows its nonzero inputs
    select (25088->4096 with 84% zeros: 2.4 ms against the dense kernel's 11.5; one row at a time
    5.3 ms, the hardware prefetcher losing the stream at every skipped row).

    Arguments: ``data [N, I]``, ``weight [I, O]`` (the layer's weight transposed), ``bias [O]``,
    (``residual [N, O]``), output ``[N, O]``."""
    n, i, o = batch, in_features, out_features
    full = o // lanes * lanes
    res_arg = f'residual: T.Buffer(({n}, {o}), "float32"), ' if has_residual else ""
    res_term = " + residual[b, q]" if has_residual else ""
    result = _ACT[act].format(v=f"acc[q]{res_term}")

    def terms(entries: list[str], q: str) -> str:
        """The products of the weight rows at list ``entries`` with their inputs, output ``q``."""
        return " + ".join(f"data[b, index[{e}]] * weight[index[{e}], {q}]" for e in entries)

    def tail(entries: list[str]) -> str:  # the outputs past the last whole vector
        return f"""
            for q in range({full}, {o}):
                acc[q] = acc[q] + {terms(entries, "q")}""" if full < o else ""

    four = [f"kk * {ROWS} + {r}" for r in range(ROWS)]  # ROWS rows side by side (see the docstring)
    rows_sum, tail_rows = terms(four, f"qo * {lanes} + v"), tail(four)
    one, tail_one = terms(["k"], f"qo * {lanes} + v"), tail(["k"])  # the last count % ROWS rows
    return f"""
# from tvm.script import tirx as T
@T.prim_func
def main(data: T.Buffer(({n}, {i}), "float32"), weight: T.Buffer(({i}, {o}), "float32"), bias: T.Buffer(({o},), "float32"), {res_arg}out: T.Buffer(({n}, {o}), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    index = T.decl_buffer(({i},), "int32", scope="global")
    acc = T.decl_buffer(({o},), "float32", scope="global")
    for b in range({n}):
        count = T.decl_buffer((1,), "int32", scope="global")
        count[0] = 0
        for c in range({i}):
            index[count[0]] = c
            count[0] = count[0] + T.Cast("int32", data[b, c] != T.float32(0))
        for q in range({o}):
            acc[q] = bias[q]
        for kk in range(count[0] // {ROWS}):
            for qo in range({full // lanes}):
                for v in T.vectorized({lanes}):
                    acc[qo * {lanes} + v] = acc[qo * {lanes} + v] + {rows_sum}{tail_rows}
        for k in range(count[0] // {ROWS} * {ROWS}, count[0]):
            for qo in range({full // lanes}):
                for v in T.vectorized({lanes}):
                    acc[qo * {lanes} + v] = acc[qo * {lanes} + v] + {one}{tail_one}
        for q in range({o}):
            out[b, q] = {result}
"""


def act_sparse_dense(batch: int, in_features: int, out_features: int, lanes: int, act: str = "none",
                     has_residual: bool = False) -> tvm.tirx.PrimFunc:
    """The activation-sparse linear PrimFunc (plain TIR, scheduled by construction)."""
    if act not in _ACT:
        raise ValueError(f"act_sparse_dense: unknown activation {act!r}")
    return tvm.script.from_source(act_sparse_dense_script(batch, in_features, out_features, lanes, act,
                                                          has_residual))
