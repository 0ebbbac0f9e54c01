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
    assert targets.host_caches(str(tmp_path)) == targets.Caches(48 << 10, 1 << 20, 32 << 20)
    assert targets.host_caches(str(tmp_path / "missing")) is None
    cross = targets.parse({"kind": "llvm", "mcpu": "znver3"})
    if "znver3" != targets.parse("llvm").attrs["mcpu"]:  # not this machine: the known sizes
        assert targets.caches(cross) == targets.KNOWN_CACHES["znver3"]
    host = targets.caches(targets.parse("llvm"))
    assert 0 < host.l1 < host.l2 <= host.l3
