"""NaN propagates through the ops TVM lowers itself, as it does in PyTorch.

TVM legalises ``relu`` and ``clip`` as ``max``/``min`` and ``max_pool2d`` as a ``max`` reduction;
LLVM lowers those to instructions that return the non-NaN operand, so an all-NaN input came out
finite. This Relax rewrite (run before legalisation) writes them as selects that let NaN through:

- ``relu(x)``  -> ``where(x < 0, 0, x)``
- ``clip(x, lo, hi)`` -> ``where(x < lo, lo, where(x > hi, hi, x))``
- ``max_pool2d`` (NCHW) is legalised by :func:`legalize_max_pool2d`: the same window max, with a
  reducer that keeps NaN (a window holding a NaN gives NaN) and costs what TVM's own pool costs

Our own kernels' fused activations are written the same way (``ops/activations.py``).
"""
from __future__ import annotations

import tvm
from tvm import relax, te, tirx

from .kinds import KERNEL_ATTR, Compute
from .ops.conv2d import deinterleaved_padded_input

OPAQUE = 8  # TVM OpPatternKind kOpaque: FuseOps leaves the pool alone, so its schedule rule finds it

RELU = tvm.ir.Op.get("relax.nn.relu")
CLIP = tvm.ir.Op.get("relax.clip")
MAX_POOL2D = tvm.ir.Op.get("relax.nn.max_pool2d")


def _float32(expr) -> bool:
    ty = expr.ty
    return isinstance(ty, relax.TensorType) and str(ty.dtype) == "float32"


@relax.expr_functor.mutator
class _NanSafe(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call, relax.Call) or not call.args or not _float32(call.args[0]):
            return call
        x = call.args[0]
        op = relax.op
        if call.op == RELU:
            zero = relax.const(0.0, "float32")
            return op.where(op.less(x, zero), zero, x)
        if call.op == CLIP:
            lo = relax.const(float(call.args[1].value), "float32")
            hi = relax.const(float(call.args[2].value), "float32")
            return op.where(op.less(x, lo), lo, op.where(op.greater(x, hi), hi, x))
        return call


def nan_safe(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with relu and clip of ``main`` rewritten to propagate NaN (max_pool2d: see
    :func:`legalize_max_pool2d`, passed to ``LegalizeOps``)."""
    mutator = _NanSafe(mod)
    gv = mod.get_global_var("main")
    mutator.builder_.update_func(gv, mutator.visit_expr(mod["main"]))
    return mutator.builder_.get()


_NAN_MAX = te.comm_reducer(
    lambda a, b: tirx.Select(tirx.isnan(a), a, tirx.Select(tirx.isnan(b), b, tirx.max(a, b))),
    lambda dtype: tirx.min_value(dtype), name="nan_max")


def max_pool2d(data: te.Tensor, kernel: tuple, stride: tuple, dilation: tuple, padding: tuple,
               out_hw: tuple) -> te.Tensor:
    """The NaN-keeping window max of ``data`` (NCHW float32; ``padding``: top, left). The padded
    input is stored de-interleaved by column phase (``x = X * sw + phase``): for a stride-``sw``
    pool, consecutive outputs then read consecutive addresses, so the schedule
    (``schedules/x86/pool.py``) vectorises along the output row."""
    (kh, kw), (sh, sw), (dh, dw), (top, left), (oh, ow) = kernel, stride, dilation, padding, out_hw
    padded = deinterleaved_padded_input(data, (oh - 1) * sh + (kh - 1) * dh + 1, sw,
                                        ow + ((kw - 1) * dw) // sw, top, left, tirx.min_value("float32"))
    ry, rx = te.reduce_axis((0, kh), name="ry"), te.reduce_axis((0, kw), name="rx")
    return te.compute((*data.shape[:2], oh, ow), lambda b, ch, i, j: _NAN_MAX(
        padded[b, ch, i * sh + ry * dh, (rx * dw) % sw, j + (rx * dw) // sw], axis=[ry, rx]),
        name="pool_max")


def legalize_max_pool2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """``relax.nn.max_pool2d`` as :func:`max_pool2d`, a TE window max that propagates NaN (NCHW,
    float32); anything else gets TVM's own legalisation."""
    from tvm.relax.transform.legalize_ops.nn import _nn_max_pool2d  # noqa: PLC0415 - TVM's default

    a = call.attrs
    x = call.args[0]
    if str(a.layout) != "NCHW" or str(a.out_layout) != "NCHW" or not _float32(x):
        return _nn_max_pool2d(bb, call)
    window = [tuple(int(v) for v in t) for t in (a.pool_size, a.strides, a.dilation)]
    padding = (int(a.padding[0]), int(a.padding[1]))
    out_hw = (int(call.ty.shape[2]), int(call.ty.shape[3]))
    return bb.call_te(lambda data: max_pool2d(data, *window, padding, out_hw), x, primfunc_name_hint="max_pool2d_nan",
                      primfunc_attrs={KERNEL_ATTR: Compute.MAX_POOL2D, "op_pattern": OPAQUE})
