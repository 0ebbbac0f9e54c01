"""Graph rewrites at import that turn layers TVM would lower generically into layers we plan.

- ``conv2d_transpose`` whose stride equals its kernel (no overlap: 2x2/2 upsampling heads, as in
  PP-OCR's detector), with no padding, dilation or groups, is a 1x1 conv to ``O*kh*kw`` channels
  followed by a depth-to-space shuffle::

      out[n, o, y*kh + a, x*kw + b] = sum_c x[n, c, y, x] * W[c, o, a, b]

  The 1x1 conv is then one of our layers (dense or sparse); TVM's own lowering dilates the input
  with zeros and runs a generic reduction over them (8.2 of the detector's 13 ms at 160x160).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .passes import static_shape

CONV2D_TRANSPOSE = tvm.ir.Op.get("relax.nn.conv2d_transpose")


def _as_shuffled_conv(call: relax.Call) -> relax.Expr | None:
    a = call.attrs
    data, weight = call.args
    if not isinstance(weight, tvm.ir.expr.Constant):
        return None
    shape = static_shape(data)
    w = weight.value.numpy()
    if shape is None or w.ndim != 4 or str(w.dtype) != "float32":
        return None
    kh, kw = w.shape[2:]
    plain = ((str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) == ("NCHW", "IOHW", "NCHW")
             and [int(s) for s in a.strides] == [kh, kw] and not any(int(p) for p in a.padding)
             and not any(int(p) for p in a.output_padding) and [int(d) for d in a.dilation] == [1, 1]
             and int(a.groups) == 1 and (a.out_dtype is None or str(a.out_dtype) in ("", "float32")))
    if not plain:
        return None
    n, c, h, width = shape
    o = w.shape[1]
    folded = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(o * kh * kw, c, 1, 1))
    y = relax.op.nn.conv2d(data, relax.const(folded))
    y = relax.op.reshape(y, (n, o, kh, kw, h, width))
    y = relax.op.permute_dims(y, [0, 1, 4, 2, 5, 3])
    return relax.op.reshape(y, (n, o, h * kh, width * kw))


@relax.expr_functor.mutator
class _Canonicalize(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if isinstance(call, relax.Call) and call.op == CONV2D_TRANSPOSE:
            rewritten = _as_shuffled_conv(call)
            if rewritten is not None:
                return rewritten
        return call


def canonicalize(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the rewrites above applied to ``main``."""
    mutator = _Canonicalize(mod)
    gv = mod.get_global_var("main")
    mutator.builder_.update_func(gv, mutator.visit_expr(mod["main"]))
    return relax.transform.CanonicalizeBindings()(mutator.builder_.get())
