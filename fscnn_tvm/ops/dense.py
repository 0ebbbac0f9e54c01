"""Dense linear (fully connected) layer that fscnn-tvm owns, with a fused epilogue.

Weights are packed output-blocked so the kernel streams them contiguously and keeps
``out_block`` outputs per batch row in vector registers (batch 1 is a matrix-vector product,
bound by weight bandwidth).

Shapes (``OB = ceil(O / out_block)``):

- ``data``    ``[N, I]`` float32.
- ``weight``  ``[OB, I, out_block]``, packed by :func:`pack_weight` from torch's ``[O, I]``.
- ``bias``    ``[O]`` (optional); ``residual`` ``[N, O]`` (optional).
- output      ``[N, O]`` = act(data @ weight.T + bias + residual).
"""
from __future__ import annotations

import numpy as np
from tvm import te

from .conv2d import epilogue


def pack_weight(weight: np.ndarray, out_block: int) -> np.ndarray:
    """``[O, I]`` -> ``[OB, I, out_block]``, zero-padded past O."""
    o, i = weight.shape
    ob = -(-o // out_block)
    padded = np.zeros((ob * out_block, i), dtype="float32")
    padded[:o] = weight
    return np.ascontiguousarray(padded.reshape(ob, out_block, i).transpose(0, 2, 1))


def dense(batch: int, in_features: int, out_features: int, *, out_block: int, act: str = "none",
          has_bias: bool = False, has_residual: bool = False):
    """TE tensors of the linear layer; inputs in call order ``data, weight[, bias][, residual]``."""
    if min(batch, in_features, out_features) < 1:
        raise ValueError(f"dense: empty shape batch={batch}, in={in_features}, out={out_features}")
    ob = -(-out_features // out_block)
    data = te.placeholder((batch, in_features), "float32", name="data")
    weight = te.placeholder((ob, in_features, out_block), "float32", name="weight")
    bias = te.placeholder((out_features,), "float32", name="bias") if has_bias else None
    residual = te.placeholder((batch, out_features), "float32", name="residual") if has_residual else None
    k = te.reduce_axis((0, in_features), name="k")
    acc = te.compute((batch, ob, out_block),
                     lambda n, b, v: te.sum(data[n, k] * weight[b, k, v], axis=k), name="dense")
    out = epilogue((batch, out_features), lambda n, o: acc[n, o // out_block, o % out_block],
                   bias, residual, act)
    inputs = [data, weight] + ([bias] if bias is not None else []) + (
        [residual] if residual is not None else [])
    return inputs, out
