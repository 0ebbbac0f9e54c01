"""From a planned layer to a kernel: the PrimFunc (compute from ``ops/``), its knobs, its constants.

The knobs (register tile, output-channel block, input-channel chunks) come from the target's rules
(``schedules/x86/rules.py``, ``schedules/cuda/rules.py``) or a tuned configuration; they shape the
compute and are stored on the PrimFunc as ``fscnn.*`` attributes, so the schedule rule in
``schedules/<target>/`` that picks the function up applies the matching schedule.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te

from . import kinds, sparse, targets
from .kinds import KERNEL_ATTR, Compute
from .layer import Layer, conv_spec
from .ops import act_sparse_conv2d as act_sparse_ops
from .ops import conv2d as conv_ops
from .ops import dense as dense_ops
from .ops import sparse_conv2d as sparse_conv_ops
from .ops import sparse_dense as sparse_dense_ops
from .ops import winograd as winograd_ops
from .schedules.x86 import rules as x86_rules

OPAQUE = 8  # TVM OpPatternKind kOpaque: FuseOps must not merge other ops into our kernels


@dataclass
class Kernel:
    func: tvm.tirx.PrimFunc
    constants: list[np.ndarray]  # passed after the data argument, before the residual
    key: tuple  # equal keys -> the same PrimFunc can serve both layers
    symbol: str
    # The (data, output) shapes the PrimFunc takes where they are a view of the layer's (the
    # pointwise conv sees its maps flattened); the residual takes the output's. None: the layer's.
    view: tuple | None = None
    # PrimFuncs ``func`` calls by GlobalVar (the activation-sparse conv's fallback kernel): they
    # go in the module beside it under these GlobalVars.
    subroutines: dict = dataclasses.field(default_factory=dict)

    def module(self, func: tvm.tirx.PrimFunc | None = None) -> tvm.IRModule:
        """An IRModule of ``func`` (default: this kernel's) as ``main``, with its subroutines."""
        return tvm.IRModule({"main": func if func is not None else self.func, **self.subroutines})

    def shapes(self, layer: Layer) -> tuple[tuple, tuple]:
        """The (data, output/residual) shapes a call of this kernel for ``layer`` passes."""
        return self.view or (layer.in_shape, layer.out_shape)


def _dense_conv(layer: Layer, target: tvm.target.Target, knobs: dict | None = None) -> Kernel:
    spec = conv_spec(layer)
    lanes = targets.vector_lanes(target)
    caches = targets.caches(target)
    kind, ow_tile, oc_block = x86_rules.conv_tile(spec, lanes, (knobs or {}).get("oc_block"), caches.l2)
    if (knobs or {}).get("pointwise_tile"):  # (oc_tile, columns) of the packed 1x1 GEMM
        kind, (oc_block, ow_tile) = Compute.CONV2D_POINTWISE_PACKED, knobs["pointwise_tile"]
    flags = dict(act=layer.act, has_bias=layer.bias is not None, has_residual=layer.residual is not None)
    view, prefetch_rows, row_loop, chunk, k_chunk = None, 0, False, 0, 0
    if kind in (Compute.CONV2D_POINTWISE, Compute.CONV2D_POINTWISE_PACKED):
        # ow_tile: pixels per register tile, oc_block: channels; the packed GEMM takes any 1x1
        compute = conv_ops.conv2d_pointwise if kind == Compute.CONV2D_POINTWISE else conv_ops.conv2d_pointwise_packed
        inputs, out = compute(spec, oc_tile=oc_block, columns=ow_tile, **flags)
        weight = conv_ops.pack_pointwise_weight(layer.weight, oc_block)
        n, oc, pixels = spec.batch, spec.out_channels, spec.out_height * spec.out_width
        data = (n, spec.in_channels, pixels) if conv_ops.is_pointwise(spec) else layer.in_shape
        view = (data, (n, oc, pixels))
        if kind == Compute.CONV2D_POINTWISE:
            k_chunk = x86_rules.pointwise_k_chunk(spec, ow_tile, lanes, caches.l1)
            chunk = 0 if k_chunk else x86_rules.pointwise_chunk(spec, ow_tile, oc_block, caches.l1, caches.l2,
                                                                str(target.attrs.get("mcpu", "")))
    elif kind == Compute.CONV2D_OC_BLOCKED:
        inputs, out = conv_ops.conv2d_oc_blocked(spec, oc_block=oc_block, ow_tile=ow_tile, **flags)
        weight = conv_ops.pack_weight(layer.weight, oc_block)
        prefetch_rows = x86_rules.weight_prefetch_rows(spec, lanes, ow_tile, oc_block)
    else:
        row_loop = x86_rules.depthwise_row_loop(spec, lanes)
        ow_tile = spec.out_width if row_loop else ow_tile
        inputs, out = conv_ops.conv2d_spatial(spec, ow_tile=ow_tile, deinterleave=not row_loop, **flags)
        weight = layer.weight
    func = te.create_prim_func(inputs + [out]).with_attrs(
        {KERNEL_ATTR: kind, "fscnn.ow_tile": ow_tile, "fscnn.oc_block": oc_block,
         "fscnn.out_width": spec.out_width, "fscnn.max_ow_tile": x86_rules.max_ow_tile(lanes, oc_block),
         "fscnn.prefetch_rows": prefetch_rows, "fscnn.row_loop": int(row_loop), "fscnn.pixel_chunk": chunk,
         "fscnn.k_chunk": k_chunk, "op_pattern": OPAQUE})
    constants = [weight] + ([layer.bias] if layer.bias is not None else [])
    key = (kind, spec, ow_tile, oc_block, tuple(sorted(flags.items()))) + (("row_loop",) if row_loop else ()) \
        + ((("pixel_chunk", chunk),) if chunk else ()) + ((("k_chunk", k_chunk),) if k_chunk else ())
    return Kernel(func, constants, key, f"fscnn_{kind}", view)


def _winograd_conv(layer: Layer, tile: int, lanes: int, knobs: dict | None = None) -> Kernel:
    spec = conv_spec(layer)
    knobs = knobs or {}
    layout = x86_rules.winograd_layout(spec, tile, lanes, knobs.get("p_tile"), knobs.get("block_rows"))
    flags = dict(act=layer.act, has_bias=layer.bias is not None, has_residual=layer.residual is not None)
    inputs, out = winograd_ops.winograd_conv2d(layout, **flags)
    func = te.create_prim_func(inputs + [out]).with_attrs(
        {KERNEL_ATTR: Compute.CONV2D_WINOGRAD, "fscnn.tile": tile, "fscnn.oc_block": layout.oc_block,
         "fscnn.p_tile": layout.p_tile, "fscnn.block_rows": layout.block_rows,
         "fscnn.oc_blocks": layout.oc_blocks, "fscnn.tile_blocks": layout.block_tiles // layout.p_tile,
         "fscnn.in_channels": spec.in_channels, "op_pattern": OPAQUE})
    constants = [winograd_ops.pack_weight(layer.weight, layout)] + (
        [layer.bias] if layer.bias is not None else [])
    key = (Compute.CONV2D_WINOGRAD, layout, tuple(sorted(flags.items())))
    return Kernel(func, constants, key, f"fscnn_winograd{tile}_conv2d")


def _dense_linear(layer: Layer, lanes: int) -> Kernel:
    batch, in_features = layer.in_shape
    out_features = layer.out_shape[1]
    out_block = x86_rules.linear_out_block(out_features, lanes)
    flags = dict(act=layer.act, has_bias=layer.bias is not None, has_residual=layer.residual is not None)
    inputs, out = dense_ops.dense(batch, in_features, out_features, out_block=out_block, **flags)
    func = te.create_prim_func(inputs + [out]).with_attrs({KERNEL_ATTR: Compute.DENSE, "op_pattern": OPAQUE})
    constants = [dense_ops.pack_weight(layer.weight, out_block)] + (
        [layer.bias] if layer.bias is not None else [])
    key = (Compute.DENSE, batch, in_features, out_features, out_block, tuple(sorted(flags.items())))
    return Kernel(func, constants, key, "fscnn_dense")


def _sparse_conv(layer: Layer, block_rows: int, lanes: int, knobs: dict | None = None) -> Kernel:
    spec = conv_spec(layer)
    layout = x86_rules.sparse_conv_layout(spec, block_rows, lanes)
    if knobs:  # a tuned configuration (fscnn_tvm/tuning/): register tile, chunks, aligned or not
        layout = dataclasses.replace(layout, tile=int(knobs.get("tile_vectors", layout.tile // lanes)) * lanes,
                                     chunks=int(knobs.get("chunks", layout.chunks)),
                                     align=int(knobs.get("align", layout.align)))
    has_residual = layer.residual is not None
    func = sparse_conv_ops.sparse_conv2d(layout, layer.act, has_residual).with_attrs(
        {KERNEL_ATTR: Compute.SPARSE_CONV2D, "fscnn.lanes": lanes, "op_pattern": OPAQUE})
    indptr, cols, values = sparse.chunked(layout.by_shift(layer.weight), layout.chunks, block_rows)
    bias = layer.bias_or_zeros()
    constants = [indptr, layout.offsets(cols), values.reshape(-1), bias]
    key = (Compute.SPARSE_CONV2D, layout, layer.act, has_residual)
    return Kernel(func, constants, key, "fscnn_csr_conv2d" if block_rows == 1 else f"fscnn_bsr{block_rows}_conv2d")


def _sparse_linear(layer: Layer, lanes: int) -> Kernel:
    batch, in_features = layer.in_shape
    out_features = layer.out_shape[1]
    has_residual = layer.residual is not None
    func = sparse_dense_ops.sparse_dense(batch, in_features, out_features, lanes, layer.act,
                                         has_residual).with_attrs(
        {KERNEL_ATTR: Compute.SPARSE_DENSE, "op_pattern": OPAQUE, "tirx.is_scheduled": True})
    fmt = sparse.csr_from_dense(layer.weight)
    cols = fmt.cols.astype(sparse_dense_ops.index_dtype(in_features))
    bias = layer.bias_or_zeros()
    key = (Compute.SPARSE_DENSE, batch, in_features, out_features, lanes, layer.act, has_residual)
    return Kernel(func, [fmt.indptr, cols, fmt.values, bias], key, "fscnn_csr_dense")


_fallback_names = itertools.count()


def _act_sparse_conv(layer: Layer, target: tvm.target.Target, knobs: dict | None = None) -> Kernel:
    """The activation-sparse conv; with knobs ``fallback`` (a kind) and ``fallback_zeros``, the
    input's nonzeros are counted first and an input with fewer zeros than that runs the
    ``fallback`` kernel instead (its constants passed too: the weights are held twice)."""
    spec = conv_spec(layer)
    layout = x86_rules.act_sparse_layout(spec, targets.vector_lanes(target))
    has_residual = layer.residual is not None
    fallback, subroutines, extra, fallback_key = None, {}, [], None
    kind = (knobs or {}).get("fallback")
    if kind is not None:
        from .schedules import schedule_func  # noqa: PLC0415 - heavy
        from .tvm_compat import as_subroutine  # noqa: PLC0415

        other = build_kernel(layer, kind, target)
        in_shape, out_shape = other.shapes(layer)
        extra = list(other.constants)
        shapes = [in_shape] + [a.shape for a in extra] + [out_shape] * (1 + has_residual)
        name = f"{other.symbol}_fallback{next(_fallback_names)}"
        func, workspaces = as_subroutine(schedule_func(other.func, target), shapes, name)
        gv = tvm.ir.GlobalVar(name)
        subroutines = {gv: func}
        fallback = act_sparse_ops.Fallback(gv, tuple((a.shape, str(a.dtype)) for a in extra),
                                           tuple(workspaces), float(knobs["fallback_zeros"]))
        # Layers sharing this kernel share the subroutine: its key (a bias or not changes its
        # arguments) and the shapes bound into it (a sparse kernel's nonzero count) must agree.
        fallback_key = (other.key, fallback.constants, fallback.min_zeros)
    func = act_sparse_ops.act_sparse_conv2d(layout, layer.act, has_residual, fallback).with_attrs(
        {KERNEL_ATTR: Compute.ACT_SPARSE_CONV2D, "op_pattern": OPAQUE, "tirx.is_scheduled": True})
    bias = layer.bias_or_zeros()
    key = (Compute.ACT_SPARSE_CONV2D, layout, layer.act, has_residual, fallback_key)
    return Kernel(func, [act_sparse_ops.pack_weight(layer.weight, layout), bias] + extra, key,
                  "fscnn_actsparse_conv2d", subroutines=subroutines)


def _act_sparse_linear(layer: Layer, lanes: int) -> Kernel:
    batch, in_features = layer.in_shape
    out_features = layer.out_shape[1]
    has_residual = layer.residual is not None
    func = act_sparse_ops.act_sparse_dense(batch, in_features, out_features, lanes, layer.act,
                                           has_residual).with_attrs(
        {KERNEL_ATTR: Compute.ACT_SPARSE_DENSE, "op_pattern": OPAQUE, "tirx.is_scheduled": True})
    bias = layer.bias_or_zeros()
    key = (Compute.ACT_SPARSE_DENSE, batch, in_features, out_features, lanes, layer.act, has_residual)
    weight = np.ascontiguousarray(layer.weight.T, dtype=np.float32)
    return Kernel(func, [weight, bias], key, "fscnn_actsparse_dense")


def _cuda_kernel(layer: Layer, kind: str) -> Kernel | None:
    """CUDA: one direct conv kernel for every kind (dense = BSR with all blocks), one linear.

    ``None`` (TVM's own conv, scheduled by the GPU default rules) for unequal strides.
    """
    from .ops import cuda_conv2d, cuda_linear  # noqa: PLC0415 - CUDA builds only
    from .schedules.cuda import rules as cuda_rules  # noqa: PLC0415

    has_residual = layer.residual is not None
    attrs = {"op_pattern": OPAQUE, "tirx.is_scheduled": True}
    bias = layer.bias_or_zeros()
    if layer.op == "linear":
        batch, in_features = layer.in_shape
        out_features = layer.out_shape[1]
        is_sparse = kind != kinds.DENSE
        func = cuda_linear.linear(batch, in_features, out_features, is_sparse, layer.act,
                                  has_residual).with_attrs({KERNEL_ATTR: Compute.CUDA_LINEAR, **attrs})
        if is_sparse:
            fmt = sparse.csr_from_dense(layer.weight)
            weights = [fmt.indptr, fmt.cols, fmt.values]
        else:
            weights = [np.ascontiguousarray(layer.weight, np.float32)]
        key = (Compute.CUDA_LINEAR, batch, in_features, out_features, is_sparse, layer.act, has_residual)
        return Kernel(func, weights + [bias], key, f"fscnn_cuda_{'csr' if is_sparse else 'dense'}_linear")
    spec = conv_spec(layer)
    if spec.stride[0] != spec.stride[1]:
        return None
    if kinds.Kind.parse(kind).family in ("winograd", "actsparse"):
        raise NotImplementedError(f"{layer.name}: {kind} kernels are x86 only")
    rows = cuda_rules.dense_block_rows(spec) if kind == kinds.DENSE else kinds.block_rows(kind)
    layout = cuda_rules.conv_layout(spec, rows)
    func = cuda_conv2d.conv2d(layout, layer.act, has_residual).with_attrs({KERNEL_ATTR: Compute.CUDA_CONV2D, **attrs})
    weights = cuda_conv2d.weight_arrays(layout, layer.weight, keep_zero_blocks=kind == kinds.DENSE)
    key = (Compute.CUDA_CONV2D, layout, layer.act, has_residual)
    name = "dense" if kind == "dense" else kind
    return Kernel(func, weights + [bias], key, f"fscnn_cuda_{name}_conv2d")


def build_kernel(layer: Layer, kind: str, target: tvm.target.Target, knobs: dict | None = None) -> Kernel | None:
    """The kernel of ``kind`` (a plan's kernel kind) for ``layer`` on ``target`` (``None``: the
    layer is left to TVM's own lowering). ``knobs`` overrides compute-level choices of the rules
    (a tuned configuration: dense conv ``oc_block``, or ``pointwise_tile`` (oc_tile, columns) for
    a 1x1 conv on the packed GEMM; Winograd ``p_tile``, ``block_rows``; sparse conv
    ``tile_vectors``, ``chunks``, ``align``; activation-sparse conv ``fallback``, ``fallback_zeros``)."""
    if target.kind.name == "cuda":
        return _cuda_kernel(layer, kind)
    if target.kind.name != "llvm":
        raise NotImplementedError(f"{layer.name}: kernels for target {target.kind.name!r} are not "
                                  "available")
    lanes = targets.vector_lanes(target)
    parsed = kinds.Kind.parse(kind)
    if parsed.family == "dense":
        return _dense_conv(layer, target, knobs) if layer.op == "conv2d" else _dense_linear(layer, lanes)
    if parsed.family == "winograd" and layer.op == "conv2d":
        return _winograd_conv(layer, parsed.rows, lanes, knobs)
    if parsed.family == "actsparse":
        return _act_sparse_conv(layer, target, knobs) if layer.op == "conv2d" else _act_sparse_linear(layer, lanes)
    if parsed.family == "csr" and layer.op == "linear":
        return _sparse_linear(layer, lanes)
    if parsed.sparse and layer.op == "conv2d":
        return _sparse_conv(layer, parsed.rows, lanes, knobs)
    raise NotImplementedError(f"{layer.name}: kernel kind {kind!r} is not available for {layer.op}")
