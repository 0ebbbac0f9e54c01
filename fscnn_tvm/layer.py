"""The layer description every stage shares: one conv2d/linear of the graph and its epilogue.

:func:`passes.find_layers` reads them out of a Relax module; :func:`conv_layer` and
:func:`linear_layer` make them without a graph (calibration, benchmarks, tests).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tvm import relax

from .ops.conv2d import Conv2dSpec


@dataclass
class Layer:
    """One conv2d/linear of the graph and the epilogue chain fused into it."""

    index: int
    op: str  # "conv2d" | "linear"
    head: relax.Var | None  # binding of the conv2d / matmul itself
    tail: relax.Var | None  # last binding of the fused chain (the layer's output)
    absorbed: list  # bindings replaced by the fused call (head .. tail)
    data: relax.Expr | None
    weight: np.ndarray  # conv: OIHW; linear: [O, I] (torch layout)
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)  # conv: stride, padding, dilation, groups
    bias: np.ndarray | None = None
    residual: relax.Expr | None = None
    act: str = "none"
    name: str = ""
    # A matmul over an N-D input (..., K) runs as a linear over the flattened leading dimensions:
    # in_shape/out_shape are then 2-D and graph_shape is the output's shape in the graph.
    graph_shape: tuple[int, ...] | None = None
    # The zero fraction of the layer's input on calibration data (mean, spread over the samples);
    # None: not calibrated (``calibration.zero_fractions``).
    input_zeros: tuple[float, float] | None = None

    @property
    def graph_out_shape(self) -> tuple[int, ...]:
        """The layer's output shape in the graph (what its epilogue ops must have)."""
        return self.graph_shape or self.out_shape

    def bias_or_zeros(self) -> np.ndarray:
        """The bias, or zeros for a layer without one (kernels that always add a bias)."""
        return self.bias if self.bias is not None else np.zeros(self.out_shape[1], "float32")

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.weight)) / max(self.weight.size, 1)

    @property
    def epilogue(self) -> str:
        """What the kernel applies after the reduction, e.g. ``bias+residual+relu`` (``-``: nothing)."""
        parts = (["bias"] if self.bias is not None else []) + (
            ["residual"] if self.residual is not None else []) + ([self.act] if self.act != "none" else [])
        return "+".join(parts) or "-"


def conv_spec(layer: Layer) -> Conv2dSpec:
    """The static shape of a conv layer, as the computes in ``ops/`` take it."""
    n, c, h, w = layer.in_shape
    a = layer.attrs
    return Conv2dSpec(n, c, h, w, layer.out_shape[1], tuple(layer.weight.shape[2:]),
                      a["stride"], a["padding"], a["dilation"], a["groups"])


def conv_layer(spec: Conv2dSpec, weight: np.ndarray, act: str = "relu", name: str = "",
               input_zeros: float | None = None) -> Layer:
    """A conv layer as :func:`passes.find_layers` would give it, without a graph around it
    (``input_zeros``: a calibrated input zero fraction)."""
    attrs = {"stride": spec.stride, "padding": spec.padding, "dilation": spec.dilation,
             "groups": spec.groups}
    return Layer(0, "conv2d", None, None, [], None, weight,
                 (spec.batch, spec.in_channels, spec.height, spec.width), spec.out_shape, attrs,
                 bias=np.zeros(spec.out_channels, "float32"), act=act, name=name,
                 input_zeros=None if input_zeros is None else (float(input_zeros), 0.0))


def linear_layer(batch: int, weight: np.ndarray, act: str = "none", name: str = "",
                 input_zeros: float | None = None) -> Layer:
    """A linear layer (``weight [out, in]``) without a graph around it (``input_zeros``: a
    calibrated input zero fraction)."""
    out_features, in_features = weight.shape
    return Layer(0, "linear", None, None, [], None, weight, (batch, in_features),
                 (batch, out_features), {}, bias=np.zeros(out_features, "float32"), act=act, name=name,
                 input_zeros=None if input_zeros is None else (float(input_zeros), 0.0))
