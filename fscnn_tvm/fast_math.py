"""A vectorisable float32 exp for every kernel fscnn-tvm builds for a CPU.

TVM lowers ``tirx.exp`` to LLVM's ``llvm.exp`` and LLVM, with no vector math library, calls
``expf`` once per lane: a SiLU, sigmoid or softmax ran at scalar speed (a SiLU epilogue cost 6x a
ReLU one; YOLOv8n's DFL softmax 0.62 ms). Our own epilogues call ``ops/activations.fast_exp``
directly; for everything else (the TVMScript kernels' ``T.sigmoid``, the ops TVM legalises
itself) :func:`compile` registers ``fast_exp`` as the LLVM lowering of float32 ``exp`` for the
duration of one ``tvm.compile``. Outside it (another user of TVM in the same process) TVM's
own lowering applies unchanged.
"""
from __future__ import annotations

import contextlib
import threading

import tvm
from tvm import tirx

from . import targets
from .ops.activations import fast_exp

_TVM_EXP = tvm.ir.Op.get("tirx.exp").get_attr("llvm.FLowerIntrinsic")
_state = threading.local()  # lowering runs in the thread that called tvm.compile


def _lower_exp(call):
    x = call.args[0]
    if getattr(_state, "active", False) and str(getattr(x, "ty", "")).startswith("float32"):
        return fast_exp(x)
    return _TVM_EXP(call)


tirx.op.register_intrin_lowering("tirx.exp", "llvm", f=_lower_exp, level=100)


@contextlib.contextmanager
def vector_exp():
    """Float32 ``exp`` lowers to :func:`fast_exp` (~1 ulp) inside this block, in this thread."""
    before = getattr(_state, "active", False)
    _state.active = True
    try:
        yield
    finally:
        _state.active = before


def compile(mod, target):  # noqa: A001 - tvm.compile with the vector exp
    """``tvm.compile(mod, target)`` with float32 ``exp`` lowered to :func:`fast_exp`, for the
    LLVM flags of ``targets.codegen_target``."""
    with vector_exp():
        return tvm.compile(mod, targets.codegen_target(targets.parse(target), mod))
