"""Direct sparse conv2d (Park et al.): CSR or BSR weights against the dense NCHW input, no im2col.

The input is staged once into a flat zero-padded buffer ``Xp`` (1x1 stride-1 layers without
padding read their input in place). For stride ``s`` the padded image is split into phase planes
(``Xp[phase][ic][y // s][x // s]`` for ``phase = (y % s, x % s)``, only the phases some tap
reads), so every stride reads its input contiguously. The output is computed in a flat index
``p = oh*Ws + ow`` (``Ws`` = plane width) and for every nonzero weight ``j`` of row ``oc``::

    Cp[n, oc, p] += values[j] * Xp[n*image + offsets[j] + p]

``offsets[j]`` (``SparseConvLayout.offsets``) encodes phase, ``ic``, ``kh``, ``kw`` and dilation,
precomputed at compile time, so the inner loop is one broadcast of the weight and a run of
contiguous vector FMAs, with no index decoding. Columns ``ow >= OW`` of each flat row are junk and
never stored; the epilogue crops ``Cp`` into ``Y`` and applies bias, residual and activation.

TE cannot express a data-dependent reduction that still schedules into registers
(``../shared/TVM_NOTES.md`` 2a), so the PrimFunc is generated as TVMScript: an outer block ``row``
over ``(n, tile, row)`` and an inner reduction block ``C`` whose extent is the row's nonzero
count. ``schedules/x86/sparse_conv2d.py`` tiles ``C`` into registers.

Arguments in call order:
``data [N, IC, H, W]``, ``indptr [chunks*rows+1] int32``, ``offsets [nnz] int32``,
``values [nnz] (CSR) | [nnzb*R] (BSR)``, ``bias [OC]``, (``residual [N, OC, OH, OW]``), output.
``rows`` is OC (CSR) or ceil(OC/R) (BSR); ``nnz`` is symbolic, so layers of one shape share code.

With ``align > 1`` (CSR layers with a kernel wider than 1) every load is aligned: offsets leave
out each tap's shift within a plane row, rows become (shift, output channel) and the epilogue adds
the shifted partial rows (``SparseConvLayout.shifts``).

With ``chunks > 1`` the reduction is split by input-channel chunk (row ``chunk*rows + r``): per
tile, every row sweeps one chunk's input windows while they are in L1, and the tile's partial sum
is carried in ``Cp`` from one chunk to the next (the accumulator's init reads it back).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm

from .activations import ACTIVATION_SCRIPT as _ACT
from .conv2d import Conv2dSpec


@dataclass(frozen=True)
class SparseConvLayout:
    """Geometry of the padded flat input and the flat output of one sparse conv."""

    spec: Conv2dSpec
    tile: int  # outputs per (row, tile) step: the register tile, a multiple of the vector width
    block_rows: int = 1  # 1: CSR; R > 1: BSR with R output channels per block
    chunks: int = 1  # input-channel chunks: rows are (chunk, row), partial sums carried in Cp
    align: int = 1  # > 1: aligned loads, taps split by column shift (see ``shifts``); CSR only

    def __post_init__(self):
        if self.spec.stride[0] != self.spec.stride[1]:
            raise ValueError(f"sparse_conv2d: stride {self.spec.stride} must be equal in both axes")
        if self.align > 1 and (self.block_rows != 1 or self.tile % self.align):
            raise ValueError(f"sparse_conv2d: align={self.align} needs CSR and a tile that is a "
                             f"multiple of it (block_rows={self.block_rows}, tile={self.tile})")

    @property
    def stride(self) -> int:
        return self.spec.stride[0]

    @property
    def hp(self) -> int:
        return self.spec.height + self.spec.padding[0] + self.spec.padding[2]

    @property
    def wp(self) -> int:
        return self.spec.width + self.spec.padding[1] + self.spec.padding[3]

    @property
    def hs(self) -> int:
        return -(-self.hp // self.stride)

    @property
    def ws(self) -> int:
        """Phase-plane width, also the row pitch of the flat output (a multiple of ``align``)."""
        return -(-self.wp // self.stride // self.align) * self.align

    @property
    def shifts(self) -> list[int]:
        """Column shifts within a plane row that the taps' offsets leave out (``[0]`` unaligned).

        Aligned layouts drop a tap's in-row shift ``kw*dilation // stride`` from its offset, so
        every offset is a multiple of ``align`` and every vector load is aligned (a misaligned
        512-bit load splits a cache line: measured 1.4x slower). The kernel then runs one row per
        (shift, output channel), each holding the taps of that shift, and the epilogue adds the
        rows up, shifted: ``out[oc, p] = sum_v Cp[v_index*OC + oc, p + v]``.
        """
        if self.align == 1:
            return [0]
        s, dw = self.stride, self.spec.dilation[1]
        return sorted({c * dw // s for c in range(self.spec.kernel[1])})

    @property
    def kernel_rows(self) -> int:
        """Rows the kernel sweeps per chunk: (shift, row) pairs."""
        return len(self.shifts) * self.rows

    def by_shift(self, weight: np.ndarray) -> np.ndarray:
        """The weight as the kernel's rows: ``[len(shifts) * OC, ...]``, block ``v`` holding only
        the taps of shift ``shifts[v]`` (the weight itself when unaligned)."""
        if self.align == 1:
            return weight
        s, dw = self.stride, self.spec.dilation[1]
        shift_of = np.array([c * dw // s for c in range(self.spec.kernel[1])])
        return np.concatenate([np.where(shift_of == v, weight, 0).astype(weight.dtype) for v in self.shifts])

    @property
    def plane(self) -> int:
        return self.hs * self.ws

    @property
    def phases(self) -> list[tuple[int, int]]:
        """The ``(y % s, x % s)`` phase planes some kernel tap reads (1x1 stride 2: only one)."""
        s, (kh, kw), (dh, dw) = self.stride, self.spec.kernel, self.spec.dilation
        return sorted({(r * dh % s, c * dw % s) for r in range(kh) for c in range(kw)})

    @property
    def direct(self) -> bool:
        """1x1, stride 1, no padding, whole tiles: the kernel reads the input in place, no copy."""
        spec = self.spec
        return (spec.kernel == (1, 1) and self.stride == 1 and not any(spec.padding)
                and self.ws == spec.width and (spec.height * spec.width) % self.tile == 0)

    @property
    def image_size(self) -> int:
        return len(self.phases) * self.spec.in_channels * self.plane

    @property
    def tiles(self) -> int:
        return -(-(self.spec.out_height * self.ws) // self.tile)

    @property
    def rows(self) -> int:
        return -(-self.spec.out_channels // self.block_rows)

    @property
    def flat_len(self) -> int:
        """Length of ``Xp``: every read of a junk column stays inside (and reads zeros)."""
        need = self.spec.batch * self.image_size + self.tiles * self.tile
        return -(-need // 64) * 64

    def offsets(self, cols: np.ndarray) -> np.ndarray:
        """Column ``(ic*KH + kh)*KW + kw`` -> its offset in one image of ``Xp``."""
        kh, kw = self.spec.kernel
        s = self.stride
        ic, rem = np.divmod(cols.astype(np.int64), kh * kw)
        r, c = np.divmod(rem, kw)
        a, b = r * self.spec.dilation[0], c * self.spec.dilation[1]
        index = {ph: i for i, ph in enumerate(self.phases)}
        phase = np.array([index[(y, x)] for y, x in zip((a % s).tolist(), (b % s).tolist())], dtype=np.int64)
        offs = (phase * self.spec.in_channels + ic) * self.plane + (a // s) * self.ws
        if self.align == 1:
            offs += b // s
        if self.spec.batch * self.image_size + self.tiles * self.tile >= 2**31:
            raise ValueError(f"sparse_conv2d: input {self.spec.batch}x{self.spec.in_channels}x"
                             f"{self.hp}x{self.wp} is too large for int32 offsets")
        return offs.astype(np.int32)


def _staging(layout: SparseConvLayout) -> str:
    """TVMScript that fills ``Xp``: in place, padded copy (stride 1), or phase planes (stride s).

    Only the part of ``Xp`` no copy writes is zero-filled.
    """
    spec = layout.spec
    n, ic, h, w = spec.batch, spec.in_channels, spec.height, spec.width
    top, left = spec.padding[0], spec.padding[1]
    flat, ws, plane, xs = layout.flat_len, layout.ws, layout.plane, layout.image_size
    if layout.direct:
        return f'    Xp = T.decl_buffer(({n * ic * h * w},), "float32", data=data.data)\n'
    zero_from = n * xs if (layout.stride > 1 or not any(spec.padding)) else 0
    out = [f'    Xp = T.alloc_buffer(({flat},), "float32")',
           f"    for i in range({flat - zero_from}):",
           '        with T.sblock("zero"):',
           f"            vi = T.axis.spatial({flat - zero_from}, i)",
           f"            Xp[{zero_from} + vi] = T.float32(0)"]
    if layout.stride == 1:
        out += [f"    for b, c, y, x in T.grid({n}, {ic}, {h}, {w}):",
                '        with T.sblock("pad"):',
                '            vb, vc, vy, vx = T.axis.remap("SSSS", [b, c, y, x])',
                f"            Xp[vb * {xs} + vc * {plane} + (vy + {top}) * {ws} + vx + {left}] = data[vb, vc, vy, vx]"]
        return "\n".join(out) + "\n"
    s = layout.stride
    for k, (py, px) in enumerate(layout.phases):
        y, x = f"vy * {s} + {py - top}", f"vx * {s} + {px - left}"
        out += [f"    for b, c, y, x in T.grid({n}, {ic}, {layout.hs}, {ws}):",
                f'        with T.sblock("phase{k}"):',
                '            vb, vc, vy, vx = T.axis.remap("SSSS", [b, c, y, x])',
                f"            Xp[vb * {xs} + {k * ic * plane} + vc * {plane} + vy * {ws} + vx] = T.if_then_else("
                f"0 <= {y} and {y} < {h} and 0 <= {x} and {x} < {w}, "
                f"data[vb, vc, T.min(T.max({y}, 0), {h - 1}), T.min(T.max({x}, 0), {w - 1})], T.float32(0))"]
    return "\n".join(out) + "\n"


def sparse_conv2d_script(layout: SparseConvLayout, act: str = "none", has_residual: bool = False) -> str:
    """TVMScript source of the kernel (see the module docstring for the argument order)."""
    spec = layout.spec
    n, ic, h, w, oc = spec.batch, spec.in_channels, spec.height, spec.width, spec.out_channels
    oh, ow = spec.out_height, spec.out_width
    r, pt, rows = layout.block_rows, layout.tile, layout.kernel_rows
    cp_rows = rows * r
    xs, ws = layout.image_size, layout.ws
    pad_len = layout.tiles * pt
    res_arg = f'residual: T.Buffer(({n}, {oc}, {oh}, {ow}), "float32"), ' if has_residual else ""
    res_term = " + residual[vn, voc, voh, vow]" if has_residual else ""
    partial = " + ".join(f"Cp[vn, {i * oc} + voc, voh * {ws} + vow + {v}]"
                         for i, v in enumerate(layout.shifts))
    value = f"{partial} + bias[voc]{res_term}"
    k = layout.chunks
    row = f"vch * {rows} + vrow"
    nz = f"indptr[{row} + 1] - indptr[{row}]"
    x_at = f"Xp[vn * {xs} + offsets[indptr[{row}] + vj] + vpo * {pt} + vpi]"
    if r == 1:
        vals_shape = "(nnz,)"
        row_loops = f"""            acc = T.sblock_alloc_buffer(({pt},), scope="global")
            for pi, j in T.grid({pt}, {nz}):
                with T.sblock("C"):
                    vpi = T.axis.spatial({pt}, pi)
                    vj = T.axis.reduce({nz}, j)
                    with T.init():
                        acc[vpi] = T.if_then_else(vch == 0, T.float32(0), Cp[vn, vrow, vpo * {pt} + vpi])
                    acc[vpi] = acc[vpi] + values[indptr[{row}] + vj] * {x_at}
            for pi in range({pt}):
                with T.sblock("store"):
                    vpi = T.axis.spatial({pt}, pi)
                    Cp[vn, vrow, vpo * {pt} + vpi] = acc[vpi]"""
    else:
        vals_shape = f"(nnz * {r},)"
        row_loops = f"""            acc = T.sblock_alloc_buffer(({r}, {pt}), scope="global")
            for rr, pi, j in T.grid({r}, {pt}, {nz}):
                with T.sblock("C"):
                    vr = T.axis.spatial({r}, rr)
                    vpi = T.axis.spatial({pt}, pi)
                    vj = T.axis.reduce({nz}, j)
                    with T.init():
                        acc[vr, vpi] = T.if_then_else(vch == 0, T.float32(0), Cp[vn, vrow * {r} + vr, vpo * {pt} + vpi])
                    acc[vr, vpi] = acc[vr, vpi] + values[(indptr[{row}] + vj) * {r} + vr] * {x_at}
            for rr, pi in T.grid({r}, {pt}):
                with T.sblock("store"):
                    vr, vpi = T.axis.remap("SS", [rr, pi])
                    Cp[vn, vrow * {r} + vr, vpo * {pt} + vpi] = acc[vr, vpi]"""
    return f"""
# from tvm.script import tirx as T
@T.prim_func(s_tir=True)
def main(data: T.Buffer(({n}, {ic}, {h}, {w}), "float32"), indptr: T.Buffer(({k * rows + 1},), "int32"), offsets_h: T.handle, values_h: T.handle, bias: T.Buffer(({oc},), "float32"), {res_arg}out: T.Buffer(({n}, {oc}, {oh}, {ow}), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    nnz = T.int32()
    offsets = T.match_buffer(offsets_h, (nnz,), "int32")
    values = T.match_buffer(values_h, {vals_shape}, "float32")
    Cp = T.alloc_buffer(({n}, {cp_rows}, {pad_len}), "float32")
{_staging(layout)}    for b, po, ch, row in T.grid({n}, {layout.tiles}, {k}, {rows}):
        with T.sblock("row"):
            vn, vpo, vch, vrow = T.axis.remap("SSSS", [b, po, ch, row])
{row_loops}
    for b, c, y, x in T.grid({n}, {oc}, {oh}, {ow}):
        with T.sblock("out"):
            vn, voc, voh, vow = T.axis.remap("SSSS", [b, c, y, x])
            out[vn, voc, voh, vow] = {_ACT[act].format(v=value)}
"""


def sparse_conv2d(layout: SparseConvLayout, act: str = "none", has_residual: bool = False) -> tvm.tirx.PrimFunc:
    """The unscheduled PrimFunc of the sparse conv (parse of :func:`sparse_conv2d_script`)."""
    if act not in _ACT:
        raise ValueError(f"sparse_conv2d: unknown activation {act!r}")
    layout.spec.validate()
    if layout.spec.groups != 1:
        raise ValueError(f"sparse_conv2d: groups={layout.spec.groups} is not supported (groups must be 1)")
    src = sparse_conv2d_script(layout, act, has_residual)
    return tvm.script.from_source(src)
