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
