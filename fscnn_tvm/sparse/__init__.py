"""Sparse weight formats (numpy only): CSR and BSR over output channels, offsets, statistics, masks."""
from .formats import (BSR, CSR, LayerStats, bsr_from_dense, chunked, csr_from_dense, detect_block_rows,
                      nonzero_blocks, stats)
from .masks import magnitude_mask

__all__ = ["BSR", "CSR", "LayerStats", "bsr_from_dense", "chunked", "csr_from_dense", "detect_block_rows",
           "magnitude_mask", "nonzero_blocks", "stats"]
