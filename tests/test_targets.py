"""Target parsing and tags."""
from __future__ import annotations

import pytest

from fscnn_tvm import targets


def test_host_and_explicit_targets():
    host = targets.parse("llvm")
    assert host.kind.name == "llvm" and host.attrs["mcpu"]
    t = targets.parse('{"kind": "llvm", "mcpu": "znver4", "num-cores": 1}')
    assert targets.tag(t) == "llvm-znver4" and targets.vector_lanes(t) == 16
    assert targets.vector_lanes(targets.parse({"kind": "llvm", "mcpu": "haswell"})) == 8
    assert targets.tag(targets.parse({"kind": "cuda", "arch": "sm_80"})) == "cuda-sm80"
    assert targets.tag(targets.parse("cuda")) == "cuda-sm90"


@pytest.mark.parametrize("bad,message", [
    ("tpu", "unknown target 'tpu'"),
    ("{not json", "not valid JSON"),
    ({"kind": "metal"}, "kind 'metal' is not supported"),
    ({"mcpu": "znver4"}, "expected a dict with a 'kind' key"),
])
def test_bad_targets(bad, message):
    with pytest.raises(ValueError, match=message):
        targets.parse(bad)


def test_caches_from_sysfs_and_for_other_cpus(tmp_path):
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                                 (2, "Unified", "1024K"), (3, "Unified", "32768K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    (tmp_path / "uevent").write_text("")  # as Linux has it beside the index folders
    assert targets.host_caches(str(tmp_path)) == targets.Caches(48 << 10, 1 << 20, 32 << 20)
    assert targets.host_caches(str(tmp_path / "missing")) is None
    cross = targets.parse({"kind": "llvm", "mcpu": "znver3"})
    if "znver3" != targets.parse("llvm").attrs["mcpu"]:  # not this machine: the known sizes
        assert targets.caches(cross) == targets.KNOWN_CACHES["znver3"]
    host = targets.caches(targets.parse("llvm"))
    assert 0 < host.l1 < host.l2 <= host.l3


def test_codegen_target_prefers_no_gathers_with_avx512():
    """AVX-512 modules compile with gathers and scatters discouraged, unless they hold a CSR
    linear (its input is gathered by column); AVX2 and CUDA targets are left as they are. A
    depthwise stride-2 conv on a small map then has no gather or scatter in its code, and still
    matches torch."""
    import numpy as np
    import torch
    import tvm

    from fscnn_tvm import fast_math, kernels, kinds
    from fscnn_tvm.layer import conv_layer, linear_layer
    from fscnn_tvm.ops.conv2d import Conv2dSpec
    from fscnn_tvm.schedules import schedule_func
    from fscnn_tvm.testing import TOLERANCE, relative_error

    avx512 = targets.parse({"kind": "llvm", "mcpu": "znver4"})
    assert list(targets.codegen_target(avx512).attrs["mattr"]) == list(targets.NO_GATHER)
    avx2 = targets.parse({"kind": "llvm", "mcpu": "znver3"})
    assert targets.codegen_target(avx2) is avx2
    cuda = targets.parse("cuda")
    assert targets.codegen_target(cuda) is cuda

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 128)).astype("float32")
    w[rng.random(w.shape) < 0.9] = 0
    csr = kernels.build_kernel(linear_layer(1, w), kinds.CSR, avx512)
    assert targets.codegen_target(avx512, csr.module()) is avx512

    spec = Conv2dSpec(1, 24, 28, 28, 24, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1), groups=24)
    weight = rng.standard_normal((24, 1, 3, 3)).astype("float32")
    layer = conv_layer(spec, weight, act="none")
    kernel = kernels.build_kernel(layer, kinds.DENSE, avx512)
    lib = fast_math.compile(kernel.module(schedule_func(kernel.func, avx512)), avx512)
    asm = lib.mod.inspect_source("asm")
    assert "vgather" not in asm and "vscatter" not in asm
    x = rng.standard_normal(layer.in_shape).astype("float32")
    args = [tvm.runtime.tensor(a) for a in [x, *kernel.constants, np.zeros(layer.out_shape, "float32")]]
    lib(*args)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), stride=2, padding=1, groups=24)
    assert relative_error(args[-1].numpy(), ref.numpy()) <= TOLERANCE
