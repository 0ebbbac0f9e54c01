"""Names the pipeline shares: the kernel kinds a plan chooses from, and the compute each PrimFunc is.

A **kernel kind** is what a plan row says a layer runs: ``dense`` (direct), ``winograd{m}``
(F(m x m, 3 x 3), dense weights), ``csr``, ``bsr{R}`` (blocks of ``R`` output channels), or
``actsparse`` (dense weights, skipping the zeros of each input at run time).
:class:`Kind` parses and prints them, so nothing slices strings.

A **compute** names the PrimFunc a kernel builder made (stored on it as the ``fscnn.kernel``
attribute); a schedule rule in ``schedules/<target>/`` reads it to decide "mine or not".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import tvm

KERNEL_ATTR = "fscnn.kernel"
# Every kernel kind family a plan can choose, in the order tables show them. A new family is one
# entry here (and its candidates rule in plan.py).
FAMILIES = ("dense", "winograd", "csr", "bsr", "actsparse")
NUMBERED = ("winograd", "bsr")  # families whose name carries a number: winograd4 (tile), bsr8 (rows)
SPARSE_FAMILIES = ("csr", "bsr")  # kinds that store only the weight's nonzeros
_KIND = re.compile(r"^(?P<family>[a-z_]+?)(?P<rows>\d+)?$")


@dataclass(frozen=True)
class Kind:
    """A kernel kind: ``family`` is one of :data:`FAMILIES`; ``rows`` the number in its name: the
    output channels per stored block of BSR, the output tile of Winograd (1 for dense and CSR)."""

    family: str
    rows: int = 1

    @classmethod
    def parse(cls, text: str) -> Kind:
        m = _KIND.match(str(text))
        family = m.group("family") if m else None
        if family not in FAMILIES or (family in NUMBERED) != (m.group("rows") is not None):
            raise ValueError(f"unknown kernel kind {text!r}; expected one of "
                             + ", ".join(f"{f}<R>" if f in NUMBERED else f for f in FAMILIES) + " (e.g. bsr8, winograd4)")
        return cls(family, int(m.group("rows") or 1))

    @property
    def sparse(self) -> bool:
        """Whether the kind stores only the weight's nonzeros (CSR, BSR)."""
        return self.family in SPARSE_FAMILIES

    def __str__(self) -> str:
        return f"{self.family}{self.rows}" if self.family in NUMBERED else self.family


DENSE, CSR, ACT_SPARSE = "dense", "csr", "actsparse"


def bsr(rows: int) -> str:
    """The kind name of BSR with ``rows`` output channels per block (``bsr(8) == "bsr8"``)."""
    return str(Kind("bsr", rows)) if rows > 1 else CSR


def block_rows(kind: str) -> int:
    """Output channels per stored block: ``"csr"`` -> 1, ``"bsr8"`` -> 8."""
    return Kind.parse(kind).rows


def winograd(tile: int) -> str:
    """The kind name of Winograd F(tile x tile, 3 x 3) (``winograd(4) == "winograd4"``)."""
    return str(Kind("winograd", tile))


def is_sparse(kind: str) -> bool:
    """Whether ``kind`` runs a sparse (CSR/BSR) kernel."""
    return Kind.parse(kind).sparse


class Compute:
    """The ``fscnn.kernel`` values: one per compute in ``ops/``."""

    CONV2D_OC_BLOCKED = "conv2d_oc_blocked"  # ops/conv2d.py, dense direct conv, channels in registers
    CONV2D_SPATIAL = "conv2d_spatial"  # ops/conv2d.py, grouped/depthwise, width in registers
    CONV2D_POINTWISE = "conv2d_pointwise"  # ops/conv2d.py, 1x1 as a GEMM, pixels in registers
    CONV2D_POINTWISE_PACKED = "conv2d_pointwise_packed"  # ops/conv2d.py, any 1x1: GEMM on gathered panels
    CONV2D_WINOGRAD = "conv2d_winograd"  # ops/winograd.py, dense 3x3 stride 1, F(m x m, 3 x 3)
    DENSE = "dense"  # ops/dense.py, dense linear
    SPARSE_CONV2D = "sparse_conv2d"  # ops/sparse_conv2d.py, CSR/BSR direct conv
    SPARSE_DENSE = "sparse_dense"  # ops/sparse_dense.py, CSR linear
    ACT_SPARSE_CONV2D = "act_sparse_conv2d"  # ops/act_sparse_conv2d.py, skips the input's zeros
    ACT_SPARSE_DENSE = "act_sparse_dense"  # ops/act_sparse_conv2d.py, linear: the rows of nonzero inputs
    CUDA_CONV2D = "cuda_conv2d"  # ops/cuda_conv2d.py, the one CUDA conv (dense = full BSR)
    CUDA_LINEAR = "cuda_linear"  # ops/cuda_linear.py
    MAX_POOL2D = "max_pool2d"  # nan_safe.legalize_max_pool2d, NaN-keeping window max (no kernel kind)


def compute_of(func: tvm.tirx.PrimFunc) -> str | None:
    """The ``fscnn.kernel`` of a PrimFunc (``None``: not one of ours)."""
    value = func.attrs.get(KERNEL_ATTR) if func.attrs else None
    return str(value) if value is not None else None
