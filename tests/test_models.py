"""Every zoo model, dense and 90% pruned, compiled through the Python API against PyTorch."""
from __future__ import annotations

import pytest

from fscnn_tvm.testing import check_against_torch
from fscnn_tvm import models, prune

SHAPE = (1, 3, 64, 64)  # small input keeps CI fast; every layer type is still exercised


@pytest.mark.parametrize("sparsity", [0.0, 0.9])
@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_zoo_model_matches_torch(name, sparsity):
    model = models.from_spec(f"{name}@{sparsity}")
    compiled = check_against_torch(model, SHAPE)
    n_layers = len(prune.prunable_parameters(model))
    assert len(compiled.plan) == n_layers, "every conv/linear must be planned (none left to TVM)"
    if sparsity:
        assert compiled.plan[0].sparsity == 0.0  # first conv stays dense
        assert all(abs(r.sparsity - sparsity) < 0.01 for r in compiled.plan[1:])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16@0.9", "resnet50@0.9"])
def test_zoo_model_full_resolution(name):
    check_against_torch(models.from_spec(name), models.DEFAULT_INPUT_SHAPE)


def test_spec_parsing():
    assert models.is_spec("resnet50@0.9") and models.is_spec("vgg16") and models.is_spec("vgg16@0.9:8x1")
    assert not models.is_spec("resnet51@0.9") and not models.is_spec("model.onnx")
    with pytest.raises(ValueError, match="not a zoo model spec"):
        models.from_spec("resnet50@")
    with pytest.raises(ValueError, match="unknown zoo model 'lenet'"):
        models.create("lenet")


def test_deterministic_init():
    a, b = models.create("resnet18"), models.create("resnet18")
    assert all((pa == pb).all() for pa, pb in zip(a.state_dict().values(), b.state_dict().values()))


def test_torchvision_layout_names():
    keys = set(models.create("resnet50").state_dict())
    assert {"conv1.weight", "layer4.2.bn3.running_var", "fc.bias"} <= keys
    assert {"features.17.conv.1.0.weight", "features.18.0.weight"} <= set(models.create("mobilenet_v2").state_dict())
    assert "classifier.6.weight" in models.create("vgg16").state_dict()
