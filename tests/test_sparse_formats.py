"""CSR/BSR conversion, statistics and block detection against scipy.sparse."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fscnn_tvm import sparse
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.ops.sparse_conv2d import SparseConvLayout
from fscnn_tvm.prune import magnitude_mask


def _weight(shape, sparsity, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * (rng.random(shape) >= sparsity)).astype("float32")


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_csr_matches_scipy(sparsity):
    w = _weight((24, 5, 3, 3), sparsity)
    csr = sparse.csr_from_dense(w)
    ref = sp.csr_matrix(w.reshape(24, -1))
    np.testing.assert_array_equal(csr.indptr, ref.indptr)
    if csr.nnz:
        np.testing.assert_array_equal(csr.cols[:csr.nnz], ref.indices)
        np.testing.assert_array_equal(csr.values[:csr.nnz], ref.data)
    else:
        assert csr.cols.shape == (1,) and csr.values.shape == (1,)  # never an empty buffer


def test_bsr_roundtrip_and_short_last_block():
    w = _weight((20, 4, 3, 3), 0.8, seed=1)  # 20 rows: blocks of 8, 8, 4
    bsr = sparse.bsr_from_dense(w, 8)
    dense = np.zeros((24, 36), dtype="float32")
    for b in range(3):
        for k in range(bsr.indptr[b], bsr.indptr[b + 1]):
            dense[b * 8:(b + 1) * 8, bsr.cols[k]] = bsr.values[k]
    np.testing.assert_array_equal(dense[:20], w.reshape(20, -1))
    assert not dense[20:].any()
    present = sp.csr_matrix((np.abs(dense).reshape(3, 8, 36).sum(axis=1) > 0).astype(np.float32))
    np.testing.assert_array_equal(bsr.indptr, present.indptr)  # a block column per nonzero column


@pytest.mark.parametrize("shape,rows", [((67, 30, 3, 3), 8), ((64, 10), 4), ((5, 7), 8), ((16, 3), 8)])
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_nonzero_blocks_counts_what_bsr_stores(shape, rows, density):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)
    stored = sparse.bsr_from_dense(w, rows).indptr[-1]
    assert sparse.nonzero_blocks(w, rows) == stored


def test_stats_and_block_detection():
    w = _weight((32, 16, 3, 3), 0.9)
    s = sparse.stats(w)
    assert s.nnz == np.count_nonzero(w) and abs(s.density - 0.1) < 0.02
    assert s.block_fill[8] < 0.3  # unstructured: blocks are mostly zeros
    assert sparse.detect_block_rows(w) == 1
    blocked = w * 0 + 1
    blocked *= magnitude_mask(np.random.default_rng(2).standard_normal(w.shape), 0.9, block=(8, 1))
    assert sparse.stats(blocked).block_fill[8] == 1.0
    assert sparse.detect_block_rows(blocked) == 8
    empty = np.zeros((8, 4, 1, 1), "float32")
    assert sparse.stats(empty).empty_rows == 8 and sparse.detect_block_rows(empty) == 1
    assert sparse.detect_block_rows(_weight((32, 16, 3, 3), 0.0)) == 1  # dense: not block-pruned


def test_offsets_address_the_phase_planes():
    spec = Conv2dSpec(1, 3, 9, 9, 4, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1), dilation=(1, 1))
    layout = SparseConvLayout(spec, 16)
    assert (layout.hs, layout.ws) == (6, 6)  # 11x11 padded -> 2x2 phases of 6x6
    # column (ic=1, kh=2, kw=1): row offset 2 -> phase row 0, +1 plane row; col 1 -> phase col 1
    col = np.array([(1 * 3 + 2) * 3 + 1])
    expected = ((0 * 2 + 1) * 3 + 1) * 36 + 1 * 6 + 0
    assert layout.offsets(col)[0] == expected


def test_chunked_rows_cover_the_weight():
    w = _weight((10, 7, 3, 3), 0.7, seed=4)
    indptr, cols, values = sparse.chunked(w, 3)  # 7 channels: chunks of 3, 3, 1
    assert indptr.shape == (31,) and indptr[-1] == np.count_nonzero(w)
    rebuilt = np.zeros((10, 63), "float32")
    for k in range(3):
        for r in range(10):
            lo, hi = indptr[k * 10 + r], indptr[k * 10 + r + 1]
            assert ((cols[lo:hi] // 9) // 3 == k).all()  # chunk k holds channels [3k, 3k+3)
            rebuilt[r, cols[lo:hi]] = values[lo:hi]
    np.testing.assert_array_equal(rebuilt, w.reshape(10, -1))
