"""CUDA direct convolution (Escoin-style): one kernel for CSR, BSR and dense weights.

The geometry is the x86 sparse conv's (``fscnn_tvm/ops/sparse_conv2d.py``): the input is staged
into a flat zero-padded buffer ``Xp`` (phase planes for stride > 1) and every stored weight column
has a precomputed *offset* into it, so output ``p = oh*Ws + ow`` of row ``oc`` is
``sum_j values[j] * Xp[n*image + offsets[j] + p]``: no im2col and no index decoding.

On the GPU the kernel is written already scheduled, threads bound in the script (TE cannot
express the data-dependent reduction, and the thread geometry below *is* its schedule); the
choice of block rows for dense layers is a rule in ``schedules/cuda/rules.py``:

- a thread block owns one *row block* of ``R`` output channels (``blockIdx.y``) and a tile of
  ``THREADS x COARSEN`` flat outputs of one image (``blockIdx.x``); thread ``t`` computes outputs
  ``t, t + THREADS, ...`` (register coarsening), so neighbouring threads read neighbouring
  inputs and every global load is coalesced;
- the row block's nonzeros are staged in shared memory ``CHUNK`` at a time (one load per thread),
  then every thread sweeps them: per nonzero, ``COARSEN`` input loads each feeding ``R`` FMAs
  into ``R x COARSEN`` register accumulators;
- bias, residual and activation are applied as the accumulators are stored; junk columns of the
  flat output (``ow >= OW``) and rows past ``OC`` are skipped, so no crop pass is needed.

CSR is ``R = 1``; BSR ``R`` stores blocks of ``R`` output channels; a dense (or grouped, or
depthwise) layer runs as BSR with every block stored (``R`` dividing the channels per group, the
group's input base folded into its offsets), so each input load feeds ``R`` FMAs.

Arguments in call order: ``data [N, IC, H, W]``, ``indptr [rows+1] int32``, ``offsets [nnzb]
int32``, ``values [nnzb*R]``, ``bias [OC]``, (``residual [N, OC, OH, OW]``), ``out``.
"""
from __future__ import annotations

import numpy as np
import tvm

from .. import sparse
from .activations import ACTIVATION_SCRIPT as _ACT
from .conv2d import Conv2dSpec
from .sparse_conv2d import SparseConvLayout

THREADS = 128  # threads per block, along the flat output
COARSEN = 2  # outputs per thread (register coarsening along the flat output)
CHUNK = 128  # nonzero blocks staged in shared memory per step: one per thread
COPY_THREADS = 256  # threads per block of the staging copies


def layout(spec: Conv2dSpec, block_rows: int) -> SparseConvLayout:
    """The geometry of the CUDA conv (stride must be equal in both axes)."""
    return SparseConvLayout(spec, THREADS * COARSEN, block_rows)


def weight_arrays(lay: SparseConvLayout, weight: np.ndarray, keep_zero_blocks: bool) -> list[np.ndarray]:
    """``indptr, offsets, values`` of ``weight [OC, IC/groups, KH, KW]`` for the kernel.

    ``keep_zero_blocks`` stores every block (the dense kernel: no data-dependent skipping needed,
    and the same code as BSR). Grouped weights get each block's group folded into its offsets.
    """
    spec, r = lay.spec, lay.block_rows
    if keep_zero_blocks:
        rows = lay.rows
        cols_per_row = int(np.prod(weight.shape[1:]))
        padded = np.zeros((rows * r,) + weight.shape[1:], np.float32)
        padded[:spec.out_channels] = weight
        indptr = (np.arange(rows + 1) * cols_per_row).astype(np.int32)
        cols = np.tile(np.arange(cols_per_row, dtype=np.int32), rows)
        values = padded.reshape(rows, r, cols_per_row).transpose(0, 2, 1).reshape(-1)
    else:
        fmt = sparse.csr_from_dense(weight) if r == 1 else sparse.bsr_from_dense(weight, r)
        indptr, cols, values = fmt.indptr, fmt.cols, fmt.values.reshape(-1)
    if spec.groups > 1:
        per_group_cols = int(np.prod(weight.shape[1:]))
        block_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        group = block_of * r // (spec.out_channels // spec.groups)
        cols = cols.copy()
        cols[:len(block_of)] += (group * per_group_cols).astype(np.int32)
    return [indptr.astype(np.int32), lay.offsets(cols), np.ascontiguousarray(values, np.float32)]


def _flat_loop(total: int, body: list[str], indent: str = "    ") -> list[str]:
    """An elementwise loop over ``total`` items, one per thread; ``$i`` in ``body`` is the item."""
    blocks = -(-total // COPY_THREADS)
    out = [f"{indent}for bx in T.thread_binding({blocks}, thread=\"blockIdx.x\"):",
           f"{indent}    for tx in T.thread_binding({COPY_THREADS}, thread=\"threadIdx.x\"):",
           f"{indent}        if bx * {COPY_THREADS} + tx < {total}:"]
    return out + [f"{indent}            {line}".replace("$i", f"(bx * {COPY_THREADS} + tx)") for line in body]


def _staging(lay: SparseConvLayout) -> str:
    spec = lay.spec
    n, ic, h, w = spec.batch, spec.in_channels, spec.height, spec.width
    top, left = spec.padding[0], spec.padding[1]
    flat, ws, plane, xs = lay.flat_len, lay.ws, lay.plane, lay.image_size
    if lay.direct:
        return f'    Xp = T.decl_buffer(({n * ic * h * w},), "float32", data=data.data)\n'
    zero_from = n * xs if (lay.stride > 1 or not any(spec.padding)) else 0
    out = [f'    Xp = T.alloc_buffer(({flat},), "float32")']
    out += _flat_loop(flat - zero_from, [f"Xp[{zero_from} + $i] = T.float32(0)"])
    if lay.stride == 1:
        b, c, y, x = (f"($i // {ic * h * w})", f"($i // {h * w} % {ic})", f"($i // {w} % {h})", f"($i % {w})")
        out += _flat_loop(n * ic * h * w, [
            f"Xp[{b} * {xs} + {c} * {plane} + ({y} + {top}) * {ws} + {x} + {left}] = data[{b}, {c}, {y}, {x}]"])
        return "\n".join(out) + "\n"
    s, hs = lay.stride, lay.hs
    b, c, vy, vx = (f"($i // {ic * hs * ws})", f"($i // {hs * ws} % {ic})", f"($i // {ws} % {hs})", f"($i % {ws})")
    for k, (py, px) in enumerate(lay.phases):
        y, x = f"{vy} * {s} + {py - top}", f"{vx} * {s} + {px - left}"
        out += _flat_loop(n * ic * hs * ws, [
            f"Xp[{b} * {xs} + {k * ic * plane} + {c} * {plane} + {vy} * {ws} + {vx}] = T.if_then_else("
            f"0 <= {y} and {y} < {h} and 0 <= {x} and {x} < {w}, data[{b}, {c}, "
            f"T.min(T.max({y}, 0), {h - 1}), T.min(T.max({x}, 0), {w - 1})], T.float32(0))"])
    return "\n".join(out) + "\n"


def conv2d_script(lay: SparseConvLayout, act: str = "none", has_residual: bool = False) -> str:
    """TVMScript source of the CUDA conv (see the module docstring)."""
    spec = lay.spec
    n, ic, h, w, oc = spec.batch, spec.in_channels, spec.height, spec.width, spec.out_channels
    oh, ow = spec.out_height, spec.out_width
    r, rows, tiles, pt = lay.block_rows, lay.rows, lay.tiles, lay.tile
    xs, ws, c_out = lay.image_size, lay.ws, pt // THREADS
    res_arg = f'residual: T.Buffer(({n}, {oc}, {oh}, {ow}), "float32"), ' if has_residual else ""
    img, p = f"bx // {tiles}", f"(bx % {tiles} * {pt} + c * {THREADS} + tx)"
    res_term = f" + residual[{img}, by * {r} + rr, {p} // {ws}, {p} % {ws}]" if has_residual else ""
    value = f"acc[rr * {c_out} + c] + bias[by * {r} + rr]{res_term}"
    start, stop = "indptr[by]", "indptr[by + 1]"
    at = f"{start} + ck * {CHUNK} + k * {THREADS} + tx"
    return f"""
# from tvm.script import tirx as T
@T.prim_func
def main(data: T.Buffer(({n}, {ic}, {h}, {w}), "float32"), indptr: T.Buffer(({rows + 1},), "int32"), offsets_h: T.handle, values_h: T.handle, bias: T.Buffer(({oc},), "float32"), {res_arg}out: T.Buffer(({n}, {oc}, {oh}, {ow}), "float32")):
    T.func_attr({{"tirx.noalias": True}})
    nnz = T.int32()
    offsets = T.match_buffer(offsets_h, (nnz,), "int32")
    values = T.match_buffer(values_h, (nnz * {r},), "float32")
{_staging(lay)}    for bx in T.thread_binding({n * tiles}, thread="blockIdx.x"):
        for by in T.thread_binding({rows}, thread="blockIdx.y"):
            for tx in T.thread_binding({THREADS}, thread="threadIdx.x"):
                acc = T.alloc_buffer(({r * c_out},), "float32", scope="local")
                sv = T.alloc_buffer(({CHUNK * r},), "float32", scope="shared")
                so = T.alloc_buffer(({CHUNK},), "int32", scope="shared")
                for i in T.unroll({r * c_out}):
                    acc[i] = T.float32(0)
                for ck in range(({stop} - {start} + {CHUNK - 1}) // {CHUNK}):
                    for k in range({CHUNK // THREADS}):
                        if {at} < {stop}:
                            so[k * {THREADS} + tx] = offsets[{at}]
                            for rr in T.unroll({r}):
                                sv[(k * {THREADS} + tx) * {r} + rr] = values[({at}) * {r} + rr]
                    T.tvm_storage_sync("shared")
                    for j in range(T.min({CHUNK}, {stop} - {start} - ck * {CHUNK})):
                        for c in T.unroll({c_out}):
                            for rr in T.unroll({r}):
                                acc[rr * {c_out} + c] = acc[rr * {c_out} + c] + sv[j * {r} + rr] * Xp[{img} * {xs} + so[j] + {p}]
                    T.tvm_storage_sync("shared")
                for rr in T.unroll({r}):
                    for c in T.unroll({c_out}):
                        if by * {r} + rr < {oc} and {p} < {oh * ws} and {p} % {ws} < {ow}:
                            out[{img}, by * {r} + rr, {p} // {ws}, {p} % {ws}] = {_ACT[act].format(v=value)}
"""


def conv2d(lay: SparseConvLayout, act: str = "none", has_residual: bool = False) -> tvm.tirx.PrimFunc:
    """The CUDA conv PrimFunc (already scheduled)."""
    if act not in _ACT:
        raise ValueError(f"cuda conv2d: unknown activation {act!r}")
    lay.spec.validate()
    return tvm.script.from_source(conv2d_script(lay, act, has_residual))
