"""CPU legalisations of the exp-based ops with a vectorisable exp (``ops/conv2d.fast_exp``).

TVM lowers ``exp`` to LLVM's ``llvm.exp``, and LLVM, with no vector math library, calls ``expf``
once per lane: a softmax, sigmoid or SiLU that is not fused into one of our conv epilogues ran
at scalar speed (YOLOv8n's DFL softmax over 134 K values: 0.62 ms). These legalisations compute
the same ops, float32 only, with the polynomial exp (~1 ulp); anything else keeps TVM's own.
"""
from __future__ import annotations

from tvm import relax, te, tirx, topi

from .ops.conv2d import _activation, fast_exp


def _tvm_default(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    return call.op.get_attr("FLegalize")(bb, call)


def _float32(call: relax.Call) -> bool:
    return getattr(call.ty, "dtype", None) == "float32"


def _sigmoid(x):
    one = tirx.const(1.0, "float32")
    return one / (one + fast_exp(-x))


def _elementwise(fn, name: str):
    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        if not _float32(call):
            return _tvm_default(bb, call)
        return bb.call_te(lambda x: te.compute(x.shape, lambda *i: fn(x(*i)), name=name), call.args[0],
                          primfunc_name_hint=name)
    return legalize


def _softmax(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """exp(x - max) / sum, along ``axis``."""
    if not _float32(call):
        return _tvm_default(bb, call)

    def compute(x):
        axis = int(call.attrs.axis) % len(x.shape)

        def reduced(index):  # the index of the keepdims reduction for element ``index``
            return [0 if d == axis else v for d, v in enumerate(index)]

        top = topi.max(x, axis=axis, keepdims=True)
        e = te.compute(x.shape, lambda *i: fast_exp(x(*i) - top(*reduced(i))), name="softmax_exp")
        total = topi.sum(e, axis=axis, keepdims=True)
        return te.compute(x.shape, lambda *i: e(*i) / total(*reduced(i)), name="softmax")

    return bb.call_te(compute, call.args[0], primfunc_name_hint="softmax")


LEGALIZATIONS = {
    "relax.exp": _elementwise(fast_exp, "exp"),
    "relax.sigmoid": _elementwise(_sigmoid, "sigmoid"),
    "relax.nn.silu": _elementwise(lambda x: _activation(x, "silu"), "silu"),
    "relax.nn.softmax": _softmax,
}
