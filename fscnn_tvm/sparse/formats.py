"""CSR and BSR weights for direct sparse convolution (Park et al.), and their statistics.

A conv weight ``[OC, ICg, KH, KW]`` is a matrix with one row per output channel and one column
per ``(ic, kh, kw)``, ``col = (ic * KH + kh) * KW + kw``. Kernels never decode columns: the pass
turns them into *offsets* into the padded input (:func:`conv_offsets`), so the inner loop is one
broadcast of a weight and contiguous vector loads of the input.

BSR groups ``R`` consecutive output channels (rows); a block column is stored when any of its
``R`` weights is nonzero, so unstructured masks fill blocks poorly and block-pruned ones fully.
Every array is at least one element long (TVM buffers cannot be empty); ``indptr`` says how many
are real.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CSR:
    indptr: np.ndarray  # int32 [rows + 1]
    cols: np.ndarray  # int32 [max(nnz, 1)]
    values: np.ndarray  # float32 [max(nnz, 1)]
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])


@dataclass(frozen=True)
class BSR:
    indptr: np.ndarray  # int32 [row_blocks + 1]
    cols: np.ndarray  # int32 [max(nnzb, 1)]
    values: np.ndarray  # float32 [max(nnzb, 1), R]; rows past the matrix are zero
    shape: tuple[int, int]
    block_rows: int

    @property
    def nnzb(self) -> int:
        return int(self.indptr[-1])


def chunked(weight: np.ndarray, chunks: int, block_rows: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR (``block_rows`` 1) or BSR arrays whose rows are ``(chunk, row)``: chunk ``k`` holds the
    columns of input channels ``[k*C, (k+1)*C)`` (``C = ceil(IC / chunks)``), with columns
    numbered as in the whole weight. Returns ``indptr [chunks*rows+1], cols, values``."""
    per = int(np.prod(weight.shape[2:], dtype=np.int64))
    step = -(-weight.shape[1] // chunks)
    indptr, cols, values = [np.zeros(1, np.int32)], [], []
    for k in range(chunks):
        part = weight[:, k * step:(k + 1) * step]
        fmt = csr_from_dense(part) if block_rows == 1 else bsr_from_dense(part, block_rows)
        count = int(fmt.indptr[-1])
        indptr.append(fmt.indptr[1:] + indptr[-1][-1])
        cols.append(fmt.cols[:count] + k * step * per)
        values.append(fmt.values[:count])
    flat_cols = np.concatenate(cols).astype(np.int32)
    flat_values = np.concatenate(values).astype(np.float32)
    if not flat_cols.size:  # TVM buffers cannot be empty
        flat_cols = np.zeros(1, np.int32)
        flat_values = np.zeros((1,) + ((block_rows,) if block_rows > 1 else ()), np.float32)
    return np.concatenate(indptr).astype(np.int32), flat_cols, flat_values


def _as_matrix(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(weight.reshape(weight.shape[0], -1), dtype=np.float32)


def _nonempty(arr: np.ndarray, fill_shape: tuple[int, ...], dtype) -> np.ndarray:
    return arr if arr.shape[0] else np.zeros(fill_shape, dtype=dtype)


def csr_from_dense(weight: np.ndarray) -> CSR:
    """CSR of a weight with output channels as rows (any trailing dims become columns)."""
    mat = _as_matrix(weight)
    rows, cols = np.nonzero(mat)
    indptr = np.zeros(mat.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=mat.shape[0]), out=indptr[1:])
    return CSR(indptr, _nonempty(cols.astype(np.int32), (1,), np.int32),
               _nonempty(mat[rows, cols], (1,), np.float32), mat.shape)


def bsr_from_dense(weight: np.ndarray, block_rows: int) -> BSR:
    """BSR with blocks of ``block_rows`` output channels x 1 column."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    mat = _as_matrix(weight)
    n_rows, n_cols = mat.shape
    n_blocks = -(-n_rows // block_rows)
    padded = np.zeros((n_blocks * block_rows, n_cols), dtype=np.float32)
    padded[:n_rows] = mat
    blocks = padded.reshape(n_blocks, block_rows, n_cols)
    present = (blocks != 0).any(axis=1)  # [n_blocks, n_cols]
    brow, bcol = np.nonzero(present)
    indptr = np.zeros(n_blocks + 1, dtype=np.int32)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    values = blocks[brow, :, bcol]  # [nnzb, R]
    return BSR(indptr, _nonempty(bcol.astype(np.int32), (1,), np.int32),
               _nonempty(np.ascontiguousarray(values, dtype=np.float32), (1, block_rows), np.float32),
               (n_rows, n_cols), block_rows)


def nonzero_blocks(weight: np.ndarray, block_rows: int) -> int:
    """The number of blocks BSR with ``block_rows`` output channels x 1 column stores (without
    building it: the performance model counts them for every candidate)."""
    mat = _as_matrix(weight) != 0
    n_rows, n_cols = mat.shape
    full = n_rows // block_rows * block_rows
    count = int(mat[:full].reshape(-1, block_rows, n_cols).any(axis=1).sum())
    return count + int(mat[full:].any(axis=0).sum())


@dataclass(frozen=True)
class LayerStats:
    density: float
    nnz: int
    row_nnz_mean: float
    row_nnz_cv: float  # coefficient of variation of nonzeros per row (load imbalance)
    empty_rows: int
    block_fill: dict  # R -> fraction of stored BSR values that are nonzero


def stats(weight: np.ndarray, block_rows: tuple[int, ...] = (4, 8)) -> LayerStats:
    mat = _as_matrix(weight)
    per_row = (mat != 0).sum(axis=1)
    nnz = int(per_row.sum())
    mean = float(per_row.mean()) if per_row.size else 0.0
    fill = {}
    for r in block_rows:
        blocks = nonzero_blocks(mat, r)
        fill[r] = nnz / (blocks * r) if blocks else 1.0
    return LayerStats(density=nnz / max(mat.size, 1), nnz=nnz, row_nnz_mean=mean,
                      row_nnz_cv=float(per_row.std() / mean) if mean else 0.0,
                      empty_rows=int((per_row == 0).sum()), block_fill=fill)


def detect_block_rows(weight: np.ndarray, candidates: tuple[int, ...] = (8, 4),
                      min_fill: float = 0.95, max_density: float = 0.9) -> int:
    """Largest ``R`` whose BSR blocks are at least ``min_fill`` full (block-pruned weights), else 1.

    Weights denser than ``max_density`` are not pruned at all: their blocks are full trivially.
    """
    s = stats(weight, candidates)
    if s.nnz == 0 or s.density > max_density:
        return 1
    for r in candidates:
        if s.block_fill[r] >= min_fill and weight.shape[0] >= r:
            return r
    return 1
