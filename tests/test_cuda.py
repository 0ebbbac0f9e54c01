"""CUDA: every kernel and whole zoo models build for sm_80 and sm_90 on a machine without a GPU;
the generated code is checked (kernels present, shared memory used, no register spills when
nvcc is installed). The tests at the end run on a GPU and skip without one."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import tvm
from torch import nn

import fscnn_tvm
from fscnn_tvm.testing import check_against_torch, conv_block, randomize_, sparsify_
from fscnn_tvm import models, perf_model, plan, profiles, prune, targets
from fscnn_tvm.errors import ModelLoadError

ARCHS = ["sm_80", "sm_90"]
HAS_GPU = tvm.cuda().exist
NVCC = shutil.which("nvcc")

KERNEL_CASES = [
    # (cin, cout, k, stride, pad, groups, hw, batch, kwargs, sparsity, block)
    pytest.param(32, 48, 3, 1, 1, 1, 14, 1, {}, 0.9, None, id="csr-3x3"),
    pytest.param(48, 48, 3, 1, 1, 1, 9, 2, {"residual": True}, 0.9, None, id="csr-3x3-residual-batch2"),
    pytest.param(32, 64, 1, 1, 0, 1, 16, 1, {"act": "none"}, 0.9, None, id="csr-1x1-in-place"),
    pytest.param(16, 32, 3, 2, 1, 1, 15, 1, {"act": "relu6"}, 0.9, None, id="csr-3x3-stride2"),
    pytest.param(32, 64, 3, 1, 1, 1, 14, 1, {}, 0.8, (8, 1), id="bsr8-3x3"),
    pytest.param(3, 64, 7, 2, 3, 1, 33, 1, {"bn": True}, 0.0, None, id="dense-7x7-stride2"),
    pytest.param(32, 32, 3, 1, 1, 32, 14, 1, {}, 0.0, None, id="dense-depthwise"),
    pytest.param(32, 64, 3, 1, 1, 4, 14, 1, {}, 0.0, None, id="dense-grouped"),
]


def _block(cin, cout, k, stride, pad, groups, kw, sparsity, block):
    module = randomize_(conv_block(cin, cout, k, stride, pad, groups=groups, **kw))
    if block is not None:
        prune.magnitude(module, sparsity, skip_first_conv=False, block=block)
    elif sparsity:
        sparsify_(module, sparsity)
    return module.eval()


def _spills(source: str, arch: str, tmp_path) -> dict[str, int]:
    """Spill bytes per kernel reported by ptxas for ``source``."""
    cu = tmp_path / "kernels.cu"
    cu.write_text(source)
    done = subprocess.run([NVCC, f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-o", str(tmp_path / "k.cubin"),
                           str(cu)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = re.findall(r"Compiling entry function '(\w+)'", done.stderr)
    spills = [int(a) + int(b) for a, b in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", done.stderr)]
    assert names and len(names) == len(spills)
    return dict(zip(names, spills))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cin,cout,k,stride,pad,groups,hw,batch,kw,sparsity,block", KERNEL_CASES)
def test_conv_kernels_build(arch, cin, cout, k, stride, pad, groups, hw, batch, kw, sparsity, block, tmp_path):
    module = _block(cin, cout, k, stride, pad, groups, kw, sparsity, block)
    compiled = fscnn_tvm.compile(module, input_shape=(batch, cin, hw, hw), target={"kind": "cuda", "arch": arch},
                                 sparse="always" if sparsity else "never")
    row = compiled.plan[0]
    expected = "dense" if sparsity == 0 or groups > 1 else ("bsr8" if block else "csr")
    assert row.kernel == expected
    src = compiled.device_source()
    hot = re.search(r"__global__ void __launch_bounds__\(128\) (\w+)\([^)]*\) \{(.*?)\n\}", src, re.S)
    assert hot, "no 128-thread conv kernel in the generated CUDA"
    body = hot.group(2)
    assert "__shared__" in body and "__syncthreads()" in body  # nonzeros staged in shared memory
    assert "for (int j = 0; j <" in body  # the data-dependent sweep over a row's nonzeros
    if NVCC:
        spills = _spills(src, arch, tmp_path)
        assert spills[hot.group(1)] == 0, spills


@pytest.mark.parametrize("sparse", [True, False])
def test_linear_kernels_build(sparse, tmp_path):
    model = randomize_(nn.Sequential(nn.Linear(300, 70), nn.ReLU(), nn.Linear(70, 10)))
    if sparse:
        sparsify_(model, 0.9)
    compiled = fscnn_tvm.compile(model.eval(), input_shape=(2, 300), target="cuda",
                                 sparse="always" if sparse else "never")
    assert [r.kernel for r in compiled.plan] == (["csr", "csr"] if sparse else ["dense", "dense"])
    src = compiled.device_source()
    assert src.count("__launch_bounds__(128)") >= 2 and "__shared__" in src
    if NVCC:
        assert not any(_spills(src, "sm_90", tmp_path).values())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("spec", ["resnet18@0.9", "mobilenet_v2@0.9", "vgg16@0.9:8x1"])
def test_zoo_model_builds_and_exports(spec, arch, tmp_path):
    compiled = fscnn_tvm.compile(models.from_spec(spec), input_shape=(1, 3, 32, 32),
                                 target={"kind": "cuda", "arch": arch}, sparse="auto")
    kinds = {r.kernel for r in compiled.plan}
    assert kinds & {"csr", "bsr8"}, compiled.explain()
    assert compiled.meta["target"]["kind"] == "cuda"
    path = compiled.export_library(str(tmp_path / "model.so"))
    assert (tmp_path / "model.so").stat().st_size > 0
    if not HAS_GPU:
        with pytest.raises(ModelLoadError, match="cuda"):
            compiled(np.zeros((1, 3, 32, 32), np.float32))
        with pytest.raises(ModelLoadError, match="built for CUDA"):
            fscnn_tvm.load(path, device="cuda")


def test_cuda_profile_is_builtin_and_decides():
    profile = profiles.builtin_profile(targets.parse("cuda"))
    assert profile.target == "cuda-sm90" and set(profile.coefficients) == set(perf_model.CUDA_COEFFICIENTS)
    from fscnn_tvm.layer import conv_layer
    from fscnn_tvm.ops.conv2d import Conv2dSpec

    spec = Conv2dSpec(1, 256, 56, 56, 256, (3, 3), padding=(1, 1, 1, 1))
    w = np.random.default_rng(0).standard_normal((256, 256, 3, 3)).astype("float32")
    assert plan.choose(conv_layer(spec, w), profile).kind == "dense"
    w *= prune.magnitude_mask(w, 0.95)
    assert plan.choose(conv_layer(spec, w), profile).kind == "csr"


def test_cuda_profile_file_round_trip(tmp_path):
    profile = profiles.builtin_profile(targets.parse("cuda"))
    path = profile.save(tmp_path / "profile.json")
    assert profiles.load_profile("cuda", path).coefficients == profile.coefficients
    with pytest.raises(profiles.ProfileError, match="not cuda-sm80"):
        profiles.load_profile({"kind": "cuda", "arch": "sm_80"}, path)


# ------------------------------------------------------------------ on a GPU

gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU on this machine")


@gpu
@pytest.mark.parametrize("cin,cout,k,stride,pad,groups,hw,batch,kw,sparsity,block", KERNEL_CASES)
def test_conv_kernels_on_gpu(cin, cout, k, stride, pad, groups, hw, batch, kw, sparsity, block):
    check_against_torch(_block(cin, cout, k, stride, pad, groups, kw, sparsity, block), (batch, cin, hw, hw),
                        sparse="always" if sparsity else "never", target="cuda")


@gpu
@pytest.mark.parametrize("spec", ["vgg16", "vgg16@0.9", "resnet50", "resnet50@0.9", "mobilenet_v2@0.9"])
def test_zoo_models_on_gpu(spec):
    check_against_torch(models.from_spec(spec), (1, 3, 64, 64), target="cuda")
