"""The Relax rewrite: which bindings each layer absorbs, and that every layer gets its kernel."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fscnn_tvm.testing import check_against_torch, randomize_
from fscnn_tvm import frontend, passes


class Downsample(nn.Module):
    """Two convs meet at one residual add (a ResNet downsample block)."""

    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16))
        self.down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))

    def forward(self, x):
        return torch.relu(self.main(x) + self.down(x))


def test_residual_add_claimed_by_one_layer_only():
    model = randomize_(Downsample())
    imported = frontend.import_model(model, (1, 8, 10, 10))
    layers = passes.find_layers(imported.mod, imported.layer_names)
    assert len(layers) == 2
    a, b = (set(layer.absorbed) for layer in layers)
    assert not a & b
    assert sorted(layer.residual is not None for layer in layers) == [False, True]
    assert {layer.name for layer in layers} == {"main.0", "down.0"}
    check_against_torch(model, (1, 8, 10, 10))


def test_batch_norm_after_biased_conv_is_folded():
    model = randomize_(nn.Sequential(nn.Conv2d(4, 8, 3, bias=True), nn.BatchNorm2d(8), nn.ReLU()))
    imported = frontend.import_model(model, (1, 4, 6, 6))
    (layer,) = passes.find_layers(imported.mod)
    assert layer.act == "relu" and layer.bias is not None
    check_against_torch(model, (1, 4, 6, 6))


class _Doubled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return torch.relu(y + y)


def test_value_added_to_itself_is_not_a_residual():
    model = randomize_(_Doubled())
    (layer,) = passes.find_layers(frontend.import_model(model, (1, 4, 6, 6)).mod)
    assert layer.residual is None
    check_against_torch(model, (1, 4, 6, 6))


class _Tokens(torch.nn.Module):
    """Linear layers over (batch, tokens, features), as in a recogniser's head or a transformer."""

    def __init__(self, residual: bool):
        super().__init__()
        self.a, self.b = torch.nn.Linear(12, 12), torch.nn.Linear(12, 7, bias=False)
        self.residual = residual

    def forward(self, x):
        y = self.a(x)
        y = torch.relu(y + x) if self.residual else torch.relu(y)
        return self.b(y)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("shape", [(1, 5, 12), (2, 3, 12), (2, 2, 3, 12)])
@pytest.mark.parametrize("sparse", ["never", "always"])
def test_matmul_over_nd_input_runs_as_our_linear(tmp_path, shape, residual, sparse):
    """ONNX keeps MatMul over (..., K) inputs (torch.export flattens them itself): each runs as
    our linear over the flattened leading dims, with its bias, residual and ReLU fused."""
    import fscnn_tvm
    from fscnn_tvm.testing import TOLERANCE, random_input, relative_error, sparsify_, torch_reference

    model = sparsify_(randomize_(_Tokens(residual)), 0.5)
    path = tmp_path / "tokens.onnx"
    torch.onnx.export(model, (torch.zeros(shape),), str(path), input_names=["x"], dynamo=False)
    compiled = fscnn_tvm.compile(str(path), shape, sparse=sparse)
    x = random_input(shape)
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE
    rows = int(np.prod(shape[:-1]))
    assert [(r.op, r.in_shape) for r in compiled.plan] == [("linear", (rows, 12)), ("linear", (rows, 12))]
    assert compiled.plan[0].epilogue == ("bias+residual+relu" if residual else "bias+relu")


class _ConvSiLU(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y * torch.sigmoid(y)  # SiLU as ONNX exports it: y has two users


@pytest.mark.parametrize("form", ["module", "onnx"])
@pytest.mark.parametrize("sparse", ["never", "always"])
def test_silu_is_fused_into_the_kernel(tmp_path, form, sparse):
    import fscnn_tvm
    from fscnn_tvm.testing import TOLERANCE, random_input, relative_error, torch_reference

    shape = (1, 8, 9, 9)
    if form == "module":
        model = randomize_(torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.SiLU()))
        source = model
    else:
        model = randomize_(_ConvSiLU())
        source = str(tmp_path / "silu.onnx")
        torch.onnx.export(model, (torch.zeros(shape),), source, input_names=["x"], dynamo=False)
    compiled = fscnn_tvm.compile(source, shape, sparse=sparse)
    x = random_input(shape)
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE
    assert [r.epilogue for r in compiled.plan] == ["bias+silu"]


class _ConvHardswish(torch.nn.Module):
    """Conv + hardswish written out, in the order Paddle exports it: ``(y * clip(y + 3)) / 6``
    (torch's own and ONNX HardSwish give ``y * (clip(y + 3) / 6)``)."""

    def __init__(self, cin=8, cout=16, k=3, groups=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups)

    def forward(self, x):
        y = self.conv(x)
        return y * torch.clamp(y + 3, 0, 6) / 6


@pytest.mark.parametrize("form", ["module", "onnx", "paddle-order-onnx"])
@pytest.mark.parametrize("sparse", ["never", "always"])
def test_hardswish_is_fused_into_the_kernel(tmp_path, form, sparse):
    import fscnn_tvm
    from fscnn_tvm.testing import TOLERANCE, random_input, relative_error, torch_reference

    shape = (2, 8, 9, 9)
    if form == "paddle-order-onnx":
        model = randomize_(_ConvHardswish())
    else:
        model = randomize_(torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.Hardswish()))
    source = model
    if form != "module":
        source = str(tmp_path / "hardswish.onnx")
        torch.onnx.export(model, (torch.zeros(shape),), source, input_names=["x"], dynamo=False,
                          opset_version=17)
    compiled = fscnn_tvm.compile(source, shape, sparse=sparse)
    x = random_input(shape) * 4  # across both bends of the curve (-3 and 3)
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE
    assert [r.epilogue for r in compiled.plan] == ["bias+hardswish"]


def test_hardswish_fused_in_depthwise_winograd_and_pointwise(compare):
    """Every dense compute carries the hardswish epilogue: depthwise (spatial), Winograd
    (3x3 on a map wide enough for it) and the pointwise GEMM."""
    for model, shape in [(_ConvHardswish(16, 16, 3, groups=16), (1, 16, 20, 20)),
                         (_ConvHardswish(32, 32, 3), (1, 32, 40, 40)),
                         (_ConvHardswish(24, 40, 1), (1, 24, 16, 16))]:
        compiled = compare(randomize_(model), shape, sparse="never")
        assert [r.epilogue for r in compiled.plan] == ["bias+hardswish"]


def test_onnx_clip_with_constant_bounds_is_relu6_in_the_kernel(tmp_path):
    """ONNX Clip (opset 11+, bounds as inputs) with constant bounds imports as relax.clip, so
    ReLU6 fuses like it does from torch and a NaN input stays NaN, as in ONNX Runtime."""
    import fscnn_tvm
    from fscnn_tvm.testing import TOLERANCE, random_input, relative_error, torch_reference

    shape = (1, 8, 9, 9)
    model = randomize_(torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU6()))
    source = str(tmp_path / "relu6.onnx")
    torch.onnx.export(model, (torch.zeros(shape),), source, input_names=["x"], dynamo=False, opset_version=13)
    compiled = fscnn_tvm.compile(source, shape)
    assert [r.epilogue for r in compiled.plan] == ["bias+relu6"]
    x = random_input(shape) * 4
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE
    clip_only = torch.nn.Sequential(torch.nn.Hardtanh(-1.0, 2.0))
    source = str(tmp_path / "clip.onnx")
    torch.onnx.export(clip_only, (torch.zeros(shape),), source, input_names=["x"], dynamo=False, opset_version=13)
    x[0, 0, 0, 0] = np.nan
    out = fscnn_tvm.compile(source, shape)(x)
    assert np.isnan(out[0, 0, 0, 0]) and np.allclose(out[0, 0, 0, 1:], np.clip(x[0, 0, 0, 1:], -1, 2))
