"""NaN propagates through the ops TVM lowers itself, as it does in PyTorch.

TVM legalises ``relu`` and ``clip`` as ``max``/``min`` and ``max_pool2d`` as a ``max`` reduction;
LLVM lowers those to instructions that return the non-NaN operand, so an all-NaN input came out
finite. This Relax rewrite (run before legalisation) writes them as selects that let NaN through:

- ``relu(x)``  -> ``where(x < 0, 0, x)``
- ``clip(x, lo, hi)`` -> ``where(x < lo, lo, where(x > hi, hi, x))``
- ``max_pool2d(x)`` -> ``where(max_pool2d(isnan(x)) > 0, NaN, max_pool2d(x))`` (a window holding a
  NaN gives NaN)

Our own kernels' fused activations are written the same way (``ops/conv2d.ACTIVATION_SCRIPT``).
"""
from __future__ import annotations

import tvm
from tvm import relax

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
        if call.op == MAX_POOL2D:
            a = call.attrs
            args = dict(pool_size=a.pool_size, strides=a.strides, padding=a.padding, dilation=a.dilation,
                        ceil_mode=bool(a.ceil_mode), count_include_pad=bool(a.count_include_pad),
                        layout=str(a.layout), out_layout=str(a.out_layout))
            nans = op.nn.max_pool2d(op.astype(op.isnan(x), "float32"), **args)
            return op.where(op.greater(nans, relax.const(0.0, "float32")), relax.const(float("nan"), "float32"), call)
        return call


def nan_safe(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with relu, clip and max_pool2d of ``main`` rewritten to propagate NaN."""
    mutator = _NanSafe(mod)
    gv = mod.get_global_var("main")
    mutator.builder_.update_func(gv, mutator.visit_expr(mod["main"]))
    return mutator.builder_.get()
