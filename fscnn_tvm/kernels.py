"""From a planned layer to a kernel: the PrimFunc (compute from ``ops/``), its knobs, its constants.

The knobs (register tile, output-channel block, input-channel chunks) are chosen here from the
target's vector width and measured rules; they shape the compute and are stored on the PrimFunc
as ``fscnn.*`` attributes, so the schedule rule in ``schedules/<target>/`` that picks the
function up applies the matching schedule.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te

from . import sparse, targets
from .ops import conv2d as conv_ops
from .ops import dense as dense_ops
from .ops import sparse_conv2d as sparse_conv_ops
from .ops import sparse_dense as sparse_dense_ops
from .passes import Layer

OPAQUE = 8  # TVM OpPatternKind kOpaque: FuseOps must not merge other ops into our kernels


@dataclass
class Kernel:
    func: tvm.tirx.PrimFunc
    constants: list[np.ndarray]  # passed after the data argument, before the residual
    key: tuple  # equal keys -> the same PrimFunc can serve both layers
    symbol: str


def conv_spec(layer: Layer) -> conv_ops.Conv2dSpec:
    n, c, h, w = layer.in_shape
    a = layer.attrs
    return conv_ops.Conv2dSpec(n, c, h, w, layer.out_shape[1], tuple(layer.weight.shape[2:]),
                               a["stride"], a["padding"], a["dilation"], a["groups"])


def max_ow_tile(lanes: int, oc_block: int) -> int:
    """Widest output-column tile whose accumulators fit the registers (~14 of 32 zmm, ~10 of 16 ymm)."""
    budget = 14 if lanes >= 16 else 10
    return max(1, budget * lanes // oc_block)


def conv_tile(spec: conv_ops.Conv2dSpec, lanes: int, oc_block: int | None = None) -> tuple[str, int, int]:
    """(kind, ow_tile, oc_block) for a dense conv on a CPU with ``lanes`` fp32 lanes (``oc_block``:
    a tuned choice instead of the rule's).

    A tile keeps ~14 accumulators live (of 32 registers with AVX-512, of 16 with AVX2 ~10): wide
    rows get ``ow_tile`` ~14 x one vector of output channels; narrow rows (<12 columns) get the
    whole row x two vectors, and so do large kernels (5x5 and up: each broadcast then feeds two
    FMAs). Tiles are chosen to waste the fewest padded columns.
    """
    ow = spec.out_width
    large_kernel = spec.kernel[0] * spec.kernel[1] >= 25  # 7x7 stem: 1.50 -> 1.04 ms with 2 vectors
    if oc_block is None:
        oc_block = lanes if (ow >= 12 and not large_kernel) or spec.out_channels <= lanes else 2 * lanes
    if not conv_ops.oc_vectorizable(spec, oc_block):
        oc_block = lanes
    if not conv_ops.oc_vectorizable(spec, oc_block):
        tiles = max(1, min(4, -(-ow // lanes)))
        return "conv2d_spatial", tiles * lanes, lanes
    max_tile = max_ow_tile(lanes, oc_block)
    if ow <= max_tile:
        return "conv2d_oc_blocked", ow, oc_block
    best = min(range(max(2, max_tile // 2), max_tile + 1), key=lambda t: (-(-ow // t) * t - ow, -t))
    return "conv2d_oc_blocked", best, oc_block


def _dense_conv(layer: Layer, lanes: int, knobs: dict | None = None) -> Kernel:
    spec = conv_spec(layer)
    kind, ow_tile, oc_block = conv_tile(spec, lanes, (knobs or {}).get("oc_block"))
    flags = dict(act=layer.act, has_bias=layer.bias is not None, has_residual=layer.residual is not None)
    if kind == "conv2d_oc_blocked":
        inputs, out = conv_ops.conv2d_oc_blocked(spec, oc_block=oc_block, ow_tile=ow_tile, **flags)
        weight = conv_ops.pack_weight(layer.weight, oc_block)
    else:
        inputs, out = conv_ops.conv2d_spatial(spec, ow_tile=ow_tile, **flags)
        weight = layer.weight
    func = te.create_prim_func(inputs + [out]).with_attrs(
        {"fscnn.kernel": kind, "fscnn.ow_tile": ow_tile, "fscnn.oc_block": oc_block,
         "fscnn.out_width": spec.out_width, "fscnn.max_ow_tile": max_ow_tile(lanes, oc_block),
         "op_pattern": OPAQUE})
    constants = [weight] + ([layer.bias] if layer.bias is not None else [])
    key = (kind, spec, ow_tile, oc_block, tuple(sorted(flags.items())))
    return Kernel(func, constants, key, f"fscnn_{kind}")


def _dense_linear(layer: Layer, lanes: int) -> Kernel:
    batch, in_features = layer.in_shape
    out_features = layer.out_shape[1]
    out_block = 4 * lanes if out_features >= 4 * lanes else lanes
    flags = dict(act=layer.act, has_bias=layer.bias is not None, has_residual=layer.residual is not None)
    inputs, out = dense_ops.dense(batch, in_features, out_features, out_block=out_block, **flags)
    func = te.create_prim_func(inputs + [out]).with_attrs({"fscnn.kernel": "dense", "op_pattern": OPAQUE})
    constants = [dense_ops.pack_weight(layer.weight, out_block)] + (
        [layer.bias] if layer.bias is not None else [])
    key = ("dense", batch, in_features, out_features, out_block, tuple(sorted(flags.items())))
    return Kernel(func, constants, key, "fscnn_dense")


ALIGN_MIN_CHANNELS = 256  # aligned CSR layouts from this many input channels (RESULTS.md, aligned A/B)
ALIGN_MIN_LANES = 16  # ... and only where a vector is a whole 64-byte cache line (AVX-512)


def sparse_conv_align(spec: conv_ops.Conv2dSpec, block_rows: int, lanes: int) -> int:
    """``lanes`` (aligned loads, taps split by column shift) or 1.

    A misaligned 512-bit load always splits a cache line; aligned layouts measured 1.1-1.2x on
    VGG16 conv3_2..conv5_2 and ResNet-50's 3x3@14 on a Zen 5 core (CSR, 90%). They pay only with
    many input channels (long rows per shift): on conv1_2 and conv2_2 the extra partial rows cost
    more than the split loads. With AVX2 (a 256-bit load splits a line half as often) they lost
    everywhere on Zen 3 (0.79-0.95x), and BSR is bound by its FMAs, not its loads.
    """
    if (block_rows == 1 and lanes >= ALIGN_MIN_LANES and spec.kernel[1] > 1
            and spec.in_channels >= ALIGN_MIN_CHANNELS):
        return lanes
    return 1


def sparse_conv_layout(spec: conv_ops.Conv2dSpec, block_rows: int, lanes: int) -> sparse_conv_ops.SparseConvLayout:
    """The layout (tile, chunks, alignment) of the sparse conv for ``spec`` on ``lanes`` lanes."""
    align = sparse_conv_align(spec, block_rows, lanes)
    tile = sparse_conv_tile(spec, block_rows, lanes, align)
    return sparse_conv_ops.SparseConvLayout(spec, tile, block_rows, sparse_conv_chunks(spec, block_rows), align)


def sparse_conv_tile(spec: conv_ops.Conv2dSpec, block_rows: int, lanes: int, align: int = 1) -> int:
    """Register tile (outputs) of the sparse conv: ~14 vectors for CSR; for BSR, R rows of
    ``budget / R`` vectors each.

    CSR picks 7..14 vectors to waste the fewest outputs past the flat row count (an exact fit
    lets 1x1 layers read their input in place). BSR keeps ~24 accumulators with 32 vector
    registers (AVX-512) and ~12 with 16 (AVX2): 24 on AVX2 spilled, and BSR8 ran at 28-33 GF/s
    on a Zen 3 core against 44-51 GF/s with one vector per row (RESULTS.md, session 5).
    """
    if block_rows > 1:
        budget = 24 if lanes >= 16 else 12
        return max(1, budget // block_rows) * lanes
    flat = spec.out_height * sparse_conv_ops.SparseConvLayout(spec, lanes, align=align).ws
    best = min(range(7, 15), key=lambda tv: (-(-flat // (tv * lanes)) * tv * lanes, -tv))
    return best * lanes


CHUNK_CHANNELS = 32  # input channels per chunk (benchmarks/RESULTS.md, chunking A/B)


def sparse_conv_chunks(spec: conv_ops.Conv2dSpec, block_rows: int) -> int:
    """Input-channel chunks of a sparse conv (1 = no split).

    Measured on one core at 90% sparsity: splitting CSR 3x3 layers into chunks of 32 input
    channels keeps a tile's input windows of one chunk near L1 while every output channel sweeps
    them (1.07-1.33x). 1x1 layers have too few nonzeros per (row, chunk), and BSR is bound by its
    FMAs, not by loads (reloading 24 accumulators per chunk cost it 1.2-1.5x): neither is split.
    """
    if spec.kernel == (1, 1) or block_rows > 1:
        return 1
    return max(1, -(-spec.in_channels // CHUNK_CHANNELS))


def _sparse_conv(layer: Layer, block_rows: int, lanes: int, knobs: dict | None = None) -> Kernel:
    spec = conv_spec(layer)
    layout = sparse_conv_layout(spec, block_rows, lanes)
    if knobs:  # a tuned configuration (tuning.py): register tile, chunks, aligned or not
        layout = dataclasses.replace(layout, tile=int(knobs.get("tile_vectors", layout.tile // lanes)) * lanes,
                                     chunks=int(knobs.get("chunks", layout.chunks)),
                                     align=int(knobs.get("align", layout.align)))
    has_residual = layer.residual is not None
    func = sparse_conv_ops.sparse_conv2d(layout, layer.act, has_residual).with_attrs(
        {"fscnn.kernel": "sparse_conv2d", "fscnn.lanes": lanes, "op_pattern": OPAQUE})
    indptr, cols, values = sparse.chunked(layout.by_shift(layer.weight), layout.chunks, block_rows)
    bias = layer.bias if layer.bias is not None else np.zeros(spec.out_channels, "float32")
    constants = [indptr, layout.offsets(cols), values.reshape(-1), bias]
    key = ("sparse_conv2d", layout, layer.act, has_residual)
    return Kernel(func, constants, key, "fscnn_csr_conv2d" if block_rows == 1 else f"fscnn_bsr{block_rows}_conv2d")


def _sparse_linear(layer: Layer, lanes: int) -> Kernel:
    batch, in_features = layer.in_shape
    out_features = layer.out_shape[1]
    has_residual = layer.residual is not None
    func = sparse_dense_ops.sparse_dense(batch, in_features, out_features, lanes, layer.act,
                                         has_residual).with_attrs(
        {"fscnn.kernel": "sparse_dense", "op_pattern": OPAQUE, "tirx.is_scheduled": True})
    fmt = sparse.csr_from_dense(layer.weight)
    bias = layer.bias if layer.bias is not None else np.zeros(out_features, "float32")
    key = ("sparse_dense", batch, in_features, out_features, lanes, layer.act, has_residual)
    return Kernel(func, [fmt.indptr, fmt.cols, fmt.values, bias], key, "fscnn_csr_dense")


def block_rows_of(kind: str) -> int:
    """``"csr"`` -> 1, ``"bsr8"`` -> 8."""
    return 1 if kind == "csr" else int(kind[3:])


def _cuda_kernel(layer: Layer, kind: str) -> Kernel | None:
    """CUDA: one direct conv kernel for every kind (dense = BSR with all blocks), one linear.

    ``None`` (TVM's own conv, scheduled by the GPU default rules) for unequal strides.
    """
    from .schedules.cuda import conv2d as cuda_conv  # noqa: PLC0415 - CUDA builds only
    from .schedules.cuda import linear as cuda_linear  # noqa: PLC0415

    has_residual = layer.residual is not None
    attrs = {"op_pattern": OPAQUE, "tirx.is_scheduled": True}
    bias = layer.bias if layer.bias is not None else np.zeros(layer.out_shape[1], "float32")
    if layer.op == "linear":
        batch, in_features = layer.in_shape
        out_features = layer.out_shape[1]
        is_sparse = kind != "dense"
        func = cuda_linear.linear(batch, in_features, out_features, is_sparse, layer.act,
                                  has_residual).with_attrs({"fscnn.kernel": "cuda_linear", **attrs})
        if is_sparse:
            fmt = sparse.csr_from_dense(layer.weight)
            weights = [fmt.indptr, fmt.cols, fmt.values]
        else:
            weights = [np.ascontiguousarray(layer.weight, np.float32)]
        key = ("cuda_linear", batch, in_features, out_features, is_sparse, layer.act, has_residual)
        return Kernel(func, weights + [bias], key, f"fscnn_cuda_{'csr' if is_sparse else 'dense'}_linear")
    spec = conv_spec(layer)
    if spec.stride[0] != spec.stride[1]:
        return None
    rows = cuda_conv.dense_block_rows(spec) if kind == "dense" else block_rows_of(kind)
    layout = cuda_conv.layout(spec, rows)
    func = cuda_conv.conv2d(layout, layer.act, has_residual).with_attrs({"fscnn.kernel": "cuda_conv2d", **attrs})
    weights = cuda_conv.weight_arrays(layout, layer.weight, keep_zero_blocks=kind == "dense")
    key = ("cuda_conv2d", layout, layer.act, has_residual)
    name = "dense" if kind == "dense" else kind
    return Kernel(func, weights + [bias], key, f"fscnn_cuda_{name}_conv2d")


def build_kernel(layer: Layer, kind: str, target: tvm.target.Target, knobs: dict | None = None) -> Kernel | None:
    """The kernel of ``kind`` (a plan's kernel kind) for ``layer`` on ``target`` (``None``: the
    layer is left to TVM's own lowering). ``knobs`` overrides compute-level choices of the rules
    (a tuned configuration: dense conv ``oc_block``; sparse conv ``tile_vectors``, ``chunks``, ``align``)."""
    if target.kind.name == "cuda":
        return _cuda_kernel(layer, kind)
    if target.kind.name != "llvm":
        raise NotImplementedError(f"{layer.name}: kernels for target {target.kind.name!r} are not "
                                  "available")
    lanes = targets.vector_lanes(target)
    if kind == "dense":
        return _dense_conv(layer, lanes, knobs) if layer.op == "conv2d" else _dense_linear(layer, lanes)
    if kind == "csr" and layer.op == "linear":
        return _sparse_linear(layer, lanes)
    if (kind == "csr" or kind.startswith("bsr")) and layer.op == "conv2d":
        return _sparse_conv(layer, block_rows_of(kind), lanes, knobs)
    raise NotImplementedError(f"{layer.name}: kernel kind {kind!r} is not available for {layer.op}")
