"""Direct sparse conv2d (CSR and BSR) and sparse linear against torch, through the compiler."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fscnn_tvm.testing import check_against_torch, conv_block, randomize_, sparsify_
from fscnn_tvm import models, prune

SPARSE_CASES = [
    # (cin, cout, k, stride, pad, dilation, hw, batch, kwargs)
    pytest.param(32, 48, 3, 1, 1, 1, 14, 1, {"bn": True, "residual": False}, id="3x3"),
    pytest.param(48, 48, 3, 1, 1, 1, 9, 4, {"residual": True}, id="3x3-residual-batch4"),
    pytest.param(32, 40, 1, 1, 0, 1, 13, 1, {"act": "none"}, id="1x1-odd"),
    pytest.param(32, 24, 1, 2, 0, 1, 14, 1, {}, id="1x1-stride2"),
    pytest.param(16, 32, 3, 2, 1, 1, 15, 2, {"act": "relu6"}, id="3x3-stride2-odd"),
    pytest.param(3, 16, 7, 2, 3, 1, 23, 1, {}, id="7x7-stride2"),
    pytest.param(3, 16, 11, 4, 2, 1, 31, 1, {}, id="11x11-stride4"),
    pytest.param(16, 16, 5, 1, 2, 1, 8, 1, {}, id="5x5"),
    pytest.param(16, 24, 3, 1, 2, 2, 12, 1, {}, id="3x3-dilation2"),
    pytest.param(16, 16, 3, 1, 3, 1, 6, 1, {}, id="3x3-pad3"),
    pytest.param(8, 16, 3, 1, 0, 1, 5, 1, {}, id="3x3-nopad-small"),
    pytest.param(80, 24, 3, 2, 1, 1, 11, 2, {}, id="3x3-stride2-3-uneven-chunks"),
]


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,hw,batch,kw", SPARSE_CASES)
def test_csr_conv(cin, cout, k, stride, pad, dil, hw, batch, kw, sparsity):
    block = sparsify_(randomize_(conv_block(cin, cout, k, stride, pad, dil, **kw)), sparsity, seed=2)
    compiled = check_against_torch(block, (batch, cin, hw, hw), sparse="always")
    assert compiled.plan[0].kernel == "csr"


@pytest.mark.parametrize("sparsity", [0.5, 0.99])
@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,hw,batch,kw", SPARSE_CASES)
def test_csr_conv_aligned_layout(monkeypatch, cin, cout, k, stride, pad, dil, hw, batch, kw, sparsity):
    """Aligned layouts (taps split by column shift) on every case, not only >= 256 channels."""
    from fscnn_tvm.ops.conv2d import Conv2dSpec
    from fscnn_tvm.schedules.x86 import rules as x86_rules

    monkeypatch.setattr(x86_rules, "ALIGN_MIN_CHANNELS", 1)
    monkeypatch.setattr(x86_rules, "ALIGN_MIN_LANES", 1)  # also on an AVX2 host
    spec = Conv2dSpec(batch, cin, hw, hw, cout, (k, k), (stride, stride), (pad,) * 4, (dil, dil))
    layout = x86_rules.sparse_conv_layout(spec, 1, 16)
    assert (layout.align == 16) == (k > 1)
    assert layout.ws % layout.align == 0 and len(layout.shifts) == len({c * dil // stride for c in range(k)})
    block = sparsify_(randomize_(conv_block(cin, cout, k, stride, pad, dil, **kw)), sparsity, seed=3)
    compiled = check_against_torch(block, (batch, cin, hw, hw), sparse="always")
    assert compiled.plan[0].kernel == "csr"


@pytest.mark.parametrize("rows", [4, 8])
@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,hw,batch,kw", SPARSE_CASES[:6])
def test_bsr_conv(cin, cout, k, stride, pad, dil, hw, batch, kw, rows):
    block = randomize_(conv_block(cin, cout, k, stride, pad, dil, **kw))
    prune.magnitude(block, 0.8, skip_first_conv=False, block=(rows, 1))
    compiled = check_against_torch(block, (batch, cin, hw, hw), sparse="always")
    assert compiled.plan[0].kernel == f"bsr{rows}"


def test_empty_rows_and_all_zero_layer():
    block = sparsify_(randomize_(conv_block(16, 32, 3, padding=1, act="none")), 0.9)
    with torch.no_grad():
        block.conv.weight[[0, 5, 31]] = 0  # rows with no nonzeros
    check_against_torch(block, (1, 16, 10, 10), sparse="always")
    with torch.no_grad():
        block.conv.weight.zero_()
    compiled = check_against_torch(block, (1, 16, 10, 10), sparse="always")
    assert compiled.plan[0].sparsity == 1.0 and compiled.plan[0].kernel == "csr"


@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.99])
@pytest.mark.parametrize("batch", [1, 4, 19])  # 19: batch tiles of 10 and 9 (AVX-512), 7, 7, 5 (AVX2)
def test_csr_linear(batch, sparsity):
    model = sparsify_(randomize_(nn.Sequential(nn.Linear(300, 70), nn.ReLU(), nn.Linear(70, 10))), sparsity)
    compiled = check_against_torch(model, (batch, 300), sparse="always")
    assert [r.kernel for r in compiled.plan] == ["csr", "csr"]


def test_csr_linear_wide_input_uses_int32_columns():
    """Over 65536 inputs the column indices no longer fit 16 bits."""
    from fscnn_tvm.ops.sparse_dense import index_dtype

    assert index_dtype(1 << 16) == "uint16" and index_dtype((1 << 16) + 1) == "int32"
    model = sparsify_(randomize_(nn.Sequential(nn.Linear((1 << 16) + 7, 3))), 0.9)
    with torch.no_grad():  # a nonzero in the last column: an index past 16 bits
        model[0].weight[:, -1] = 1.0
    compiled = check_against_torch(model, (2, (1 << 16) + 7), sparse="always")
    assert compiled.plan[0].kernel == "csr"


def test_grouped_conv_stays_dense_with_reason():
    block = randomize_(conv_block(32, 32, 3, padding=1, groups=32))
    compiled = check_against_torch(block, (1, 32, 8, 8), sparse="always")
    assert compiled.plan[0].kernel == "dense"
    assert compiled.plan[0].reason == "groups=32: sparse kernels need groups=1"


def _builtin_profile():
    from fscnn_tvm import profiles, targets

    return profiles.builtin_profile(targets.parse("llvm"))


@pytest.mark.parametrize("mode,expected", [("never", "winograd4"), ("auto", "csr"), ("always", "csr")])
def test_sparse_modes(mode, expected):
    """never: the fastest dense-weight kernel (Winograd F(4x4) here), never a sparse one."""
    block = sparsify_(randomize_(conv_block(32, 64, 3, padding=1)), 0.9)
    compiled = check_against_torch(block, (1, 32, 28, 28), sparse=mode, profile=_builtin_profile())
    assert compiled.plan[0].kernel == expected and compiled.plan[0].reason
    if mode == "never":
        assert "sparse='never'" in compiled.plan[0].reason


def test_auto_keeps_low_sparsity_dense():
    block = sparsify_(randomize_(conv_block(32, 64, 3, padding=1)), 0.3)
    compiled = check_against_torch(block, (1, 32, 28, 28), sparse="auto", profile=_builtin_profile())
    row = compiled.plan[0]
    assert row.kernel == "winograd4" and "csr pays above sparsity" in row.reason
    assert row.reason.endswith("against winograd4")
    assert row.predicted_ms["winograd4"] < min(row.predicted_ms["dense"], row.predicted_ms["csr"])


@pytest.mark.parametrize("spec", ["resnet18@0.9", "vgg16@0.9:8x1", "mobilenet_v2@0.9", "alexnet@0.9",
                                  "resnet50@0.99"])
def test_zoo_models_always_sparse(spec):
    model = models.from_spec(spec)
    compiled = check_against_torch(model, (1, 3, 64, 64), sparse="always")
    for r in compiled.plan:  # every layer a sparse kernel can run, runs one; the rest say why not
        if r.groups == 1:
            assert r.kernel in ("csr", "bsr4", "bsr8") and r.reason.startswith("sparse='always'"), r
        else:
            assert r.kernel == "dense" and r.reason.startswith(f"groups={r.groups}"), r


def test_sparse_kernel_inner_loop_is_vectorized():
    """Structural check: one broadcast feeds 512-bit FMAs on an AVX-512 target."""
    import tvm

    from fscnn_tvm.ops.conv2d import Conv2dSpec
    from fscnn_tvm.ops.sparse_conv2d import SparseConvLayout, sparse_conv2d
    from fscnn_tvm.schedules import schedule_func

    tgt = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    func = sparse_conv2d(SparseConvLayout(Conv2dSpec(1, 16, 14, 14, 16, (3, 3), padding=(1, 1, 1, 1)), 224))
    func = func.with_attrs({"fscnn.kernel": "sparse_conv2d", "fscnn.lanes": 16})
    asm = tvm.compile(tvm.IRModule({"main": schedule_func(func, tgt)}), tgt).mod.inspect_source("asm")
    assert "vbroadcastss" in asm and "vfmadd231ps" in asm and "zmm" in asm


@pytest.mark.parametrize("hw,tile_fits", [(28, True), (14, False)])  # 784 = 7 x 112; 196 is no multiple of 16
def test_1x1_reads_input_in_place_when_tiles_fit(hw, tile_fits):
    from fscnn_tvm.schedules.x86.rules import sparse_conv_tile
    from fscnn_tvm.ops.conv2d import Conv2dSpec
    from fscnn_tvm.ops.sparse_conv2d import SparseConvLayout

    spec = Conv2dSpec(2, 32, hw, hw, 48, (1, 1))
    layout = SparseConvLayout(spec, sparse_conv_tile(spec, 1, 16))
    assert layout.direct == tile_fits
    block = sparsify_(randomize_(conv_block(32, 48, 1, act="none", residual=False)), 0.9)
    check_against_torch(block, (2, 32, hw, hw), sparse="always")


def test_stride2_1x1_stages_one_phase_plane():
    from fscnn_tvm.ops.conv2d import Conv2dSpec
    from fscnn_tvm.ops.sparse_conv2d import SparseConvLayout

    assert SparseConvLayout(Conv2dSpec(1, 8, 8, 8, 8, (1, 1), stride=(2, 2)), 16).phases == [(0, 0)]
    three = SparseConvLayout(Conv2dSpec(1, 8, 8, 8, 8, (3, 3), stride=(2, 2)), 16)
    assert len(three.phases) == 4


def test_chunk_rule():
    from fscnn_tvm.schedules.x86.rules import sparse_conv_chunks
    from fscnn_tvm.ops.conv2d import Conv2dSpec

    assert sparse_conv_chunks(Conv2dSpec(1, 80, 8, 8, 8, (3, 3)), 1) == 3
    assert sparse_conv_chunks(Conv2dSpec(1, 80, 8, 8, 8, (3, 3)), 8) == 1  # BSR is not split
    assert sparse_conv_chunks(Conv2dSpec(1, 1024, 8, 8, 8, (1, 1)), 1) == 1
    assert sparse_conv_chunks(Conv2dSpec(1, 16, 8, 8, 8, (3, 3)), 1) == 1
