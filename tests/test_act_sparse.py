"""Activation-sparse convolution (issue 16): the kernel against torch on inputs with 0-100% zeros,
calibration data (input zeros measured per layer, bad data refused), the plan's choice, and the
trained-like zoo profiles."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn

import fscnn_tvm
from fscnn_tvm import input_zeros, kernels, kinds, models, plan, profiles, targets
from fscnn_tvm.cli import main
from fscnn_tvm.errors import InputError
from fscnn_tvm.layer import conv_layer, linear_layer
from fscnn_tvm.ops import act_sparse_conv2d as act_ops
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.schedules import schedule_func
from fscnn_tvm.schedules.x86 import rules as x86_rules
from fscnn_tvm.testing import TOLERANCE, randomize_, relative_error, torch_reference

TARGET = targets.parse("llvm")
ACT = {"none": lambda t: t, "relu": torch.relu, "relu6": lambda t: torch.clamp(t, 0, 6)}
_RESIDUAL = object()  # the kernel builder only asks whether the layer has a residual input

CASES = [  # (batch, cin, cout, k, stride, pad, dilation, h, w, act, residual)
    pytest.param(1, 64, 64, 3, 1, 1, 1, 14, 14, "relu", False, id="3x3"),
    pytest.param(2, 33, 70, 3, 1, 1, 1, 9, 13, "none", True, id="3x3-batch2-odd-residual"),
    pytest.param(1, 40, 24, 1, 1, 0, 1, 11, 7, "relu", False, id="1x1-odd"),
    pytest.param(1, 150, 40, 1, 1, 0, 1, 7, 9, "relu", True, id="1x1-64-bit-masks-residual"),
    pytest.param(1, 32, 48, 1, 2, 0, 1, 14, 14, "relu6", False, id="1x1-stride2"),
    pytest.param(1, 24, 32, 3, 2, 1, 1, 15, 15, "relu", True, id="3x3-stride2-odd"),
    pytest.param(1, 3, 16, 7, 2, 3, 1, 23, 23, "relu", False, id="7x7-stride2-3ch"),
    pytest.param(1, 16, 24, 3, 1, 2, 2, 12, 12, "none", False, id="3x3-dilation2"),
    pytest.param(1, 16, 16, 5, 1, 2, 1, 8, 8, "relu", False, id="5x5"),
    pytest.param(1, 8, 16, 3, 1, 0, 1, 5, 5, "relu", False, id="3x3-nopad-small"),
    pytest.param(3, 130, 20, 3, 1, 1, 1, 6, 31, "relu", False, id="3x3-batch3-wide-chunks"),
]


def run_kernel(spec: Conv2dSpec, x: np.ndarray, act: str, residual: bool, seed: int = 0, weight=None):
    """(output, torch reference) of the actsparse kernel for ``spec`` on input ``x``."""
    rng = np.random.default_rng(seed)
    w = weight if weight is not None else rng.standard_normal(
        (spec.out_channels, spec.in_channels, *spec.kernel)).astype("float32") * 0.1
    layer = conv_layer(spec, w, act=act)
    layer.bias = rng.standard_normal(spec.out_channels).astype("float32")
    layer.residual = _RESIDUAL if residual else None
    kernel = kernels.build_kernel(layer, kinds.ACT_SPARSE, TARGET)
    lib = tvm.compile(tvm.IRModule({"main": schedule_func(kernel.func, TARGET)}), TARGET)
    res = rng.standard_normal(spec.out_shape).astype("float32") if residual else None
    args = [x, *kernel.constants] + ([res] if residual else []) + [np.zeros(spec.out_shape, "float32")]
    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(layer.bias),
                                     spec.stride, (spec.padding[0], spec.padding[1]), spec.dilation)
    if residual:
        ref = ref + torch.from_numpy(res)
    return tensors[-1].numpy(), ACT[act](ref).numpy()


def _input(shape, zeros: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype("float32")
    x[rng.random(shape) < zeros] = 0.0
    return x


@pytest.mark.parametrize("zeros", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("batch,cin,cout,k,stride,pad,dil,h,w,act,residual", CASES)
def test_kernel_matches_torch(batch, cin, cout, k, stride, pad, dil, h, w, act, residual, zeros):
    spec = Conv2dSpec(batch, cin, h, w, cout, (k, k), (stride, stride), (pad,) * 4, (dil, dil))
    out, ref = run_kernel(spec, _input(spec_in(spec), zeros), act, residual)
    assert relative_error(out, ref) <= TOLERANCE


def spec_in(spec: Conv2dSpec) -> tuple:
    return (spec.batch, spec.in_channels, spec.height, spec.width)


def test_kernel_zero_channels_rows_and_pruned_weights():
    """All-zero channels and rows (lists empty or full per pixel), NaN-free negatives, and weights
    that are themselves pruned (zeros stored, multiplied)."""
    spec = Conv2dSpec(2, 70, 12, 17, 40, (3, 3), (1, 1), (1, 1, 1, 1))
    x = _input(spec_in(spec), 0.3)
    x[:, ::3] = 0.0  # every third channel
    x[:, :, 4:7] = 0.0  # three whole rows
    x[1] = np.abs(x[1]) + 0.5  # the second image: no zeros at all
    w = np.random.default_rng(5).standard_normal((40, 70, 3, 3)).astype("float32")
    w[np.random.default_rng(6).random(w.shape) < 0.8] = 0.0
    out, ref = run_kernel(spec, x, "relu", True, weight=w)
    assert relative_error(out, ref) <= TOLERANCE


@pytest.mark.parametrize("zeros", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("batch,in_f,out_f,act,residual", [(1, 257, 100, "relu", False), (3, 64, 37, "none", True),
                                                           (2, 515, 16, "relu6", False)])
def test_linear_kernel_matches_numpy(batch, in_f, out_f, act, residual, zeros):
    """The activation-sparse linear: rows of the nonzero inputs, four at a time and the rest
    one by one, outputs not a multiple of the vector width."""
    from fscnn_tvm.layer import linear_layer

    rng = np.random.default_rng(3)
    w = rng.standard_normal((out_f, in_f)).astype("float32")
    layer = linear_layer(batch, w, act=act)
    layer.bias = rng.standard_normal(out_f).astype("float32")
    layer.residual = _RESIDUAL if residual else None
    kernel = kernels.build_kernel(layer, kinds.ACT_SPARSE, TARGET)
    lib = tvm.compile(tvm.IRModule({"main": schedule_func(kernel.func, TARGET)}), TARGET)
    x = _input((batch, in_f), zeros)
    res = rng.standard_normal((batch, out_f)).astype("float32") if residual else None
    args = [x, *kernel.constants] + ([res] if residual else []) + [np.zeros((batch, out_f), "float32")]
    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    ref = torch.from_numpy(x @ w.T + layer.bias + (res if residual else 0))
    assert relative_error(tensors[-1].numpy(), ACT[act](ref).numpy()) <= TOLERANCE


def _runner(kernel: kernels.Kernel, layer, target=TARGET):
    """``(x, residual) -> kernel's output`` for ``layer`` (its module: the kernel and what it calls)."""
    lib = tvm.compile(kernel.module(schedule_func(kernel.func, target)), target)
    return lambda x, residual: _run(lib, kernel, layer, x, residual)


def _run(lib, kernel: kernels.Kernel, layer, x: np.ndarray, residual: np.ndarray) -> np.ndarray:
    in_shape, out_shape = kernel.shapes(layer)
    args = [x.reshape(in_shape), *kernel.constants, residual.reshape(out_shape), np.zeros(out_shape, "float32")]
    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    return tensors[-1].numpy().reshape(layer.out_shape)


@pytest.mark.parametrize("k,fallback,mcpu", [(3, "dense", None), (3, "winograd4", None), (1, "dense", None),
                                             (3, "csr", None), (1, "bsr8", None), (3, "winograd4", "znver3")])
def test_fallback_runs_on_inputs_denser_than_its_break_even(k, fallback, mcpu):
    """With a fallback, the kernel counts its input's nonzeros and, below ``fallback_zeros`` zeros,
    runs the fallback kernel: bit for bit the fallback's output there, the activation-sparse
    kernel's above, and within tolerance of torch everywhere (residual and epilogue included)."""
    spec = Conv2dSpec(1, 24, 10, 11, 40, (k, k), (1, 1), (k // 2,) * 4)
    rng = np.random.default_rng(4)
    w = rng.standard_normal((40, 24, k, k)).astype("float32") * 0.1
    layer = conv_layer(spec, w, act="relu")
    layer.bias = rng.standard_normal(40).astype("float32")
    layer.residual = _RESIDUAL
    res = rng.standard_normal(spec.out_shape).astype("float32")
    target = targets.parse({"kind": "llvm", "mcpu": mcpu}) if mcpu else TARGET  # znver3: AVX2's 8 lanes
    kernel = kernels.build_kernel(layer, kinds.ACT_SPARSE, target, {"fallback": fallback, "fallback_zeros": 0.6})
    assert kernel.subroutines and len(kernel.constants) > 2
    both = _runner(kernel, layer, target)
    alone = {kind: _runner(kernels.build_kernel(layer, kind, target), layer, target)
             for kind in (kinds.ACT_SPARSE, fallback)}
    for zeros in (0.0, 0.45, 0.75, 0.97):
        x = _input(layer.in_shape, zeros, seed=int(zeros * 100))
        ref = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                                    torch.from_numpy(layer.bias), padding=k // 2)
                         + torch.from_numpy(res)).numpy()
        got = both(x, res)
        assert relative_error(got, ref) <= TOLERANCE, zeros
        ran = fallback if float((x == 0).mean()) < 0.6 else kinds.ACT_SPARSE
        assert np.array_equal(got, alone[ran](x, res)), (zeros, ran)


def test_layout_rule_reads_the_target():
    spec = Conv2dSpec(1, 512, 28, 28, 512, (3, 3), (1, 1), (1, 1, 1, 1))
    wide, narrow = x86_rules.act_sparse_layout(spec, 16), x86_rules.act_sparse_layout(spec, 8)
    for lay, registers in ((wide, 32), (narrow, 16)):
        assert lay.oc_block % lay.lanes == 0 and lay.tile * lay.vectors < registers
        assert 4 * spec.kernel[1] * lay.chunk * lay.oc_block <= x86_rules.ACT_SPARSE_L1_BYTES
        assert lay.segments * lay.tile >= spec.out_width
    one = x86_rules.act_sparse_layout(Conv2dSpec(1, 256, 14, 14, 256, (1, 1)), 16)
    assert one.chunk == act_ops.MASK_BITS  # a 1x1's weights would allow more: one mask's bits


# ---------------------------------------------------------------- calibration data

def _relu_net(shift: float = -0.4):
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 48, 3, padding=1),
                        nn.BatchNorm2d(48), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(48, 40, 1), nn.ReLU(),
                        nn.Conv2d(40, 24, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(24 * 4 * 4, 10))
    randomize_(net, seed=3)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.bias += shift  # most pre-activations negative: sparse ReLU outputs
    return net.eval()


def _zeros_by_torch(net, runs) -> dict[str, float]:
    """Each conv/linear's input zero fraction by torch hooks (by module name), averaged over ``runs``."""
    per: dict[str, list] = {}
    hooks = [m.register_forward_pre_hook(
        lambda m, a, name=name: per.setdefault(name, []).append(float((a[0] == 0).float().mean())))
        for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for x in runs:
            net(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return {name: float(np.mean(v)) for name, v in per.items()}


class _Block(nn.Module):
    """A residual block written as ResNet's: the shortcut conv comes first in the graph, but the
    model runs it after the block's convs (just before the add it feeds), so the layers are
    called in another order than the plan lists them."""

    def __init__(self, cin: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 24, 3, padding=1)
        self.conv2 = nn.Conv2d(24, 32, 3, padding=1)
        self.downsample = nn.Sequential(nn.Conv2d(cin, 32, 1), nn.BatchNorm2d(32))

    def forward(self, x):
        identity = self.downsample(x)
        y = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.relu(y + identity)


def _residual_net():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), _Block(16), _Block(32))
    randomize_(net, seed=5)
    with torch.no_grad():  # every layer's input a different zero fraction
        for i, m in enumerate(m for m in net.modules() if isinstance(m, nn.Conv2d)):
            m.bias -= 0.1 * i
    return net.eval()


def test_calibration_measures_each_layers_input_zeros():
    net = _relu_net()
    data = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype("float32")
    planned = fscnn_tvm.plan_model(net, (1, 3, 16, 16), calibration_data=data)
    by_name = _zeros_by_torch(net, [data[i:i + 1] for i in range(3)])
    got = [row.input_zeros for row in planned.plan]
    expected = [by_name[row.name] for row in planned.plan]
    assert got[0] == 0.0 and max(got) > 0.6  # the image has no zeros; the shifted ReLUs many
    assert np.allclose(got, expected, atol=1e-3), (got, expected)
    assert all(row.input_zeros_spread is not None for row in planned.plan)
    table = plan.format_plan(planned.plan)
    assert "in.zeros" in table and "not calibrated" not in table


def test_calibration_matches_calls_to_layers_in_a_residual_net():
    """The shortcut conv is listed before the block's convs but runs after them: each layer still
    gets its own input's zeros (they were shifted by one in such nets before)."""
    net = _residual_net()
    data = np.random.default_rng(1).standard_normal((2, 3, 12, 12)).astype("float32")
    planned = fscnn_tvm.plan_model(net, (1, 3, 12, 12), calibration_data=data)
    by_name = _zeros_by_torch(net, [data[i:i + 1] for i in range(2)])
    assert len(set(np.round(list(by_name.values()), 2))) >= 4  # distinct enough to tell apart
    assert sorted(row.name for row in planned.plan) == sorted(by_name)
    for row in planned.plan:
        assert abs(row.input_zeros - by_name[row.name]) < 1e-3, (row.name, row.input_zeros, by_name)


def test_without_calibration_the_plan_says_so():
    planned = fscnn_tvm.plan_model(_relu_net(), (1, 3, 16, 16))
    assert all(row.input_zeros is None and row.kernel != kinds.ACT_SPARSE for row in planned.plan)
    assert "input zeros not calibrated: no activation-sparse kernels" in plan.format_plan(planned.plan)


def _act_cheap_profile() -> profiles.Profile:
    """This CPU's profile with the activation-sparse terms 100x cheaper: the plan then runs the
    kernel wherever it can (to test it inside a model, whatever the layers' sizes)."""
    base = profiles.load_profile(TARGET)
    coef = {k: v / 100 if k.startswith("act.") else v for k, v in base.coefficients.items()}
    return profiles.Profile(base.target, coef, base.lanes, base.meta)


def test_model_calibrated_sparse_stays_exact_on_dense_inputs():
    """Calibrated on faint images (nearly every ReLU output zero), run on strong ones (far denser
    maps): slower, never wrong."""
    net = _relu_net()
    data = 0.01 * np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype("float32")
    compiled = fscnn_tvm.compile(net, (1, 3, 16, 16), calibration_data=data, profile=_act_cheap_profile())
    chosen = [row.kernel for row in compiled.plan]
    assert chosen.count(kinds.ACT_SPARSE) == 5, chosen  # every conv and the linear
    strong = 10 * np.random.default_rng(9).standard_normal((1, 3, 16, 16)).astype("float32")
    calibrated, run = _zeros_by_torch(net, [data[:1]]), _zeros_by_torch(net, [strong])
    denser = [run[name] < calibrated[name] - 0.2 for name in calibrated if name != "0"]  # "0": the image
    assert len(denser) == 4 and all(denser), (run, calibrated)
    for x in (data[:1], strong):
        assert relative_error(compiled(x), torch_reference(net, x)) <= TOLERANCE


def _act_fixed_cheap_profile() -> profiles.Profile:
    """This CPU's profile with the activation-sparse kernel's fixed terms 100x cheaper and its FMAs
    at their rate: it then pays on the nearly all-zero maps of a small test net, and not on a
    dense input, so the plan gives it a fallback (on the Zen 3 and Zen 5 profiles alike)."""
    base = profiles.load_profile(TARGET)
    coef = {k: v / 100 if k.startswith("act.") and not k.startswith("act.flop") else v
            for k, v in base.coefficients.items()}
    return profiles.Profile(base.target, coef, base.lanes, base.meta)


def test_model_falls_back_where_its_input_is_denser_than_the_break_even(tmp_path):
    """A layer planned activation-sparse carries a fallback (the kind it beat) and the zeros below
    which it runs; the compiled model is exact on sparse and dense inputs, saved and loaded."""
    net = _relu_net()
    data = 0.01 * np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype("float32")
    compiled = fscnn_tvm.compile(net, (1, 3, 16, 16), calibration_data=data, profile=_act_fixed_cheap_profile())
    rows = [r for r in compiled.plan if r.fallback]
    assert rows and all(r.kernel == kinds.ACT_SPARSE and 0 < r.fallback_zeros < r.input_zeros for r in rows)
    assert all(f"fewer zeros than {r.fallback_zeros:.2f} runs {r.fallback}" in r.reason for r in rows)
    strong = 10 * np.random.default_rng(9).standard_normal((1, 3, 16, 16)).astype("float32")
    loaded = fscnn_tvm.load(compiled.export_library(str(tmp_path / "m.so")))
    for x in (data[:1], strong):
        ref = torch_reference(net, x)
        assert relative_error(compiled(x), ref) <= TOLERANCE
        assert relative_error(loaded(x), ref) <= TOLERANCE


def test_same_shaped_convs_with_and_without_bias_keep_their_own_fallbacks():
    """Two convs of one shape and activation share the activation-sparse kernel only where their
    fallbacks agree: one with a bias, one without, take different fallback arguments (they once
    shared one kernel, and the model failed to build)."""
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(32, 8, 1))
    randomize_(net, seed=3)
    with torch.no_grad():
        net[0].bias -= 0.4
        net[2].bias -= 0.4
    net.eval()
    data = 0.01 * np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype("float32")
    compiled = fscnn_tvm.compile(net, (1, 3, 16, 16), calibration_data=data, profile=_act_fixed_cheap_profile())
    twins = compiled.plan[1:3]
    assert [r.epilogue for r in twins] == ["bias+relu", "relu"]
    assert all(r.kernel == kinds.ACT_SPARSE and r.fallback == twins[0].fallback for r in twins), compiled.plan
    for x in (data[:1], 10 * np.random.default_rng(9).standard_normal((1, 3, 16, 16)).astype("float32")):
        assert relative_error(compiled(x), torch_reference(net, x)) <= TOLERANCE


@pytest.mark.parametrize("data,message", [
    (np.zeros((2, 3, 8, 8), "float32"), "shape (2, 3, 8, 8), expected (N, 3, 16, 16)"),
    (np.zeros((2, 3, 16, 16), "int64"), "dtype int64 is not floating point"),
    (np.zeros((0, 3, 16, 16), "float32"), "0 samples"),
    ([], "an empty list"),
    ([np.zeros((1, 3, 16, 16), "float32"), np.zeros((1, 3, 15, 16), "float32")], "item 1: shape (1, 3, 15, 16)"),
    ("/nonexistent/x.npy", "calibration data file not found"),
])
def test_bad_calibration_data_is_refused_clearly(data, message):
    with pytest.raises(InputError, match=None) as err:
        input_zeros.samples(data, (1, 3, 16, 16))
    assert message in str(err.value)


def test_batch_models_take_samples_in_runs():
    runs = input_zeros.samples(np.zeros((6, 3, 4, 4), "float32"), (2, 3, 4, 4))
    assert len(runs) == 3 and runs[0].shape == (2, 3, 4, 4)
    with pytest.raises(InputError, match="not a multiple of the model's batch 2"):
        input_zeros.samples(np.zeros((5, 3, 4, 4), "float32"), (2, 3, 4, 4))


def test_cli_calibration_data(tmp_path, capsys):
    npy = tmp_path / "x.npy"
    np.save(npy, models.sample_inputs(2, (1, 3, 32, 32)))
    assert main(["explain", "resnet18", "--input-shape", "1,3,32,32", "--calibration-data", str(npy)]) == 0
    out = capsys.readouterr().out
    assert "in.zeros" in out and "not calibrated" not in out
    np.save(npy, np.zeros((2, 3, 30, 32), "float32"))
    assert main(["explain", "resnet18", "--input-shape", "1,3,32,32", "--calibration-data", str(npy)]) == 1
    assert "calibration data: shape (2, 3, 30, 32)" in capsys.readouterr().err


def test_networks_without_relu_zeros_keep_their_plan():
    """Hardswish and SiLU leave (almost) no zeros: calibrated or not, the plan is the same."""
    for act in (nn.Hardswish, nn.SiLU):
        net = randomize_(nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), act(), nn.Conv2d(64, 64, 3, padding=1),
                                       act(), nn.Conv2d(64, 32, 1), act()), seed=2).eval()
        data = np.random.default_rng(0).standard_normal((2, 3, 24, 24)).astype("float32")
        plain = fscnn_tvm.plan_model(net, (1, 3, 24, 24))
        calibrated = fscnn_tvm.plan_model(net, (1, 3, 24, 24), calibration_data=data)
        assert [r.kernel for r in plain.plan] == [r.kernel for r in calibrated.plan]
        assert all(r.input_zeros < 0.05 for r in calibrated.plan)


# ---------------------------------------------------------------- the plan's choice

def test_prediction_falls_with_input_zeros_and_break_even():
    prof = profiles.load_profile(TARGET)
    spec = Conv2dSpec(1, 512, 28, 28, 512, (3, 3), (1, 1), (1, 1, 1, 1))
    w = np.random.default_rng(0).standard_normal((512, 512, 3, 3)).astype("float32")
    times = [plan.perf_model.predict(conv_layer(spec, w, input_zeros=z), kinds.ACT_SPARSE, prof)
             for z in (0.0, 0.5, 0.8, 0.95)]
    assert times == sorted(times, reverse=True) and times[-1] < times[0] / 4
    layer = conv_layer(spec, w, input_zeros=0.5)
    dense = plan.perf_model.predict(layer, kinds.DENSE, prof)
    even = plan.act_break_even(layer, prof, dense)
    assert even is not None and 0 < even < 1
    at = plan.perf_model.predict(conv_layer(spec, w, input_zeros=even), kinds.ACT_SPARSE, prof)
    assert at == pytest.approx(dense, rel=1e-3)
    choice = plan.choose(conv_layer(spec, w, input_zeros=0.999), prof)
    assert choice.kind == kinds.ACT_SPARSE and "calibrated input zeros 1.00" in choice.reason


def test_plan_gives_convs_a_fallback_and_wants_a_margin():
    """A conv planned activation-sparse falls back to the kind it beat below its break-even; a
    layer takes the kernel only when predicted faster by more than NEAR_TIE (a conv holds both
    kernels' weights, a linear layer has no fallback)."""
    prof = profiles.load_profile(TARGET)
    spec = Conv2dSpec(1, 256, 14, 14, 256, (3, 3), (1, 1), (1, 1, 1, 1))
    w = np.random.default_rng(0).standard_normal((256, 256, 3, 3)).astype("float32")
    choice = plan.choose(conv_layer(spec, w, input_zeros=0.99), prof)
    other = plan.choose(conv_layer(spec, w, input_zeros=0.0), prof)
    assert choice.kind == kinds.ACT_SPARSE and choice.fallback[0] == other.kind
    even = plan.act_break_even(conv_layer(spec, w, input_zeros=0.5), prof, other.times[other.kind])
    assert choice.fallback[1] == pytest.approx(even) and 0 < even < 0.99
    for margin in (1.02, 1.2):  # act predicted 2% / 20% faster than the kind it would replace
        zeros = plan.act_break_even(conv_layer(spec, w, input_zeros=0.0), prof, other.times[other.kind] / margin)
        picked = plan.choose(conv_layer(spec, w, input_zeros=min(1.0, zeros + 1e-3)), prof)
        assert picked.kind == (kinds.ACT_SPARSE if margin > plan.NEAR_TIE else other.kind), picked.reason
    fc = np.random.default_rng(1).standard_normal((1000, 2048)).astype("float32")
    dense = plan.perf_model.predict(linear_layer(1, fc, input_zeros=0.0), kinds.DENSE, prof)
    for margin, kind in ((1.02, kinds.DENSE), (1.2, kinds.ACT_SPARSE)):
        zeros = plan.act_break_even(linear_layer(1, fc, input_zeros=0.0), prof, dense / margin)
        picked = plan.choose(linear_layer(1, fc, input_zeros=min(1.0, zeros + 1e-3)), prof)
        assert picked.kind == kind and picked.fallback is None, (margin, picked.reason)


# ---------------------------------------------------------------- the trained-like zoo

def test_trained_like_profile_matches_published_zeros():
    model = models.from_spec("vgg16+trained")
    runs = [models.sample_inputs()]  # the images the profile was fitted on, as one batch
    got = _zeros_by_torch(model, runs)
    for name, zeros in models.VGG16_INPUT_ZEROS.items():
        assert abs(got[name] - zeros) < 0.01, (name, got[name], zeros)
    assert models.is_spec("resnet50@0.9+trained") and not models.is_spec("resnet50+trainedx")
    with pytest.raises(ValueError, match="no trained-like activation profile"):
        models.from_spec("alexnet+trained")


def test_calibration_data_on_a_gpu_target_is_refused_before_the_import():
    with pytest.raises(ValueError, match="calibration data: activation-sparse kernels are x86 only, the target is cuda"):
        fscnn_tvm.plan_model(_relu_net(), (1, 3, 16, 16), target="cuda",
                             calibration_data=np.zeros((1, 3, 16, 16), "float32"))
