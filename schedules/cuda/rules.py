"""CUDA knob rules for our kernels (``fscnn_tvm/ops/cuda_conv2d.py``, ``cuda_linear.py``).

Those kernels are written already scheduled (threads bound in TVMScript); what is chosen per
layer is which geometry they are built with. The kernel builder and the CUDA performance model
both read these rules.
"""
from __future__ import annotations

from fscnn_tvm.ops import cuda_conv2d
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.ops.sparse_conv2d import SparseConvLayout


def dense_block_rows(spec: Conv2dSpec) -> int:
    """Output channels per block for a dense (or grouped) layer run as full BSR: the largest of
    8, 4, 2, 1 dividing the channels of one group (a block must not straddle two groups), so
    each input load feeds that many FMAs."""
    per_group = spec.out_channels // spec.groups
    return next(r for r in (8, 4, 2, 1) if per_group % r == 0)


def conv_layout(spec: Conv2dSpec, block_rows: int) -> SparseConvLayout:
    """The geometry of the CUDA conv for ``spec`` (stride must be equal in both axes)."""
    return cuda_conv2d.layout(spec, block_rows)
