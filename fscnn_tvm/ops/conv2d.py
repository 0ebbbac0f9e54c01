"""Dense conv2d that fscnn-tvm owns: NCHW activations, output-channel-blocked weights, fused epilogue.

Three computes, one per register tile (schedules in ``schedules/x86/conv2d.py``; the rule that
picks one is ``schedules/x86/rules.conv_tile``):

- ``conv2d_oc_blocked``: ``ow_tile`` output columns x ``oc_block`` output channels in vector
  registers; every reduction step broadcasts one input value and multiplies it with a
  contiguous vector of ``oc_block`` weights. Any kernel, stride, padding, dilation.
- ``conv2d_pointwise``: a 1x1 stride-1 conv as a GEMM over the flattened map, ``oc_tile``
  channels x whole vectors of consecutive pixels, stored without a transpose.
- ``conv2d_pointwise_packed``: any ungrouped 1x1 conv (strided, padded, maps that are not whole
  vectors) as the same GEMM over panels of ``columns`` output pixels gathered from the input.
- ``conv2d_spatial``: depthwise and other grouped convs, one channel's output row in vectors.

Activations stay in plain NCHW, so no layout conversion is ever inserted between layers.

Shapes (``Ng`` = groups, ``ICg = IC / groups``, ``OCB = ceil(OC / oc_block)``):

- ``data``     ``[N, IC, H, W]`` float32, NCHW.
- ``weight``   ``[OCB, ICg, KH, KW, oc_block]``, packed by :func:`pack_weight`; output channels past
  ``OC`` are zero.
- ``bias``     ``[OC]`` (optional).
- ``residual`` ``[N, OC, OH, OW]`` (optional), added after the bias.
- output       ``[N, OC, OH, OW]`` = act(conv + bias + residual).

Padding is materialised in a ``pad`` stage whose right edge is widened so the convolution can be
computed over ``OWp`` = ``OW`` rounded up to ``ow_tile`` columns (junk columns are never stored).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from .activations import activation


@dataclass(frozen=True)
class Conv2dSpec:
    """Static description of one conv2d layer (everything the kernel is specialised on)."""

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def out_height(self) -> int:
        kh = (self.kernel[0] - 1) * self.dilation[0] + 1
        return (self.height + self.padding[0] + self.padding[2] - kh) // self.stride[0] + 1

    @property
    def out_width(self) -> int:
        kw = (self.kernel[1] - 1) * self.dilation[1] + 1
        return (self.width + self.padding[1] + self.padding[3] - kw) // self.stride[1] + 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    def validate(self) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"conv2d: channels {self.in_channels}->{self.out_channels} are not divisible "
                f"by groups={self.groups}")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(
                f"conv2d: input {self.height}x{self.width} is smaller than kernel {self.kernel} "
                f"with padding {self.padding} and dilation {self.dilation}")


def oc_vectorizable(spec: Conv2dSpec, oc_block: int) -> bool:
    """True when every block of ``oc_block`` output channels reads from a single group."""
    return spec.groups == 1 or (spec.out_channels // spec.groups) % oc_block == 0


def pack_weight(weight: np.ndarray, oc_block: int) -> np.ndarray:
    """OIHW ``[OC, ICg, KH, KW]`` -> ``[OCB, ICg, KH, KW, oc_block]``, zero-padded past OC."""
    oc, icg, kh, kw = weight.shape
    ocb = -(-oc // oc_block)
    padded = np.zeros((ocb * oc_block, icg, kh, kw), dtype="float32")
    padded[:oc] = weight
    return np.ascontiguousarray(padded.reshape(ocb, oc_block, icg, kh, kw).transpose(0, 2, 3, 4, 1))


def is_pointwise(spec: Conv2dSpec) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped conv: a GEMM ``[OC, IC] x [IC, H*W]`` per image."""
    return (spec.kernel == (1, 1) and spec.stride == (1, 1) and not any(spec.padding)
            and spec.groups == 1)


def is_1x1_gemm(spec: Conv2dSpec) -> bool:
    """A 1x1 ungrouped conv of any stride and padding: a GEMM over its gathered output pixels."""
    return spec.kernel == (1, 1) and spec.groups == 1


def pack_pointwise_weight(weight: np.ndarray, oc_tile: int) -> np.ndarray:
    """OIHW ``[OC, IC, 1, 1]`` -> ``[OCB, IC, oc_tile]``, zero-padded past OC."""
    return np.ascontiguousarray(pack_weight(weight, oc_tile)[:, :, 0, 0, :])


def epilogue(acc_shape_out, read_acc, bias, residual, act: str, name: str = "out"):
    """``out[idx] = act(read_acc(idx) + bias[channel] + residual[idx])``; channel is ``idx[1]``."""

    def body(*idx):
        v = read_acc(*idx)
        if bias is not None:
            v = v + bias[idx[1]]
        if residual is not None:
            v = v + residual[idx]
        return activation(v, act)

    return te.compute(acc_shape_out, body, name=name)


def padded_input(data, spec: Conv2dSpec, width_needed: int):
    """Zero-padded input, ``[N, IC, Hp, width_needed]``; reads past the right pad are zeros too."""
    n, c, h, w = spec.batch, spec.in_channels, spec.height, spec.width
    top, left, bottom, _ = spec.padding
    hp = h + top + bottom
    if top == left == bottom == 0 and width_needed == w:
        return data

    def body(b, ch, y, x):
        inside = tirx.all(y >= top, y < top + h, x >= left, x < left + w)
        return tirx.if_then_else(inside, data[b, ch, y - top, x - left], tirx.const(0.0, "float32"))

    return te.compute((n, c, hp, width_needed), body, name="pad")


def deinterleaved_padded_input(data, rows: int, phases: int, columns: int, top: int, left: int, fill):
    """``data`` ``[N, C, H, W]`` zero- (or ``fill``-) padded, its columns de-interleaved by phase:
    ``[N, C, rows, phases, columns]`` holds padded column ``x = X * phases + phase``. A stride-
    ``phases`` window sweep then reads consecutive addresses for consecutive outputs (a strided
    vector load would be a gather). Used by Winograd (phases = the output tile) and max-pool."""
    h, w = int(data.shape[2]), int(data.shape[3])

    def body(b, ch, y, ph, xt):
        x = xt * phases + ph
        inside = tirx.all(y >= top, y < top + h, x >= left, x < left + w)
        return tirx.if_then_else(inside, data[b, ch, y - top, x - left], fill)

    return te.compute((*data.shape[:2], rows, phases, columns), body, name="pad")


def _conv_tensors(spec: Conv2dSpec, ow_tile: int, weight_shape: tuple, has_bias: bool,
                  has_residual: bool):
    """Placeholders, the padded input and the reduce axes both conv layouts share."""
    spec.validate()
    kh, kw = spec.kernel
    owp = -(-spec.out_width // ow_tile) * ow_tile
    width_needed = max(spec.width + spec.padding[1] + spec.padding[3],
                       (owp - 1) * spec.stride[1] + (kw - 1) * spec.dilation[1] + 1)
    data = te.placeholder((spec.batch, spec.in_channels, spec.height, spec.width), "float32", name="data")
    weight = te.placeholder(weight_shape, "float32", name="weight")
    bias = te.placeholder((spec.out_channels,), "float32", name="bias") if has_bias else None
    residual = te.placeholder(spec.out_shape, "float32", name="residual") if has_residual else None
    inputs = [data, weight] + ([bias] if has_bias else []) + ([residual] if has_residual else [])
    axes = (te.reduce_axis((0, spec.in_channels // spec.groups), name="rc"),
            te.reduce_axis((0, kh), name="ry"), te.reduce_axis((0, kw), name="rx"))
    return inputs, bias, residual, padded_input(data, spec, width_needed), axes, owp


def conv2d_oc_blocked(spec: Conv2dSpec, *, oc_block: int, ow_tile: int, act: str = "none",
                      has_bias: bool = False, has_residual: bool = False):
    """TE tensors of the output-channel-vectorised conv (``oc_vectorizable(spec, oc_block)``).

    Returns ``(inputs, output)`` where inputs are the placeholders in call order:
    ``data, weight[, bias][, residual]``.
    """
    if not oc_vectorizable(spec, oc_block):
        raise ValueError(f"conv2d: groups={spec.groups} with {spec.out_channels} output channels "
                         f"cannot use output-channel blocks of {oc_block}")
    icg, ocg = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    ocb = -(-spec.out_channels // oc_block)
    inputs, bias, residual, xp, (rc, ry, rx), owp = _conv_tensors(
        spec, ow_tile, (ocb, icg, *spec.kernel, oc_block), has_bias, has_residual)
    weight = inputs[1]

    def conv(b, cb, y, x, v):
        group_base = 0 if spec.groups == 1 else (cb * oc_block // ocg) * icg
        return te.sum(xp[b, group_base + rc, y * sh + ry * dh, x * sw + rx * dw]
                      * weight[cb, rc, ry, rx, v], axis=[rc, ry, rx])

    acc = te.compute((spec.batch, ocb, spec.out_height, owp, oc_block), conv, name="conv")
    out = epilogue(spec.out_shape, lambda b, c, y, x: acc[b, c // oc_block, y, x, c % oc_block],
                   bias, residual, act)
    return inputs, out


def conv2d_spatial(spec: Conv2dSpec, *, ow_tile: int, act: str = "none", has_bias: bool = False,
                   has_residual: bool = False, deinterleave: bool = True):
    """TE tensors of the width-vectorised conv, for any groups (depthwise included).

    Weight is plain OIHW ``[OC, ICg, KH, KW]``. The output is computed over ``OWp`` columns and
    cropped by the epilogue. Inputs in call order: ``data, weight[, bias][, residual]``. A
    strided conv reads a column-de-interleaved padded copy unless ``deinterleave`` is false (the
    row-loop schedule, whose strided reads LLVM's loop vectoriser turns into shuffles).
    """
    icg, ocg = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    inputs, bias, residual, xp, (rc, ry, rx), owp = _conv_tensors(
        spec, ow_tile, (spec.out_channels, icg, *spec.kernel), has_bias, has_residual)
    weight = inputs[1]
    if sw == 1 or not deinterleave:
        def tap(b, ch, y, x, rx):
            return xp[b, ch, y, x * sw + rx * dw]
    else:  # padded column x * sw + rx * dw is column x + rx * dw // sw of phase rx * dw % sw
        hp, wp = int(xp.shape[2]), int(xp.shape[3])
        xp = deinterleaved_padded_input(inputs[0], hp, sw, -(-wp // sw), spec.padding[0],
                                        spec.padding[1], tirx.const(0.0, "float32"))

        def tap(b, ch, y, x, rx):
            return xp[b, ch, y, rx * dw % sw, x + rx * dw // sw]
    acc = te.compute(
        (spec.batch, spec.out_channels, spec.out_height, owp),
        lambda b, c, y, x: te.sum(
            tap(b, (c // ocg) * icg + rc, y * sh + ry * dh, x, rx) * weight[c, rc, ry, rx],
            axis=[rc, ry, rx]),
        name="conv")
    out = epilogue(spec.out_shape, lambda b, c, y, x: acc[b, c, y, x], bias, residual, act)
    return inputs, out


def _pointwise_placeholders(spec: Conv2dSpec, data, oc_tile: int, has_bias: bool, has_residual: bool):
    """``(inputs, weight, bias, residual)`` of both pointwise GEMMs: inputs in call order
    ``data, weight[, bias][, residual]``; ``weight`` ``[OCB, IC, oc_tile]``, residual flattened
    ``[N, OC, OH*OW]``; ``bias``/``residual`` None where absent."""
    n, oc = spec.batch, spec.out_channels
    weight = te.placeholder((-(-oc // oc_tile), spec.in_channels, oc_tile), "float32", name="weight")
    bias = te.placeholder((oc,), "float32", name="bias") if has_bias else None
    residual = te.placeholder((n, oc, spec.out_height * spec.out_width), "float32",
                              name="residual") if has_residual else None
    inputs = [data, weight] + ([bias] if has_bias else []) + ([residual] if has_residual else [])
    return inputs, weight, bias, residual


def conv2d_pointwise(spec: Conv2dSpec, *, oc_tile: int, columns: int, act: str = "none",
                     has_bias: bool = False, has_residual: bool = False):
    """TE tensors of a 1x1 conv (``is_pointwise(spec)``) as a GEMM over the flattened map.

    The kernel sees its activations flattened (the caller reshapes, a view): ``data``
    ``[N, IC, H*W]``, ``residual`` and output ``[N, OC, H*W]``; ``weight`` ``[OCB, IC, oc_tile]``
    (:func:`pack_pointwise_weight`). A register tile is ``oc_tile`` output channels x ``columns``
    consecutive pixels (whole vectors; ``columns`` divides ``H*W``): per input channel one vector
    load per ``lanes`` pixels and one broadcast weight per output channel, and the tile is stored
    as it sits in the registers, with no transpose (the ``oc_blocked`` tile keeps channels in the
    vector lanes and must transpose into NCHW, which dominates when the reduction is short).
    """
    if not is_pointwise(spec):
        raise ValueError(f"conv2d: {spec} is not a 1x1 stride-1 unpadded ungrouped conv")
    n, ic, oc, hw = spec.batch, spec.in_channels, spec.out_channels, spec.height * spec.width
    if hw % columns:
        raise ValueError(f"conv2d: {columns} columns per tile do not divide the {hw} pixels")
    ocb = -(-oc // oc_tile)
    data = te.placeholder((n, ic, hw), "float32", name="data")
    inputs, weight, bias, residual = _pointwise_placeholders(spec, data, oc_tile, has_bias, has_residual)
    rc = te.reduce_axis((0, ic), name="rc")
    acc = te.compute((n, ocb, oc_tile, hw),
                     lambda b, cb, o, p: te.sum(weight[cb, rc, o] * data[b, rc, p], axis=rc), name="conv")
    out = epilogue((n, oc, hw), lambda b, c, p: acc[b, c // oc_tile, c % oc_tile, p], bias, residual, act)
    return inputs, out


def conv2d_pointwise_packed(spec: Conv2dSpec, *, oc_tile: int, columns: int, act: str = "none",
                            has_bias: bool = False, has_residual: bool = False):
    """TE tensors of a 1x1 ungrouped conv (``is_1x1_gemm(spec)``) as a GEMM over packed panels.

    A ``pad`` stage gathers the input pixel under each output pixel into panels ``[N, PB, IC,
    columns]`` (``PB`` = output pixels over ``columns``, rounded up; pixels past the map and in
    the zero padding are zeros), so a stride-2 downsample or a 14x14 map (196 pixels, not whole
    vectors) runs the register tile of :func:`conv2d_pointwise` on contiguous rows. ``data`` is
    ``[N, IC, H*W]`` (a view) where the conv is :func:`is_pointwise`, else ``[N, IC, H, W]``;
    ``residual`` and the output are ``[N, OC, OH*OW]`` (views); ``weight`` ``[OCB, IC, oc_tile]``.
    """
    if not is_1x1_gemm(spec):
        raise ValueError(f"conv2d: {spec} is not a 1x1 ungrouped conv")
    n, ic, oc = spec.batch, spec.in_channels, spec.out_channels
    ow, hw = spec.out_width, spec.out_height * spec.out_width
    panels, ocb = -(-hw // columns), -(-oc // oc_tile)
    zero = tirx.const(0.0, "float32")
    if is_pointwise(spec):  # consecutive output pixels are consecutive input pixels: vector copies
        data = te.placeholder((n, ic, hw), "float32", name="data")

        def gather(b, q, c, i):
            p = q * columns + i
            return tirx.if_then_else(p < hw, data[b, c, p], zero)
    else:
        data = te.placeholder((n, ic, spec.height, spec.width), "float32", name="data")
        (sh, sw), (top, left) = spec.stride, spec.padding[:2]

        def gather(b, q, c, i):
            p = q * columns + i
            y, x = p // ow * sh - top, p % ow * sw - left
            inside = tirx.all(p < hw, y >= 0, y < spec.height, x >= 0, x < spec.width)
            return tirx.if_then_else(inside, data[b, c, y, x], zero)
    panel = te.compute((n, panels, ic, columns), gather, name="pad")
    inputs, weight, bias, residual = _pointwise_placeholders(spec, data, oc_tile, has_bias, has_residual)
    rc = te.reduce_axis((0, ic), name="rc")
    acc = te.compute((n, panels, ocb, oc_tile, columns),
                     lambda b, q, cb, o, i: te.sum(weight[cb, rc, o] * panel[b, q, rc, i], axis=rc), name="conv")
    out = epilogue((n, oc, hw), lambda b, c, p: acc[b, p // columns, c // oc_tile, c % oc_tile, p % columns],
                   bias, residual, act)
    return inputs, out
