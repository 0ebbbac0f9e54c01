"""Dense conv2d kernels (ops/conv2d.py, schedules/x86/conv2d.py) against torch conv2d."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fscnn_tvm.testing import conv_block, randomize_, sparsify_
from fscnn_tvm.schedules.x86.rules import conv_tile
from fscnn_tvm.kinds import KERNEL_ATTR, Compute
from fscnn_tvm.ops.conv2d import Conv2dSpec, pack_weight


CASES = [
    # (cin, cout, k, stride, pad, dilation, groups, hw, batch, kwargs)
    pytest.param(64, 64, 3, 1, 1, 1, 1, 14, 1, {"bn": True, "residual": True}, id="3x3-bn-residual"),
    pytest.param(32, 48, 1, 1, 0, 1, 1, 13, 1, {"act": "none"}, id="1x1-odd-size"),
    pytest.param(3, 64, 7, 2, 3, 1, 1, 33, 1, {"bias": False, "bn": True}, id="7x7-stride2-stem"),
    pytest.param(3, 16, 11, 4, 2, 1, 1, 47, 1, {}, id="11x11-stride4"),
    pytest.param(16, 40, 5, 1, 2, 1, 1, 9, 4, {}, id="5x5-batch4"),
    pytest.param(24, 32, 3, 2, 0, 1, 1, 15, 1, {}, id="3x3-stride2-nopad"),
    pytest.param(16, 32, 3, 1, 2, 2, 1, 12, 1, {}, id="3x3-dilation2"),
    pytest.param(32, 32, 3, 1, 3, 1, 1, 7, 2, {"act": "relu6"}, id="3x3-pad3-relu6"),
    pytest.param(32, 32, 3, 1, 1, 1, 32, 17, 1, {"bn": True, "act": "relu6"}, id="depthwise"),
    pytest.param(32, 32, 3, 2, 1, 1, 32, 16, 1, {"bn": True}, id="depthwise-stride2"),
    pytest.param(64, 64, 3, 1, 1, 1, 2, 10, 1, {}, id="groups2-oc-blocked"),
    pytest.param(24, 36, 3, 1, 1, 1, 3, 11, 1, {}, id="groups3-spatial"),
    pytest.param(8, 5, 3, 1, 1, 1, 1, 6, 1, {}, id="tiny-oc5"),
    pytest.param(32, 32, 3, 2, 2, 2, 32, 15, 1, {}, id="depthwise-stride2-dilation2-odd"),
    pytest.param(24, 24, 5, 3, 2, 1, 24, 19, 2, {"act": "relu6"}, id="depthwise-5x5-stride3"),
    # pointwise GEMM (1x1 on maps of whole vectors): 4, 2 and 1 vectors per tile, padded channels
    pytest.param(48, 48, 1, 1, 0, 1, 1, 16, 1, {"bn": True, "residual": True}, id="pointwise-residual"),
    pytest.param(24, 37, 1, 1, 0, 1, 1, 8, 4, {"act": "relu6"}, id="pointwise-oc37-batch4"),
    pytest.param(20, 100, 1, 1, 0, 1, 1, 4, 2, {"bias": False, "act": "none"}, id="pointwise-one-vector"),
]


@pytest.mark.parametrize("cin,cout,k,stride,pad,dil,groups,hw,batch,kw", CASES)
def test_conv_matches_torch(compare, cin, cout, k, stride, pad, dil, groups, hw, batch, kw):
    block = randomize_(conv_block(cin, cout, k, stride, pad, dil, groups, **kw))
    compiled = compare(block, (batch, cin, hw, hw))
    assert [row.op for row in compiled.plan] == ["conv2d"]


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99, 1.0])
def test_conv_sparse_weights(compare, sparsity):
    block = sparsify_(randomize_(conv_block(32, 64, 3, padding=1, bn=True)), sparsity, seed=1)
    compiled = compare(block, (1, 32, 12, 12))
    assert compiled.plan[0].sparsity == pytest.approx(sparsity, abs=0.05)


def test_empty_output_row_and_all_zero_layer(compare):
    block = randomize_(conv_block(16, 32, 3, padding=1, act="none"))
    with torch.no_grad():
        block.conv.weight[3].zero_()  # one output channel with no nonzeros
    compare(block, (1, 16, 8, 8))
    with torch.no_grad():
        block.conv.weight.zero_()  # the whole layer: output is the bias
    compare(block, (1, 16, 8, 8))


def test_epilogue_fused_into_one_kernel(compare):
    compiled = compare(randomize_(conv_block(16, 16, 3, padding=1, bn=True, residual=True)),
                       (1, 16, 8, 8))
    assert compiled.plan[0].epilogue == "bias+residual+relu"


def test_pack_weight_layout():
    w = np.arange(5 * 2 * 3 * 3, dtype="float32").reshape(5, 2, 3, 3)
    packed = pack_weight(w, 4)
    assert packed.shape == (2, 2, 3, 3, 4)
    assert packed[1, 1, 2, 0, 0] == w[4, 1, 2, 0]
    assert not packed[1, :, :, :, 1:].any()  # channels past OC are zero


def test_tile_choice_reads_vector_width():
    spec = Conv2dSpec(1, 256, 56, 56, 256, (3, 3), padding=(1, 1, 1, 1))
    assert conv_tile(spec, 16) == ("conv2d_oc_blocked", 7, 32)  # 32 registers: two vectors x 7
    rgb = Conv2dSpec(1, 3, 224, 224, 64, (3, 3), padding=(1, 1, 1, 1))  # a 27-step reduction
    assert conv_tile(rgb, 16) == ("conv2d_oc_blocked", 14, 16)
    _, ow_tile, oc_block = conv_tile(spec, 8)
    assert oc_block == 8 and ow_tile * oc_block // 8 <= 10  # AVX2: 16 registers
    small = Conv2dSpec(1, 512, 7, 7, 512, (3, 3), padding=(1, 1, 1, 1))
    assert conv_tile(small, 16) == ("conv2d_oc_blocked", 7, 32)
    stem = Conv2dSpec(1, 3, 224, 224, 64, (7, 7), stride=(2, 2), padding=(3, 3, 3, 3))
    assert conv_tile(stem, 16) == ("conv2d_oc_blocked", 7, 32)
    depthwise = Conv2dSpec(1, 32, 16, 16, 32, (3, 3), padding=(1, 1, 1, 1), groups=32)
    assert conv_tile(depthwise, 16)[0] == "conv2d_spatial"
    pointwise = Conv2dSpec(1, 64, 56, 56, 256, (1, 1))  # 3136 pixels: 4 vectors x 6 channels
    assert conv_tile(pointwise, 16) == ("conv2d_pointwise", 64, 6)
    assert conv_tile(pointwise, 8) == ("conv2d_pointwise", 32, 3)  # AVX2: 12 accumulators
    odd_map = Conv2dSpec(1, 1024, 14, 14, 256, (1, 1))  # 196 pixels: not whole vectors
    assert conv_tile(odd_map, 16) == ("conv2d_oc_blocked", 7, 32)
    strided = Conv2dSpec(1, 64, 56, 56, 256, (1, 1), stride=(2, 2))
    assert conv_tile(strided, 16)[0] == "conv2d_oc_blocked"


@pytest.mark.parametrize("mcpu", ["znver3", "znver4"])
def test_pointwise_and_strided_depthwise_per_vector_width(compare, mcpu):
    """The pointwise GEMM and the de-interleaved strided depthwise conv with each vector width's
    rules (AVX2 code runs on an AVX-512 machine too)."""
    target = {"kind": "llvm", "mcpu": mcpu}
    compiled = compare(randomize_(conv_block(40, 72, 1, bn=True)), (2, 40, 12, 12), target=target)
    assert [row.kernel for row in compiled.plan] == ["dense"]
    compare(randomize_(conv_block(48, 48, 3, 2, 1, groups=48, act="relu6")), (1, 48, 23, 23), target=target)


@pytest.mark.parametrize("mcpu, lanes, register", [("znver4", 16, "zmm"), ("znver3", 8, "ymm")])
def test_kernel_is_vectorized(mcpu, lanes, register):
    """Structural check: the conv's inner loop uses FMAs on the target's widest vector registers
    (512-bit with AVX-512, 256-bit with AVX2), whatever this machine is."""
    import tvm
    from tvm import te

    from fscnn_tvm.ops.conv2d import conv2d_oc_blocked
    from fscnn_tvm.schedules import schedule_func

    spec = Conv2dSpec(1, 32, 14, 14, 32, (3, 3), padding=(1, 1, 1, 1))
    inputs, out = conv2d_oc_blocked(spec, oc_block=lanes, ow_tile=14)
    func = te.create_prim_func(inputs + [out]).with_attrs(
        {KERNEL_ATTR: Compute.CONV2D_OC_BLOCKED, "fscnn.ow_tile": 14, "fscnn.oc_block": lanes})
    tgt = tvm.target.Target({"kind": "llvm", "mcpu": mcpu})
    lib = tvm.compile(tvm.IRModule({"main": schedule_func(func, tgt)}), tgt)
    fmas = [line for line in lib.mod.inspect_source("asm").splitlines() if "vfmadd231ps" in line]
    assert fmas and all(register in line for line in fmas)


def test_fast_exp_and_silu_numerics():
    """The vectorisable exp of the SiLU epilogue: ~1 ulp over float32's range, and SiLU keeps
    torch's NaN and infinity semantics (silu(-inf) is NaN, silu(inf) inf)."""
    import tvm
    from tvm import te

    from fscnn_tvm.ops.activations import activation, fast_exp

    x = np.concatenate([np.linspace(-87, 88, 100001, dtype="float32"),
                        np.array([np.nan, np.inf, -np.inf, 0.0, -100.0, 100.0], "float32")])
    a = te.placeholder(x.shape, "float32", name="a")
    e = te.compute(x.shape, lambda i: fast_exp(a[i]), name="e")
    s = te.compute(x.shape, lambda i: activation(a[i], "silu"), name="s")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, e, s]))
    for name in ("e", "s"):
        _, inner = sch.split(sch.get_loops(sch.get_sblock(name))[0], [None, 16])
        sch.vectorize(inner)
    lib = tvm.compile(sch.mod, "llvm")
    bufs = [tvm.runtime.tensor(v) for v in (x, np.zeros_like(x), np.zeros_like(x))]
    lib(*bufs)
    exp, silu = bufs[1].numpy(), bufs[2].numpy()
    finite = slice(0, 100001)
    ref = np.exp(x[finite].astype("float64"))
    assert np.max(np.abs(exp[finite] - ref) / ref) < 1e-6
    expected = torch.nn.functional.silu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(silu, expected, rtol=2e-6, atol=1e-30)  # NaN == NaN here
    assert np.isnan(silu[-6]) and silu[-5] == np.inf and np.isnan(silu[-4])  # NaN, inf, -inf


_RESIDUAL = object()  # the kernel builder only asks whether the layer has a residual input
PREFETCH_CASES = [  # (cin, cout, k, hw, act, bias, residual): weights over half of L2 on maps of few rows
    pytest.param(960, 160, 1, 7, "relu6", True, True, id="1x1-7x7-residual"),
    pytest.param(256, 256, 3, 7, "relu", False, False, id="3x3-7x7-padded"),
    pytest.param(200, 150, 3, 5, "none", True, False, id="3x3-5x5-oc150"),
]


def _oc_blocked_kernel(target, cin, cout, k, hw, act, bias, residual, batch=1):
    from fscnn_tvm import kernels, kinds
    from fscnn_tvm.layer import conv_layer

    rng = np.random.default_rng(0)
    spec = Conv2dSpec(batch, cin, hw, hw, cout, (k, k), padding=(k // 2,) * 4)
    w = (rng.standard_normal((cout, cin, k, k)) * 0.05).astype("float32")
    layer = conv_layer(spec, w, act=act)
    layer.bias = rng.standard_normal(cout).astype("float32") if bias else None
    layer.residual = _RESIDUAL if residual else None
    return layer, w, kernels.build_kernel(layer, kinds.DENSE, target)


@pytest.mark.parametrize("mcpu", ["znver3", "znver4"])
@pytest.mark.parametrize("cin,cout,k,hw,act,bias,residual", PREFETCH_CASES)
def test_weight_prefetch_keeps_the_result(mcpu, cin, cout, k, hw, act, bias, residual):
    """On maps of few rows the oc_blocked conv prefetches the next channel block's weights
    (RESULTS.md, session 13): the prefetch is in the scheduled function, and its output equals
    the one without it bit for bit and torch's within tolerance, with each epilogue."""
    import tvm

    from fscnn_tvm import fast_math, targets
    from fscnn_tvm.schedules import schedule_func
    from fscnn_tvm.testing import TOLERANCE, relative_error

    target = targets.parse({"kind": "llvm", "mcpu": mcpu})
    layer, w, kernel = _oc_blocked_kernel(target, cin, cout, k, hw, act, bias, residual)
    assert kernel.func.attrs[KERNEL_ATTR] == Compute.CONV2D_OC_BLOCKED
    assert int(kernel.func.attrs["fscnn.prefetch_rows"]) == hw
    rng = np.random.default_rng(1)
    x = rng.standard_normal(layer.in_shape).astype("float32")
    res = rng.standard_normal(layer.out_shape).astype("float32") if residual else None
    outputs = []
    for rows in (hw, 0):
        scheduled = schedule_func(kernel.func.with_attr("fscnn.prefetch_rows", rows), target)
        assert ("llvm.prefetch" in scheduled.script()) == bool(rows)
        lib = fast_math.compile(kernel.module(scheduled), target)
        args = [tvm.runtime.tensor(a) for a in
                [x, *kernel.constants] + ([res] if residual else []) + [np.zeros(layer.out_shape, "float32")]]
        lib(*args)
        outputs.append(args[-1].numpy())
    assert np.array_equal(outputs[0], outputs[1])
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                     torch.from_numpy(layer.bias) if bias else None, padding=k // 2)
    if residual:
        ref = ref + torch.from_numpy(res)
    ref = {"relu": torch.relu, "relu6": lambda t: torch.clamp(t, 0, 6), "none": lambda t: t}[act](ref)
    assert relative_error(outputs[0], ref.numpy()) <= TOLERANCE


def test_weight_prefetch_rule():
    """Prefetch only at batch 1, on maps of few rows, with weights over half of L2 and more than
    one channel block."""
    from fscnn_tvm import targets

    target = targets.parse({"kind": "llvm", "mcpu": "znver4"})
    rows = lambda **kw: int(_oc_blocked_kernel(target, **{**dict(act="relu", bias=True, residual=False), **kw})[2]  # noqa: E731
                            .func.attrs["fscnn.prefetch_rows"])
    assert rows(cin=960, cout=160, k=1, hw=7) == 7
    assert rows(cin=960, cout=160, k=1, hw=7, batch=2) == 0
    assert rows(cin=1024, cout=256, k=1, hw=14) == 0  # 28 tiles: each block's weights stay in L2 long enough
    assert rows(cin=96, cout=160, k=1, hw=7) == 0  # 61 KB of weights: in L2 from the last run
    assert rows(cin=512, cout=32, k=3, hw=7) == 0  # one channel block: nothing to prefetch


ROW_LOOP_CASES = [  # (cin, cout, stride, pad, dilation, shape, kwargs): input rows of >= 6 vectors
    pytest.param(12, 12, 2, 1, 1, (2, 12, 9, 101), {"bn": True, "act": "relu6"}, id="stride2-odd-batch2"),
    pytest.param(10, 10, 1, 2, 2, (1, 10, 7, 98), {"residual": True, "act": "none"}, id="dilation2-residual"),
    pytest.param(8, 8, 3, 1, 1, (1, 8, 5, 113), {"bias": False}, id="stride3-nobias"),
    pytest.param(8, 16, 2, 1, 1, (1, 8, 6, 100), {}, id="multiplier2"),
]


@pytest.mark.parametrize("mcpu", ["znver3", "znver4"])
@pytest.mark.parametrize("cin,cout,stride,pad,dil,shape,kw", ROW_LOOP_CASES)
def test_depthwise_row_loop_matches_torch(compare, mcpu, cin, cout, stride, pad, dil, shape, kw):
    """3x3 depthwise convs on wide rows run as LLVM-vectorised row loops with the padding
    inlined (schedules/x86/conv2d.schedule_spatial_rows): strides 1-3, dilation, odd widths,
    a channel multiplier, batch 2, each epilogue."""
    from fscnn_tvm import kernels, kinds, targets
    from fscnn_tvm.layer import conv_layer

    target = {"kind": "llvm", "mcpu": mcpu}
    spec = Conv2dSpec(shape[0], cin, shape[2], shape[3], cout, (3, 3), stride=(stride, stride),
                      padding=(pad,) * 4, dilation=(dil, dil), groups=cin)
    kernel = kernels.build_kernel(conv_layer(spec, np.ones((cout, 1, 3, 3), "float32")), kinds.DENSE,
                                  targets.parse(target))
    assert kernel.func.attrs[KERNEL_ATTR] == Compute.CONV2D_SPATIAL and int(kernel.func.attrs["fscnn.row_loop"])
    compare(randomize_(conv_block(cin, cout, 3, stride, pad, dil, cin, **kw)), shape, target=target)


def test_depthwise_row_loop_rule():
    """Row loops for 3x3 depthwise convs on input rows of 6 vectors or more, by the target's
    vector width; tiles for 5x5 kernels, narrower rows and convs of several channels a group."""
    from fscnn_tvm.schedules.x86.rules import depthwise_row_loop

    def dw(c, hw, k=3, stride=1, groups=None):
        return Conv2dSpec(1, c, hw, hw, c, (k, k), stride=(stride, stride), padding=(k // 2,) * 4,
                          groups=groups or c)

    assert depthwise_row_loop(dw(96, 112, stride=2), 16) and depthwise_row_loop(dw(96, 112, stride=2), 8)
    assert depthwise_row_loop(dw(144, 56), 8) and not depthwise_row_loop(dw(144, 56), 16)
    assert not depthwise_row_loop(dw(192, 28), 8)
    assert not depthwise_row_loop(dw(72, 112, k=5), 16)
    assert not depthwise_row_loop(dw(64, 112, groups=32), 16)  # two input channels a group


@pytest.mark.parametrize("mcpu", ["znver3", "znver4"])
@pytest.mark.parametrize("cin,stride,dil,shape,kw", [
    pytest.param(12, 1, 1, (2, 12, 7, 7), {"residual": True, "act": "relu6"}, id="7x7-batch2-residual"),
    pytest.param(7, 2, 1, (1, 7, 14, 14), {"bn": True}, id="stride2-seven-channels"),
    pytest.param(20, 1, 2, (3, 20, 9, 11), {"bias": False, "act": "none"}, id="dilation2-batch3"),
])
def test_depthwise_small_planes_padded_in_groups(compare, mcpu, cin, stride, dil, shape, kw):
    """Depthwise convs on small maps pad several planes before sweeping them (rules.pad_plane_
    group; a group within one image): batch > 1, a prime channel count, stride, dilation."""
    from fscnn_tvm.schedules.x86.rules import pad_plane_group

    assert pad_plane_group(4 * (shape[2] + 2 * dil) * (shape[3] + 16), cin) > 1
    compare(randomize_(conv_block(cin, cin, 3, stride, dil, dil, cin, **kw)), shape,
            target={"kind": "llvm", "mcpu": mcpu})


def test_pad_plane_group_rule():
    """As many planes as fit 16 KB, at most 16, a divisor of the channel count; one large plane."""
    from fscnn_tvm.schedules.x86.rules import pad_plane_group

    assert pad_plane_group(648, 960) == 16  # 960@7: 9 x 18 floats
    assert pad_plane_group(1152, 384) == 12  # 14 planes fit; 12 divides 384
    assert pad_plane_group(4096, 192) == 4
    assert pad_plane_group(648, 7) == 7
    assert pad_plane_group(58 * 66 * 4, 144) == 1  # 56x56: one plane


def test_pointwise_chunk_rule():
    """The chunked pointwise order: widening layers or large output buffers, not on AMD cores,
    chunks of whole tiles whose input fits half of L2."""
    from fscnn_tvm.schedules.x86.rules import pointwise_chunk

    widen = Conv2dSpec(1, 64, 56, 56, 256, (1, 1))  # 49 tiles of 64 pixels
    assert pointwise_chunk(widen, 64, 6, 48 << 10, 2 << 20, "rocketlake") == 49
    assert pointwise_chunk(widen, 64, 6, 48 << 10, 2 << 20, "znver5") == 0
    narrow = Conv2dSpec(1, 256, 56, 56, 64, (1, 1))
    assert pointwise_chunk(narrow, 64, 6, 48 << 10, 2 << 20, "rocketlake") == 0
    deep = Conv2dSpec(1, 1024, 16, 16, 256, (1, 1))
    chunk = pointwise_chunk(deep, 64, 6, 48 << 10, 1 << 20, "haswell")  # 1 MB L2: 2 of 4 tiles
    assert chunk == 2 and 4 * 1024 * 64 * chunk <= 512 << 10


@pytest.mark.parametrize("cin, cout, shape", [(16, 96, (2, 16, 16, 16)), (40, 136, (1, 40, 8, 12))])
def test_pointwise_chunked_matches_torch(compare, cin, cout, shape):
    """The chunked pointwise order (an Intel mcpu; AVX2 so that it runs on every machine here),
    batch 2, channels not multiples of the tile, against torch."""
    target = {"kind": "llvm", "mcpu": "haswell"}
    compiled = compare(randomize_(conv_block(cin, cout, 1, bn=True)), shape, target=target)
    assert [row.kernel for row in compiled.plan] == ["dense"]
    from fscnn_tvm import kernels, targets
    from fscnn_tvm.layer import conv_layer

    spec = Conv2dSpec(*shape[:2], *shape[2:], cout, (1, 1))
    w = np.zeros((cout, cin, 1, 1), "float32")
    kernel = kernels.build_kernel(conv_layer(spec, w), "dense", targets.parse(target))
    assert int(kernel.func.attrs["fscnn.pixel_chunk"]) > 0


@pytest.mark.parametrize("cin, cout, shape, kw", [
    pytest.param(200, 40, (2, 200, 14, 28), {"bn": True}, id="49-vectors-batch2-odd-tile"),
    pytest.param(192, 192, (1, 192, 7, 8), {"residual": True, "act": "relu6"}, id="7-vectors-residual"),
])
def test_pointwise_seven_vectors_in_chunks_matches_torch(compare, cin, cout, shape, kw):
    """A narrowing 1x1 on a map of 7 x odd vectors gets the 7-vector tile with its reduction in
    chunks (rules.pointwise_k_chunk; AVX2 so that it runs on every machine here): channels not
    multiples of the 3-channel tile, a chunk that is not a power of two, batch 2, residual."""
    target = {"kind": "llvm", "mcpu": "haswell"}
    from fscnn_tvm import kernels, targets
    from fscnn_tvm.layer import conv_layer

    spec = Conv2dSpec(*shape[:2], *shape[2:], cout, (1, 1))
    kernel = kernels.build_kernel(conv_layer(spec, np.zeros((cout, cin, 1, 1), "float32")), "dense",
                                  targets.parse(target))
    assert int(kernel.func.attrs["fscnn.ow_tile"]) == 7 * 8
    chunk = int(kernel.func.attrs["fscnn.k_chunk"])
    assert 16 <= chunk < cin and cin % chunk == 0
    compiled = compare(randomize_(conv_block(cin, cout, 1, **kw)), shape, target=target)
    assert [row.kernel for row in compiled.plan] == ["dense"]


def test_pointwise_k_chunk_rule():
    """Chunks only for the 7-vector tile, the largest divisor of IC within 2/3 of L1."""
    from fscnn_tvm.schedules.x86.rules import pointwise_k_chunk, pointwise_tile

    narrow = Conv2dSpec(1, 512, 28, 28, 128, (1, 1))
    assert pointwise_tile(narrow, 16) == (3, 112)
    assert pointwise_k_chunk(narrow, 112, 16, 48 << 10) == 64
    assert pointwise_k_chunk(Conv2dSpec(1, 480, 28, 28, 96, (1, 1)), 112, 16, 48 << 10) == 60
    assert pointwise_k_chunk(Conv2dSpec(1, 64, 28, 28, 64, (1, 1)), 112, 16, 48 << 10) == 0  # fits
    assert pointwise_tile(Conv2dSpec(1, 128, 28, 28, 512, (1, 1)), 16) == (16, 16)  # widening
    assert pointwise_k_chunk(Conv2dSpec(1, 256, 56, 56, 64, (1, 1)), 64, 16, 48 << 10) == 0


PACKED_CASES = [  # (batch, cin, cout, hw, stride, pad, (oc_tile, columns), act, residual)
    pytest.param(1, 64, 96, 14, 1, 0, (12, 16), "relu", True, id="14x14-tail-residual"),
    pytest.param(2, 40, 37, 7, 1, 0, (12, 16), "relu6", False, id="7x7-batch2-oc37"),
    pytest.param(1, 32, 64, 56, 2, 0, (12, 16), "relu", True, id="stride2-downsample"),
    pytest.param(4, 24, 20, 15, 2, 0, (6, 32), "none", False, id="stride2-odd-batch4"),
    pytest.param(1, 16, 24, 9, 3, 1, (8, 16), "relu", False, id="stride3-padded"),
    pytest.param(1, 8, 5, 1, 1, 0, (12, 16), "relu", False, id="one-pixel"),
    pytest.param(1, 1, 16, 10, 2, 0, (12, 16), "relu", True, id="one-input-channel"),
    pytest.param(1, 24, 48, 16, 1, 0, (6, 64), "none", True, id="whole-vectors"),
]


@pytest.mark.parametrize("batch,cin,cout,hw,stride,pad,tile,act,residual", PACKED_CASES)
def test_pointwise_packed_matches_torch(batch, cin, cout, hw, stride, pad, tile, act, residual):
    """The packed 1x1 GEMM (gathered panels: strided, padded, maps not whole vectors, a padded
    last panel) against torch, forced by its knob at several tiles."""
    import tvm

    from fscnn_tvm import kernels, targets
    from fscnn_tvm.layer import conv_layer
    from fscnn_tvm.schedules import schedule_func
    from fscnn_tvm.testing import TOLERANCE, relative_error

    target = targets.parse("llvm")
    spec = Conv2dSpec(batch, cin, hw, hw, cout, (1, 1), (stride, stride), (pad,) * 4)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin, 1, 1)).astype("float32")
    layer = conv_layer(spec, w, act=act)
    layer.bias = rng.standard_normal(cout).astype("float32")
    layer.residual = object() if residual else None  # the builder only asks whether there is one
    kernel = kernels.build_kernel(layer, "dense", target, {"pointwise_tile": tile})
    assert kernel.func.attrs[KERNEL_ATTR] == Compute.CONV2D_POINTWISE_PACKED
    lib = tvm.compile(kernel.module(schedule_func(kernel.func, target)), target)
    x = rng.standard_normal(layer.in_shape).astype("float32")
    res = rng.standard_normal(spec.out_shape).astype("float32")
    in_shape, out_shape = kernel.shapes(layer)
    args = [x.reshape(in_shape), *kernel.constants] + ([res.reshape(out_shape)] if residual else [])
    tensors = [tvm.runtime.tensor(a) for a in args + [np.full(out_shape, np.nan, "float32")]]
    lib(*tensors)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(layer.bias),
                                     stride=stride, padding=pad)
    ref = ref + torch.from_numpy(res) if residual else ref
    ref = {"relu": torch.relu, "relu6": lambda t: torch.clamp(t, 0, 6), "none": lambda t: t}[act](ref)
    err = relative_error(tensors[-1].numpy().reshape(spec.out_shape), ref.numpy())
    assert err <= TOLERANCE, f"relative error {err:.2e}"


def test_packed_pointwise_rule():
    """The packed GEMM takes the 1x1s the plain one does not whose input outgrows half of L2."""
    from fscnn_tvm.schedules.x86.rules import packed_pointwise_tile

    downsample = Conv2dSpec(1, 256, 56, 56, 512, (1, 1), stride=(2, 2))  # 3.2 MB of input
    assert packed_pointwise_tile(downsample, 16, 2 << 20) == (12, 16)
    assert conv_tile(downsample, 16, l2_bytes=2 << 20) == ("conv2d_pointwise_packed", 16, 12)
    assert conv_tile(downsample, 16)[0] == "conv2d_oc_blocked"  # no cache sizes: the direct tile
    assert packed_pointwise_tile(downsample, 16, 8 << 20) is None  # fits half of L2
    small = Conv2dSpec(1, 1024, 14, 14, 2048, (1, 1), stride=(2, 2))  # 0.8 MB
    assert packed_pointwise_tile(small, 16, 2 << 20) is None
    whole = Conv2dSpec(1, 256, 56, 56, 64, (1, 1))  # the plain pointwise GEMM's
    assert packed_pointwise_tile(whole, 16, 1 << 20) is None
    odd_map = Conv2dSpec(1, 2048, 14, 14, 256, (1, 1))  # stride 1: oc_blocked measured faster
    assert packed_pointwise_tile(odd_map, 16, 1 << 20) is None
    assert packed_pointwise_tile(Conv2dSpec(1, 256, 56, 56, 256, (3, 3)), 16, 1 << 20) is None


def test_packed_pointwise_in_a_model(compare):
    """A downsample whose input outgrows half of L2 (haswell's 256 KB: AVX2, runs on every machine
    here) compiles onto the packed GEMM in a model, batch 2, and matches torch."""
    from fscnn_tvm import kernels, targets
    from fscnn_tvm.layer import conv_layer

    target = {"kind": "llvm", "mcpu": "haswell"}
    shape = (2, 40, 30, 30)  # 144 KB of input per image: past half of 256 KB
    compiled = compare(randomize_(conv_block(40, 56, 1, stride=2, bn=True)), shape, target=target)
    assert [row.kernel for row in compiled.plan] == ["dense"]
    spec = Conv2dSpec(*shape[:2], *shape[2:], 56, (1, 1), stride=(2, 2))
    kernel = kernels.build_kernel(conv_layer(spec, np.zeros((56, 40, 1, 1), "float32")), "dense",
                                  targets.parse(target))
    assert kernel.func.attrs[KERNEL_ATTR] == Compute.CONV2D_POINTWISE_PACKED
