"""Winograd F(m x m, 3 x 3) kernels (ops/winograd.py, schedules/x86/winograd.py) against torch.

Kernels are built and run on their own (every tile size, epilogue, odd shapes, batch 4), then in
compiled models where the planner chooses them; the opt-out keeps the direct kernel.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import tvm

import fscnn_tvm
from fscnn_tvm import kernels, plan, profiles, targets
from fscnn_tvm.layer import conv_layer
from fscnn_tvm.ops import winograd
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.schedules import schedule_func
from fscnn_tvm.testing import TOLERANCE, check_against_torch, conv_block, randomize_, relative_error

TARGET = targets.parse("llvm")
ACT = {"none": lambda t: t, "relu": torch.relu, "relu6": lambda t: torch.clamp(t, 0, 6),
       "silu": torch.nn.functional.silu}
_RESIDUAL = object()  # the kernel builder only asks whether the layer has a residual input


def run_kernel(spec: Conv2dSpec, kind: str, act: str, residual: bool, seed: int = 0, knobs=None, target=TARGET):
    """(output, torch reference) of ``kind``'s kernel for ``spec`` on seeded random data."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((spec.out_channels, spec.in_channels, 3, 3)).astype("float32") * 0.1
    layer = conv_layer(spec, w, act=act)
    layer.bias = rng.standard_normal(spec.out_channels).astype("float32")
    layer.residual = _RESIDUAL if residual else None
    kernel = kernels.build_kernel(layer, kind, target, knobs)
    lib = tvm.compile(tvm.IRModule({"main": schedule_func(kernel.func, target)}), target)
    x = rng.standard_normal(layer.in_shape).astype("float32")
    res = rng.standard_normal(spec.out_shape).astype("float32") if residual else None
    out = np.zeros(spec.out_shape, "float32")
    args = [x, *kernel.constants] + ([res] if residual else []) + [out]
    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(layer.bias),
                                     padding=(spec.padding[0], spec.padding[1]))
    if residual:
        ref = ref + torch.from_numpy(res)
    return tensors[-1].numpy(), ACT[act](ref).numpy()


CASES = [  # (kind, batch, cin, cout, h, w, pad, act, residual)
    pytest.param("winograd4", 1, 64, 64, 28, 28, 1, "relu", False, id="f4-vgg-like"),
    pytest.param("winograd4", 4, 20, 36, 13, 11, 1, "none", True, id="f4-batch4-odd-residual"),
    pytest.param("winograd4", 1, 24, 40, 3, 2, 1, "relu6", False, id="f4-map-smaller-than-tile"),
    pytest.param("winograd4", 2, 17, 5, 9, 30, 0, "silu", True, id="f4-nopad-oc5-silu"),
    pytest.param("winograd4", 1, 512, 512, 7, 7, 1, "relu", True, id="f4-deep-7x7"),
    pytest.param("winograd2", 1, 64, 64, 14, 14, 1, "relu", True, id="f2-resnet-like"),
    pytest.param("winograd2", 4, 9, 33, 5, 7, 1, "relu6", False, id="f2-batch4-odd"),
    pytest.param("winograd2", 1, 32, 16, 1, 1, 1, "none", False, id="f2-1x1-map"),
    pytest.param("winograd6", 1, 48, 32, 20, 17, 1, "relu", True, id="f6"),
    pytest.param("winograd6", 2, 16, 24, 6, 5, 1, "silu", False, id="f6-batch2-small"),
]


@pytest.mark.parametrize("kind,batch,cin,cout,h,w,pad,act,residual", CASES)
def test_winograd_kernel_matches_torch(kind, batch, cin, cout, h, w, pad, act, residual):
    spec = Conv2dSpec(batch, cin, h, w, cout, (3, 3), padding=(pad,) * 4)
    out, ref = run_kernel(spec, kind, act, residual)
    assert out.shape == ref.shape
    err = relative_error(out, ref)
    assert err <= TOLERANCE, f"{kind}: relative error {err:.2e}"


@pytest.mark.skipif("avx2" not in open("/proc/cpuinfo").read(), reason="needs an AVX2 CPU to run AVX2 code")
def test_winograd_avx2_layout_matches_torch():
    """The AVX2 rules (8 lanes, 16 registers: a smaller GEMM register tile) on an AVX2 target;
    AVX2 code runs on any AVX2 or AVX-512 machine."""
    avx2 = targets.parse({"kind": "llvm", "mcpu": "znver3"})
    spec = Conv2dSpec(2, 24, 19, 23, 40, (3, 3), padding=(1, 1, 1, 1))
    for kind in ("winograd2", "winograd4"):
        out, ref = run_kernel(spec, kind, "relu", True, target=avx2)
        assert relative_error(out, ref) <= TOLERANCE, kind


@pytest.mark.parametrize("knobs", [{"p_tile": 5}, {"block_rows": 1}, {"block_rows": 7, "p_tile": 3}, {"p_tile": 7}])
def test_winograd_knobs_keep_results(knobs):
    """Every tuned configuration (register tile, tile rows per block) computes the same conv."""
    spec = Conv2dSpec(1, 32, 28, 26, 48, (3, 3), padding=(1, 1, 1, 1))
    out, ref = run_kernel(spec, "winograd4", "relu", True, knobs=knobs)
    assert relative_error(out, ref) <= TOLERANCE


def test_winograd_zero_and_nan_inputs():
    """All-zero weights and inputs give the bias. A NaN in the input stays NaN in every output
    PyTorch makes NaN; Winograd also spreads it over the output tiles whose input tile holds it
    (the documented numerics difference; ``winograd=False`` opts out)."""
    spec = Conv2dSpec(1, 16, 8, 8, 16, (3, 3), padding=(1, 1, 1, 1))
    layer = conv_layer(spec, np.zeros((16, 16, 3, 3), "float32"), act="relu")
    layer.bias = np.arange(16, dtype="float32") - 8
    kernel = kernels.build_kernel(layer, "winograd4", TARGET)
    lib = tvm.compile(tvm.IRModule({"main": schedule_func(kernel.func, TARGET)}), TARGET)
    x = np.zeros(layer.in_shape, "float32")
    args = [tvm.runtime.tensor(a) for a in [x, *kernel.constants, np.zeros(spec.out_shape, "float32")]]
    lib(*args)
    expected = np.broadcast_to(np.maximum(layer.bias, 0)[:, None, None], (16, 8, 8))
    np.testing.assert_array_equal(args[-1].numpy()[0], expected)
    x[0, 3, 0, 0] = np.nan  # padded (1, 1): in the input tile of output tile (0, 0) only
    args[0] = tvm.runtime.tensor(x)
    lib(*args)
    out = args[-1].numpy()[0]
    assert np.isnan(out[:, :2, :2]).all()  # PyTorch's NaN outputs
    tile = np.zeros((8, 8), bool)
    tile[:4, :4] = True
    np.testing.assert_array_equal(out[:, ~tile], expected[:, ~tile])


def test_supports_names_the_reason():
    base = dict(batch=1, in_channels=16, height=8, width=8, out_channels=16)
    assert winograd.supports(Conv2dSpec(**base, kernel=(3, 3))) is None
    assert "stride" in winograd.supports(Conv2dSpec(**base, kernel=(3, 3), stride=(2, 2)))
    assert "5x5" in winograd.supports(Conv2dSpec(**base, kernel=(5, 5)))
    assert "dilation" in winograd.supports(Conv2dSpec(**base, kernel=(3, 3), dilation=(2, 2)))
    assert "groups" in winograd.supports(Conv2dSpec(**{**base, "out_channels": 16}, kernel=(3, 3), groups=4))
    assert "input channels" in winograd.supports(Conv2dSpec(**{**base, "in_channels": 3}, kernel=(3, 3)))
    with pytest.raises(ValueError, match="stride"):
        winograd.winograd_conv2d(winograd.WinogradLayout(
            Conv2dSpec(**base, kernel=(3, 3), stride=(2, 2)), 4, 16, 8))


def _builtin():
    return profiles.builtin_profile(TARGET)


def test_model_with_winograd_layers_matches_torch():
    """A small CNN: the planner takes Winograd for its 3x3 stride-1 layers (not the RGB stem, not
    the stride-2 conv); batch 2, odd sizes, BN and a residual."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_block(3, 32, 3, padding=1)
            self.a = conv_block(32, 64, 3, padding=1, bn=True)
            self.b = conv_block(64, 64, 3, padding=1, act="none")
            self.down = conv_block(64, 64, 3, stride=2, padding=1)

        def forward(self, x):
            y = self.a(self.stem(x))
            return self.down(torch.relu(self.b(y) + y))

    compiled = check_against_torch(randomize_(Net()), (2, 3, 37, 29), profile=_builtin())
    kinds = {r.name: r.kernel for r in compiled.plan}
    assert not kinds["stem.conv"].startswith("winograd") and not kinds["down.conv"].startswith("winograd")
    assert kinds["a.conv"].startswith("winograd") and kinds["b.conv"].startswith("winograd"), kinds
    b_row = next(r for r in compiled.plan if r.name == "b.conv")
    assert b_row.epilogue == "bias+residual+relu" and b_row.reason.startswith(b_row.kernel)


def test_opt_out_keeps_direct_convolution():
    block = randomize_(conv_block(64, 64, 3, padding=1))
    compiled = check_against_torch(block, (1, 64, 28, 28), profile=_builtin())
    assert compiled.plan[0].kernel.startswith("winograd")
    direct = fscnn_tvm.compile(block, (1, 64, 28, 28), profile=_builtin(), winograd=False)
    assert direct.plan[0].kernel == "dense"
    assert not any(k.startswith("winograd") for k in direct.plan[0].predicted_ms)


def test_choice_is_monotone_with_winograd_the_dense_alternative():
    """As the weight gets sparser the choice moves once, from Winograd to CSR, at the break-even
    sparsity the reason gives (which is higher than against the direct kernel)."""
    spec = Conv2dSpec(1, 128, 56, 56, 128, (3, 3), padding=(1, 1, 1, 1))
    base = np.random.default_rng(0).standard_normal((128, 128, 3, 3)).astype("float32")
    order = np.argsort(np.abs(base), axis=None)
    prof = _builtin()
    chosen = []
    for sp in np.arange(0, 1.0, 0.05):
        w = base.copy().reshape(-1)
        w[order[:int(round(sp * w.size))]] = 0
        chosen.append(plan.choose(conv_layer(spec, w.reshape(base.shape)), prof))
    kinds = [c.kind for c in chosen]
    assert kinds[0].startswith("winograd") and kinds[-1] == "csr"
    assert sum(a != b for a, b in zip(kinds, kinds[1:])) == 1, kinds
    even = chosen[0].break_even
    assert f"csr pays above sparsity {even:.2f} against {kinds[0]}" in chosen[0].reason
    against_direct = plan.break_even(conv_layer(spec, base), "csr", prof)
    assert even > against_direct


def test_cli_no_winograd():
    command = [sys.executable, "-m", "fscnn_tvm.cli", "explain", "vgg16", "--input-shape", "1,3,32,32"]
    done = subprocess.run(command + ["--no-winograd"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "winograd" not in done.stdout
    with_it = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert with_it.returncode == 0, with_it.stderr
    assert "winograd4" in with_it.stdout
