"""Performance model: decisions, profiles (round trip and errors), explain, guided pruning."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from fscnn_tvm.testing import check_against_torch, randomize_
from fscnn_tvm import guided, models, perf_model, plan, profiles, prune, targets
from fscnn_tvm import kinds as fscnn_kinds
from fscnn_tvm.errors import ProfileError, ProfileWarning
from fscnn_tvm.layer import conv_layer, linear_layer
from fscnn_tvm.ops.conv2d import Conv2dSpec

TARGET = targets.parse("llvm")
SPARSITIES = np.round(np.arange(0.0, 1.0, 0.01), 2)


@pytest.fixture(scope="module")
def profile():
    return profiles.builtin_profile(TARGET)


def _weight(shape, sparsity, seed=0):
    w = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    return w * prune.magnitude_mask(w, sparsity)


LAYER_SHAPES = [
    Conv2dSpec(1, 256, 56, 56, 256, (3, 3), padding=(1, 1, 1, 1)),
    Conv2dSpec(1, 64, 56, 56, 256, (1, 1)),
    Conv2dSpec(1, 512, 7, 7, 512, (3, 3), padding=(1, 1, 1, 1)),
    Conv2dSpec(1, 128, 28, 28, 128, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1)),
    Conv2dSpec(1, 512, 2, 2, 512, (3, 3), padding=(1, 1, 1, 1)),
]


@pytest.mark.parametrize("spec", LAYER_SHAPES, ids=lambda s: f"{s.in_channels}-{s.out_channels}-{s.kernel[0]}@{s.height}")
def test_choice_is_monotone_in_sparsity_and_dense_at_zero(spec, profile):
    base = np.random.default_rng(0).standard_normal((spec.out_channels, spec.in_channels, *spec.kernel)).astype("float32")
    order = np.argsort(np.abs(base), axis=None)
    kinds = []
    for sp in SPARSITIES[::5]:
        w = base.copy().reshape(-1)
        w[order[:int(round(sp * w.size))]] = 0
        layer = conv_layer(spec, w.reshape(base.shape))
        choice = plan.choose(layer, profile)
        assert choice.reason and "ms" in choice.reason
        assert set(choice.times) == set(plan.dense_candidates(layer, profile)) | {"csr"}
        assert all(t > 0 for t in choice.times.values())
        kinds.append(choice.kind)
    # the dense-weight kind chosen does not depend on the sparsity; once sparse, sparse stays
    assert not fscnn_kinds.is_sparse(kinds[0]) and len({k for k in kinds if not fscnn_kinds.is_sparse(k)}) == 1
    flips = sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert flips <= 1 and (flips == 0 or kinds[-1] == "csr"), kinds


def test_predicted_sparse_time_grows_with_nonzeros(profile):
    layer = conv_layer(LAYER_SHAPES[0], _weight((256, 256, 3, 3), 0.9))
    times = [perf_model.predict(layer, "csr", profile, nnz=n) for n in (0, 1e4, 1e5, 5e5)]
    assert times == sorted(times) and times[0] > 0


def test_big_3x3_at_95_percent_goes_sparse_and_tiny_maps_stay_dense(profile):
    """(Against Winograd F(4x4), the dense alternative of a big 3x3 layer, CSR pays only above
    ~0.9 with the conservative built-in profile.)"""
    big = plan.choose(conv_layer(LAYER_SHAPES[0], _weight((256, 256, 3, 3), 0.95)), profile)
    assert big.kind == "csr" and big.break_even is not None and 0.5 < big.break_even < 0.95
    tiny = plan.choose(conv_layer(LAYER_SHAPES[4], _weight((512, 512, 3, 3), 0.9)), profile)
    assert not fscnn_kinds.is_sparse(tiny.kind)


def test_block_pruned_weight_is_offered_bsr(profile):
    w = np.random.default_rng(0).standard_normal((256, 256, 3, 3)).astype("float32")
    w *= prune.magnitude_mask(w, 0.8, block=(8, 1))
    choice = plan.choose(conv_layer(LAYER_SHAPES[0], w), profile)
    # 8x1 blocks are also 4x1 blocks: both BSR kinds compete with AVX2's 16 registers
    dense = {"dense", "winograd2", "winograd4"}
    both = dense | {"csr", "bsr8"} | ({"bsr4"} if profile.lanes < 16 else set())
    assert set(choice.times) == both and choice.kind.startswith("bsr")
    assert choice.times[choice.kind] < choice.times["csr"]
    w4 = np.random.default_rng(0).standard_normal((256, 256, 3, 3)).astype("float32")
    w4 *= prune.magnitude_mask(w4, 0.8, block=(4, 1))
    assert set(plan.choose(conv_layer(LAYER_SHAPES[0], w4), profile).times) == dense | {"csr", "bsr4"}


def test_grouped_conv_has_only_dense(profile):
    spec = Conv2dSpec(1, 32, 14, 14, 32, (3, 3), padding=(1, 1, 1, 1), groups=32)
    choice = plan.choose(conv_layer(spec, _weight((32, 1, 3, 3), 0.9)), profile)
    assert choice.kind == "dense" and list(choice.times) == ["dense"] and "groups=32" in choice.reason


def test_linear_layers(profile):
    layer = linear_layer(1, _weight((4096, 4096), 0.95))
    assert plan.choose(layer, profile).kind == "csr"
    assert plan.choose(linear_layer(1, _weight((4096, 4096), 0.0)), profile).kind == "dense"


def test_weights_past_the_caches_are_charged_at_their_level(profile):
    """A linear's weights stream once, from DRAM; a sparse conv sweeps its weights once per
    register tile, from L2 while they fit, then from L3, then from DRAM."""
    caches = profile.caches
    big = linear_layer(1, _weight((4096, 4096), 0.0))  # 67 MB, more than the L3 of any CPU we know
    f = perf_model.features(big, "dense", profile.lanes, caches=caches)
    assert f["linear.byte"] == perf_model.weight_bytes(big, "dense", profile.lanes) >= 4 * 4096 * 4096
    reason = plan.choose(big, profile).reason
    assert reason.endswith("DRAM bound: 67.1 MB of weights"), reason
    conv = conv_layer(Conv2dSpec(1, 64, 56, 56, 64, (3, 3), padding=(1, 1, 1, 1)), _weight((64, 64, 3, 3), 0.0))
    assert "DRAM bound" not in plan.choose(conv, profile).reason  # 147 KB of weights, 231 MFLOP
    # CSR linear: a 4-byte value and a 2-byte column per nonzero up to 65536 inputs
    sparse_linear = linear_layer(1, _weight((512, 1024), 0.75))
    nnz = np.count_nonzero(sparse_linear.weight)
    assert perf_model.weight_bytes(sparse_linear, "csr", profile.lanes) == 6 * nnz + 4 * 513
    spec = Conv2dSpec(1, 256, 28, 28, 256, (3, 3), padding=(1, 1, 1, 1))
    levels = {}
    for l2, l3 in ((1 << 30, 1 << 31), (1 << 20, 1 << 30), (1 << 10, 1 << 20)):
        f = perf_model.features(conv_layer(spec, _weight((256, 256, 3, 3), 0.5)), "csr", profile.lanes,
                                caches=targets.Caches(32 << 10, l2, l3))
        levels[(l2, l3)] = {k for k in ("l3_byte", "dram_byte") if k in f}
    assert list(levels.values()) == [set(), {"l3_byte"}, {"dram_byte"}]


def test_batched_linear_is_predicted_per_batch_not_per_image(profile):
    """Weights are read once per batch: a batch of 8 costs far less than 8 batches of 1."""
    w = _weight((4096, 4096), 0.8)
    for kind in ("dense", "csr"):
        one = perf_model.predict(linear_layer(1, w), kind, profile)
        eight = perf_model.predict(linear_layer(8, w), kind, profile)
        assert one < eight < 4 * one, (kind, one, eight)


@pytest.mark.parametrize("spec", ["vgg16", "resnet50"])
def test_unpruned_zoo_models_plan_all_dense(spec, profile):
    """With the profile compile() would use: at sparsity 0 every layer runs a dense-weight kernel;
    with the built-in profile the 3x3 stride-1 layers on maps of 14x14 and more run Winograd, and
    the opt-out keeps
    every layer direct."""
    from fscnn_tvm.pipeline import plan_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProfileWarning)
        planned = plan_model(spec, (1, 3, 224, 224), TARGET)
    assert not any(fscnn_kinds.is_sparse(row.kernel) for row in planned.plan)
    builtin = plan_model(spec, (1, 3, 224, 224), TARGET, profile=profile)
    threes = [r for r in builtin.plan if r.kernel_size == (3, 3) and r.stride == (1, 1) and r.in_shape[1] >= 64
              and r.in_shape[2] >= 14]  # on 7x7 maps direct and F(2x2) are within a few percent
    assert threes and all(r.kernel.startswith("winograd") for r in threes), [(r.name, r.kernel) for r in threes]
    direct = plan_model(spec, (1, 3, 224, 224), TARGET, profile=profile, winograd=False)
    assert {row.kernel for row in direct.plan} == {"dense"}


# ---------------------------------------------------------------- profiles

def test_profile_round_trip(tmp_path, profile):
    path = profile.save(tmp_path / "p" / "profile.json")
    again = profiles.read_profile(path)
    assert again.coefficients == profile.coefficients and again.target == profile.target
    assert again.source == path
    assert profiles.load_profile(TARGET, path).coefficients == profile.coefficients


def test_profile_errors(tmp_path, profile):
    missing = tmp_path / "none.json"
    with pytest.raises(ProfileError, match="none.json: no such profile file"):
        profiles.load_profile(TARGET, missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": 1, "coeff')
    with pytest.raises(ProfileError, match="corrupt.json: not a valid profile"):
        profiles.load_profile(TARGET, corrupt)
    partial = tmp_path / "partial.json"  # calibrated before a kernel kind existed
    data = profile.to_json()
    del data["coefficients"]["winograd.flop"]
    partial.write_text(json.dumps(data))
    with pytest.warns(ProfileWarning, match="partial.json: profile has no winograd.flop"):
        filled = profiles.load_profile(TARGET, partial)
    assert filled.coefficients["winograd.flop"] == profile.coefficients["winograd.flop"]
    unknown = tmp_path / "unknown.json"
    data = profile.to_json()
    data["coefficients"]["warp.drive"] = 1.0
    unknown.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="coefficients missing or invalid"):
        profiles.load_profile(TARGET, unknown)
    negative = tmp_path / "negative.json"
    data = profile.to_json()
    data["coefficients"]["csr.flop"] = -1.0
    negative.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="coefficients missing or invalid"):
        profiles.load_profile(TARGET, negative)
    other = tmp_path / "other.json"
    data = profile.to_json()
    data["target"] = "llvm-someothercpu"
    other.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="is for target llvm-someothercpu"):
        profiles.load_profile(TARGET, other)


def test_missing_default_profile_warns_and_uses_builtin(tmp_path, monkeypatch):
    monkeypatch.setenv("FSCNN_TVM_TUNING_LOGS", str(tmp_path))
    with pytest.warns(ProfileWarning, match="no calibrated profile"):
        prof = profiles.load_profile(TARGET)
    assert prof.source == "built-in"
    assert prof.coefficients == profiles.builtin_profile(TARGET).coefficients
    (tmp_path / targets.tag(TARGET)).mkdir()
    profiles.builtin_profile(TARGET).save(tmp_path / targets.tag(TARGET) / "profile.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileWarning)
        assert profiles.load_profile(TARGET).source.endswith("profile.json")


@pytest.mark.heavy
def test_calibrate_cli_writes_a_profile_that_compile_uses(tmp_path):
    out = tmp_path / "profile.json"
    env = dict(os.environ, TVM_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "fscnn_tvm.cli", "calibrate", "--quick", "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and out.is_file()
    prof = profiles.read_profile(out)
    assert prof.target == targets.tag(TARGET) and prof.meta["samples"] > 10
    assert prof.meta["fit_median_relative_error"] < 0.5
    block = randomize_(torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU()))
    prune.magnitude(block, 0.9, skip_first_conv=False)
    compiled = check_against_torch(block, (1, 32, 20, 20), profile=str(out))
    assert compiled.plan[0].predicted_ms and compiled.plan[0].reason


@pytest.mark.heavy
def test_explain_cli_measures_and_compares_with_oracle():
    done = subprocess.run([sys.executable, "-m", "fscnn_tvm.cli", "explain", "resnet18@0.9",
                           "--input-shape", "1,3,32,32", "--measure"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, TVM_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "layer1.0.conv1" in out and "oracle plan" in out and "choices within 5%" in out
    assert len([ln for ln in out.splitlines() if ln.strip().startswith(("0 ", "1 ", "20 "))]) == 3


# ---------------------------------------------------------------- guided pruning

def test_guided_pruning_prunes_only_where_it_pays(tmp_path, profile):
    model = models.from_spec("resnet18")  # at 64x64 the last stage runs on 2x2 maps: sparse cannot pay
    report = guided.prune(model, (1, 3, 64, 64), TARGET, profile, max_sparsity=0.9)
    measured = prune.weight_sparsity(model)
    by_name = {g.name: g for g in report.layers}
    assert set(by_name) == set(measured)
    pruned = [g for g in report.layers if g.sparsity > 0]
    dense = [g for g in report.layers if g.sparsity == 0]
    assert pruned and dense and by_name["conv1"].sparsity == 0
    for g in report.layers:
        assert abs(measured[g.name] - g.sparsity) < 0.01, g.name
        assert g.reason
        if g.sparsity:
            assert g.sparse_ms < g.dense_ms and g.sparsity <= 0.9
    assert by_name["layer4.1.conv2"].sparsity == 0  # 2x2 maps
    assert report.pruned_ms < report.dense_ms and "predicted:" in report.format()
    compiled = check_against_torch(model, (1, 3, 64, 64), profile=profile)
    kinds = {row.name: row.kernel for row in compiled.plan}
    # the layers left dense run the dense-weight kind the report names (Winograd where it pays)
    assert all(kinds[g.name] == g.kind and not fscnn_kinds.is_sparse(g.kind) for g in dense)
    assert any(g.kind.startswith("winograd") for g in dense)


def test_guided_prune_cli(tmp_path):
    out = tmp_path / "guided.pt2"
    done = subprocess.run([sys.executable, "-m", "fscnn_tvm.cli", "prune", "resnet18", "--guided", "--sparsity",
                           "0.8", "--input-shape", "1,3,64,64", "-o", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "predicted:" in done.stdout and out.is_file()
    ep = torch.export.load(str(out))
    zeros = {n: float((p == 0).float().mean()) for n, p in ep.module().named_parameters() if p.dim() == 4}
    assert max(zeros.values()) <= 0.8 + 1e-3 and zeros["conv1.weight"] == 0
    bad = subprocess.run([sys.executable, "-m", "fscnn_tvm.cli", "prune", "resnet18", "-o", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "give --sparsity S, or --guided" in bad.stderr
