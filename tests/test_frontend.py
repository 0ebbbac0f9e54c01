"""Import paths (.pt2, .onnx, modules) and their errors, each with its message."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import fscnn_tvm
from fscnn_tvm.testing import TOLERANCE, check_against_torch, randomize_
from fscnn_tvm import models
from fscnn_tvm.errors import ModelLoadError, UnsupportedOperatorError
from fscnn_tvm.testing import random_input, relative_error, torch_reference

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def small_model():
    return models.from_spec("resnet18@0.9")


def test_pt2_file(tmp_path, small_model):
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(small_model, (torch.zeros(SHAPE),)), str(path))
    compiled = fscnn_tvm.compile(str(path))
    x = random_input(SHAPE)
    assert relative_error(compiled(x), torch_reference(small_model, x)) <= TOLERANCE
    assert compiled.plan[1].name == "layer1.0.conv1"


def test_exported_program(small_model):
    ep = torch.export.export(small_model, (torch.zeros(SHAPE),))
    compiled = fscnn_tvm.compile(ep)
    x = random_input(SHAPE)
    assert relative_error(compiled(x), torch_reference(small_model, x)) <= TOLERANCE


def test_onnx_file(tmp_path):
    model = models.from_spec("mobilenet_v2@0.9")
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.zeros(SHAPE),), str(path), input_names=["x"], dynamo=False)
    compiled = fscnn_tvm.compile(str(path))
    x = random_input(SHAPE)
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE
    assert len(compiled.plan) == 53 and compiled.plan[0].name.endswith("Conv")


class _Graph(torch.nn.Module):
    """conv, pool, concat, flatten, sigmoid, mean: ops beyond the zoo."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 8, 1)
        self.fc = torch.nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        y = torch.cat([torch.sigmoid(self.a(x)), torch.nn.functional.avg_pool2d(self.b(x), 1)], 1)
        y = torch.nn.functional.max_pool2d(y, 2) - y.mean(dim=(2, 3), keepdim=True)[:, :, :4, :4]
        return self.fc(torch.flatten(y, 1)) * 0.5


def test_general_graph():
    check_against_torch(randomize_(_Graph()), (2, 3, 8, 8))


class _Unsupported(torch.nn.Module):
    def forward(self, x):
        return torch.lgamma(x) + torch.digamma(x)


def test_unsupported_ops_listed_at_once():
    with pytest.raises(UnsupportedOperatorError) as err:
        fscnn_tvm.compile(_Unsupported(), input_shape=(1, 4))
    assert "2 unsupported operator(s): digamma.default, lgamma.default" in str(err.value)


def test_onnx_unsupported_ops_listed(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    d = helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 4, 4])
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["d"]),
                               helper.make_node("Bernoulli", ["x"], ["b"])], "g", [x], [d, b])
    path = tmp_path / "bad_ops.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UnsupportedOperatorError, match=r"bad_ops.onnx: 2 unsupported operator\(s\): Bernoulli, Det"):
        fscnn_tvm.compile(str(path))


def test_missing_file():
    with pytest.raises(ModelLoadError, match="nope.pt2: no such file, and not a zoo model spec"):
        fscnn_tvm.compile("nope.pt2")


@pytest.mark.parametrize("suffix,message", [
    (".pt2", "not a readable torch.export .pt2 file"),
    (".onnx", "not a valid ONNX model"),
    (".bin", "unknown model format"),
])
def test_corrupt_files(tmp_path, suffix, message):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(ModelLoadError, match=message):
        fscnn_tvm.compile(str(path))


def test_module_needs_input_shape():
    with pytest.raises(ValueError, match="input_shape is required"):
        fscnn_tvm.compile(torch.nn.Linear(3, 3))


def test_bad_sparse_mode():
    with pytest.raises(ValueError, match="sparse must be one of"):
        fscnn_tvm.compile(torch.nn.Linear(3, 3), input_shape=(1, 3), sparse="sometimes")
