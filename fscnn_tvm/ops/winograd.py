"""Winograd F(m x m, 3 x 3) convolution for dense 3x3 stride-1 layers (Lavin & Gray 2016).

A 3x3 convolution over an ``m x m`` output tile needs ``(m + 2)^2`` multiplications per input and
output channel instead of ``9 m^2`` (F(4x4, 3x3): 36 instead of 144, 4x fewer). The work moves to
three stages, every one in this kernel, with NCHW in and out:

1. **input transform**: each ``a x a`` input tile (``a = m + 2``, tiles overlap by 2) becomes
   ``V[eps, nu, c, tile] = (B^T d B)[eps, nu]``;
2. **batched GEMM**: ``M[eps, nu, k, tile] = sum_c U[eps, nu, k, c] V[eps, nu, c, tile]``, ``a^2``
   independent GEMMs, register-blocked like the direct kernel's 1x1 case: ``p_tile`` consecutive
   tiles of a row x ``oc_block`` output channels of accumulators, one broadcast of ``V`` and
   ``p_tile`` FMAs per step;
3. **output transform** ``Y = A^T M A`` per tile, with the fused epilogue (bias, residual,
   activation), cropped to the output.

The stages run per *block* of ``block_rows`` tile rows of one image (``V`` and ``M`` are
indexed ``[image, block, ...]``, so a block's scratch can stay in L2); a row is computed in whole
register blocks of ``p_tile`` tiles (``tiles_w_padded``), the padding tiles reading zeros.

The weight transform ``U = G g G^T`` is done once, at compile time (:func:`pack_weight`). The
transform matrices are the Cook-Toom ones TVM's topi uses (``tvm_compat.winograd_matrices``), and
every transform is written out as a sum of its nonzero terms with Python constants, so no
multiplication by a zero or a one is ever executed.

Shapes (``KB = ceil(OC / oc_block)``):

- ``data``     ``[N, IC, H, W]``;
- ``weight``   ``[a, a, KB, IC, oc_block]`` (:func:`pack_weight`), zero past ``OC``;
- ``bias``     ``[OC]`` (optional), ``residual`` ``[N, OC, OH, OW]`` (optional);
- output       ``[N, OC, OH, OW]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from tvm import te, tirx

from ..tvm_compat import winograd_matrices
from .activations import activation
from .conv2d import Conv2dSpec, deinterleaved_padded_input

TILE_SIZES = (2, 4, 6)  # F(2x2,3x3), F(4x4,3x3), F(6x6,3x3)
MIN_CHANNELS = 4  # fewer input channels (an RGB stem): the transforms cost more than the GEMM saves


def supports(spec: Conv2dSpec) -> str | None:
    """Why Winograd cannot run ``spec``, or ``None`` when it can."""
    if spec.kernel != (3, 3):
        return f"kernel {spec.kernel[0]}x{spec.kernel[1]}: Winograd here is for 3x3"
    if spec.stride != (1, 1):
        return f"stride {spec.stride}: Winograd needs stride 1"
    if spec.dilation != (1, 1):
        return f"dilation {spec.dilation}: Winograd needs dilation 1"
    if spec.groups != 1:
        return f"groups={spec.groups}: Winograd needs groups=1"
    if spec.in_channels < MIN_CHANNELS:
        return f"{spec.in_channels} input channels: the transforms cannot pay below {MIN_CHANNELS}"
    return None


@cache
def _matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if m not in TILE_SIZES:
        raise ValueError(f"winograd: tile size {m} not in {TILE_SIZES}")
    return winograd_matrices(m, 3)


@dataclass(frozen=True)
class WinogradLayout:
    """The static shape of one Winograd kernel: the layer, the tile ``m`` and the GEMM tile."""

    spec: Conv2dSpec
    m: int  # output tile is m x m
    oc_block: int  # output channels per vector block (the GEMM's vector)
    p_tile: int  # tiles per register block of the GEMM: consecutive tiles of one row (<= tiles_w)
    block_rows: int = 0  # tile rows per block (divides tiles_h); 0: all of them

    def __post_init__(self):
        reason = supports(self.spec)
        if reason:
            raise ValueError(f"winograd: {reason}")
        if self.block_rows == 0:
            object.__setattr__(self, "block_rows", self.tiles_h)
        if not 1 <= self.p_tile <= self.tiles_w:
            raise ValueError(f"winograd: register block of {self.p_tile} tiles for rows of {self.tiles_w}")
        if self.tiles_h % self.block_rows:
            raise ValueError(f"winograd: block of {self.block_rows} tile rows does not divide "
                             f"{self.tiles_h} tile rows")

    @property
    def alpha(self) -> int:
        return self.m + 2

    @property
    def tiles_h(self) -> int:
        return -(-self.spec.out_height // self.m)

    @property
    def tiles_w(self) -> int:
        return -(-self.spec.out_width // self.m)

    @property
    def tiles_w_padded(self) -> int:
        """Tiles per row the kernel computes: the row in whole register blocks of ``p_tile``."""
        return -(-self.tiles_w // self.p_tile) * self.p_tile

    @property
    def row_chunks(self) -> int:
        return self.tiles_w_padded // self.p_tile

    @property
    def row_blocks(self) -> int:
        return self.tiles_h // self.block_rows

    @property
    def block_tiles(self) -> int:
        """Tiles per block, the padding tiles of its rows included."""
        return self.block_rows * self.tiles_w_padded

    @property
    def tiles_padded(self) -> int:
        """Tiles the GEMM computes, padding included, over the whole batch."""
        return self.spec.batch * self.row_blocks * self.block_tiles

    @property
    def oc_blocks(self) -> int:
        return -(-self.spec.out_channels // self.oc_block)


def pack_weight(weight: np.ndarray, layout: WinogradLayout) -> np.ndarray:
    """OIHW ``[OC, IC, 3, 3]`` -> ``U`` ``[a, a, KB, IC, oc_block]`` (``G g G^T``, in float64)."""
    _, _, g = _matrices(layout.m)
    oc, ic = weight.shape[:2]
    u = np.einsum("er,kcrs,ns->enkc", g, weight.astype(np.float64), g)  # [a, a, OC, IC]
    a, kb, ob = layout.alpha, layout.oc_blocks, layout.oc_block
    padded = np.zeros((a, a, kb * ob, ic))
    padded[:, :, :oc] = u
    return np.ascontiguousarray(padded.reshape(a, a, kb, ob, ic).transpose(0, 1, 2, 4, 3)).astype(np.float32)


def _combine(coefficients, terms):
    """``sum_i coefficients[i] * terms[i]`` over the nonzero coefficients, +-1 as add/subtract."""
    total = None
    for c, t in zip(coefficients, terms):
        if c == 0:
            continue
        if c in (1.0, -1.0):
            term, negative = t, c < 0
        else:
            term, negative = t * tirx.const(float(abs(c)), "float32"), c < 0
        if total is None:
            total = -term if negative else term
        else:
            total = total - term if negative else total + term
    return total if total is not None else tirx.const(0.0, "float32")


def _select(index, values):
    """``values[index]`` for a loop variable ``index`` the schedule unrolls (the select folds)."""
    out = values[-1]
    for i in range(len(values) - 2, -1, -1):
        out = tirx.Select(index == i, values[i], out)
    return out


def winograd_conv2d(layout: WinogradLayout, *, act: str = "none", has_bias: bool = False,
                    has_residual: bool = False):
    """TE tensors of the Winograd conv; inputs in call order ``data, weight[, bias][, residual]``."""
    spec = layout.spec  # a WinogradLayout exists only for a spec Winograd supports
    spec.validate()
    m, a, ob, pt = layout.m, layout.alpha, layout.oc_block, layout.p_tile
    mat_a, mat_b, _ = _matrices(m)
    n_img, ic, h, w = spec.batch, spec.in_channels, spec.height, spec.width
    th = layout.tiles_h
    top, left = spec.padding[0], spec.padding[1]
    data = te.placeholder((n_img, ic, h, w), "float32", name="data")
    weight = te.placeholder((a, a, layout.oc_blocks, ic, ob), "float32", name="weight")
    bias = te.placeholder((spec.out_channels,), "float32", name="bias") if has_bias else None
    residual = te.placeholder(spec.out_shape, "float32", name="residual") if has_residual else None
    inputs = [data, weight] + ([bias] if has_bias else []) + ([residual] if has_residual else [])

    twp, nx, rows = layout.tiles_w_padded, layout.row_chunks, layout.block_rows
    # consecutive tiles of a row read consecutive addresses of the de-interleaved padded input
    xp = deinterleaved_padded_input(data, th * m + 2, m, twp + 1, top, left, tirx.const(0.0, "float32"))
    # a block is `rows` tile rows of `twp` tiles (the row padded to whole register blocks of
    # p_tile tiles; the padding tiles read zeros and are never stored); register block jb of a
    # block is chunk jb % nx of its tile row jb // nx
    jb_count = rows * nx
    block = (n_img, layout.row_blocks)

    def tile_input(b, yb, jb, c, r1, r2, pi):
        return xp[b, c, (yb * rows + jb // nx) * m + r1, r2 % m, (jb % nx) * pt + pi + r2 // m]

    # B^T d: columns of each tile (eps over r1), then (B^T d) B (nu over r2)
    col = te.compute((*block, jb_count, ic, a, a, pt), lambda b, yb, jb, c, e, r2, pi: _select(
        e, [_combine(mat_b[:, i], [tile_input(b, yb, jb, c, r1, r2, pi) for r1 in range(a)]) for i in range(a)]),
        name="input_col")
    v = te.compute((*block, a, a, jb_count, ic, pt), lambda b, yb, e, u, jb, c, pi: _select(
        u, [_combine(mat_b[:, i], [col[b, yb, jb, c, e, r2, pi] for r2 in range(a)]) for i in range(a)]),
        name="input_transform")
    rc = te.reduce_axis((0, ic), name="rc")
    gemm = te.compute(  # tiles as (register block, tile in it): a block's padding tiles are computed too
        (*block, a, a, layout.oc_blocks, jb_count, pt, ob),
        lambda b, yb, e, u, kb, jb, pi, vv: te.sum(
            v[b, yb, e, u, jb, rc, pi] * weight[e, u, kb, rc, vv], axis=rc),
        name="gemm")

    def output_body(b, k, y, x):
        ty = y // m
        j = (ty % rows) * twp + x // m
        mm = [[gemm[b, ty // rows, e, u, k // ob, j // pt, j % pt, k % ob] for u in range(a)] for e in range(a)]
        cols = [[_combine(mat_a[:, i], mm[e]) for i in range(m)] for e in range(a)]  # M A
        cells = [[_combine(mat_a[:, i], [cols[e][jj] for e in range(a)]) for jj in range(m)]
                 for i in range(m)]  # A^T M A
        value = _select(y % m, [_select(x % m, cells[i]) for i in range(m)])
        if bias is not None:
            value = value + bias[k]
        if residual is not None:
            value = value + residual[b, k, y, x]
        return activation(value, act)

    out = te.compute(spec.out_shape, output_body, name="out")
    return inputs, out
