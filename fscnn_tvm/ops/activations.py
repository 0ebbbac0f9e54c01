"""The activations a fused epilogue applies, as TIR expressions (TE kernels) and TVMScript text.

Every activation keeps NaN as PyTorch does: written as selects on "x < 0" / "x > 6" (false for
NaN, so NaN passes through); ``max(x, 0)`` would not (LLVM lowers it to an instruction that
returns the non-NaN operand). SiLU's exp is :func:`fast_exp`, arithmetic that vectorises.
"""
from __future__ import annotations

from tvm import tirx

ACTIVATIONS = ("none", "relu", "relu6", "silu", "hardswish")
# (An explicit isnan select also keeps NaN but cost resnet50@0.9 17.0 ms against 14.4 for these
# selects, the same as max.) The same activations as TVMScript expressions, for the kernels
# generated as script text (their T.sigmoid's exp is fast_exp too: fast_math.compile).
ACTIVATION_SCRIPT = {"none": "{v}", "relu": "T.Select({v} < T.float32(0), T.float32(0), {v})",
                     "relu6": "T.Select({v} < T.float32(0), T.float32(0), T.Select({v} > T.float32(6), "
                              "T.float32(6), {v}))",
                     "silu": "({v}) * T.sigmoid({v})",
                     "hardswish": "({v}) * T.Select({v} + T.float32(3) < T.float32(0), T.float32(0), "
                                  "T.Select({v} + T.float32(3) > T.float32(6), T.float32(6), {v} + T.float32(3)))"
                                  " / T.float32(6)"}


# exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two for accuracy),
# exp(r) a degree-7 polynomial (Cephes expf, ~1 ulp). LLVM has no vector exp without a vector
# math library, so tirx.exp becomes one expf call per lane: SiLU cost 6x a ReLU epilogue.
# Inputs are clamped to [EXP_LOW, EXP_HIGH]: the scale 2^n stays a float32 from 0 (n = -127) to
# inf (n = 128), so exp overflows to inf as it should and silu(-inf) is NaN, as in torch.
EXP_LOW, EXP_HIGH = -88.3762626647949, 88.72
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
            5.0000001201e-1)


def _type(x) -> str:
    """The TIR type of ``x`` as text (``float32``, or ``float32x16`` once vectorised)."""
    ty = getattr(x, "ty", None)
    return str(ty) if ty is not None and str(ty).startswith("float32") else "float32"


def _let(value, body, name: str):
    """``body(v)`` with ``v`` bound to ``value`` once (a TIR Let): an expression used several
    times is not copied into each use (a Winograd output transform fed to SiLU would be)."""
    var = tirx.Var(name, _type(value))
    return tirx.Let(var, value, body(var))


def fast_exp(x):
    """``exp(x)`` for float32 (scalar or vector) as vectorisable arithmetic (NaN stays NaN)."""
    f32 = _type(x)
    i32 = f32.replace("float", "int")

    def c(v):
        return tirx.const(v, f32)

    def from_clamped(x):
        def from_n(n):
            def from_r(r):
                p = c(EXP_POLY[0])
                for coef in EXP_POLY[1:]:
                    p = p * r + c(coef)
                scale = tirx.reinterpret(f32, tirx.shift_left(
                    n.astype(i32) + tirx.const(127, i32), tirx.const(23, i32)))
                return (p * r * r + r + c(1.0)) * scale
            return _let(x - n * c(0.693359375) + n * c(2.12194440e-4), from_r, "exp_r")
        return _let(tirx.floor(x * c(1.44269504088896341) + c(0.5)), from_n, "exp_n")

    return _let(x, lambda v: from_clamped(
        tirx.Select(v > c(EXP_HIGH), c(EXP_HIGH), tirx.Select(v < c(EXP_LOW), c(EXP_LOW), v))), "exp_x")


def activation(x, act: str):
    """``act(x)`` as a TIR expression (float32); ``act`` one of :data:`ACTIVATIONS`."""
    zero = tirx.const(0.0, "float32")
    if act == "relu6" and not isinstance(x, tirx.Var):
        return _let(x, lambda v: activation(v, "relu6"), "relu6_x")
    if act == "relu":
        return tirx.Select(x < zero, zero, x)
    if act == "relu6":
        six = tirx.const(6.0, "float32")
        return tirx.Select(x < zero, zero, tirx.Select(x > six, six, x))
    if act == "silu":
        one = tirx.const(1.0, "float32")
        return _let(x, lambda v: v * (one / (one + fast_exp(-v))), "silu_x")
    if act == "hardswish":  # x * relu6(x + 3) / 6, as the importers write it
        return _let(x, lambda v: v * activation(v + tirx.const(3.0, "float32"), "relu6")
                    / tirx.const(6.0, "float32"), "hswish_x")
    if act == "none":
        return x
    raise ValueError(f"conv2d: unknown activation {act!r}, expected one of {ACTIVATIONS}")
