"""What a new user, or a server, does to us: threads, cut-short files, NaNs, odd options, wrong
shapes. Each test failed on the code before it (issue "Real models from the wild")."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

import fscnn_tvm
from fscnn_tvm import models
from fscnn_tvm.cli import main
from fscnn_tvm.errors import ImporterError, ModelLoadError, VerificationError
from fscnn_tvm.testing import TOLERANCE, random_input, randomize_, relative_error, torch_reference

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    path = tmp_path_factory.mktemp("lib") / "r18.so"
    model = models.from_spec("resnet18@0.9")
    fscnn_tvm.compile(model, SHAPE).export_library(path)
    return path, model


# ---------------------------------------------------------------- a runner shared by threads

def _hammer(runner, inputs, expected, threads=4, calls=50):
    failures = []

    def work(k):
        for i in range(calls):
            j = (k + i) % len(inputs)
            try:
                if not np.array_equal(runner(inputs[j]), expected[j]):
                    failures.append((k, i, "wrong output"))
            except Exception as err:  # noqa: BLE001 - every failure counts
                failures.append((k, i, repr(err)))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return failures


def test_one_runner_four_threads(library):
    """4 threads x 50 calls on one loaded runner: every output checked (a Relax VM shared by
    threads segfaulted)."""
    path, model = library
    inputs = [random_input(SHAPE, seed) for seed in range(4)]
    expected = [fscnn_tvm.load(path)(x) for x in inputs]
    for x, y in zip(inputs, expected):
        assert relative_error(y, torch_reference(model, x)) <= TOLERANCE
    assert _hammer(fscnn_tvm.load(path), inputs, expected) == []  # a fresh runner: first calls race


def test_compiled_model_four_threads():
    model = models.from_spec("resnet18@0.9")
    compiled = fscnn_tvm.compile(model, SHAPE)
    inputs = [random_input(SHAPE, seed) for seed in range(4)]
    expected = [compiled(x) for x in inputs]
    assert _hammer(compiled, inputs, expected) == []


# ---------------------------------------------------------------- libraries cut short or altered

@pytest.mark.parametrize("keep", [0.5, 0.999, 0.01])
def test_truncated_library_is_refused(library, tmp_path, keep):
    data = library[0].read_bytes()
    cut = tmp_path / "cut.so"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelLoadError, match="cut.so: cannot load: cut short"):
        fscnn_tvm.load(cut)


def test_altered_library_is_refused(library, tmp_path):
    data = bytearray(library[0].read_bytes())
    data[len(data) // 3] ^= 0xFF
    bad = tmp_path / "bad.so"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="do not match its integrity record"):
        fscnn_tvm.load(bad)


def test_run_cli_on_a_truncated_library(library, tmp_path, capsys):
    data = library[0].read_bytes()
    cut = tmp_path / "cut.so"
    cut.write_bytes(data[: len(data) // 2])
    assert main(["run", str(cut)]) == 1
    assert "cut.so: cannot load: cut short" in capsys.readouterr().err


def test_load_names_a_bad_device(library):
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'gpu'"):
        fscnn_tvm.load(library[0], device="gpu")


# ---------------------------------------------------------------- NaN semantics match PyTorch

@pytest.mark.parametrize("sparse", ["never", "always"])
@pytest.mark.parametrize("layers", [
    lambda: [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()],
    lambda: [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6()],
    lambda: [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)],
    lambda: [nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU()],
    lambda: [nn.ReLU(), nn.Conv2d(3, 4, 1)],
], ids=["conv-relu", "conv-relu6", "conv-relu-maxpool", "linear-relu", "relu-conv"])
def test_nan_propagates_as_in_pytorch(layers, sparse):
    model = randomize_(nn.Sequential(*layers()))
    compiled = fscnn_tvm.compile(model, (1, 3, 8, 8), sparse=sparse)
    for x in (np.full((1, 3, 8, 8), np.nan, "float32"), random_input((1, 3, 8, 8))):
        x[0, 0, 3, 3] = np.nan
        ours, ref = compiled(x), torch_reference(model, x)
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        finite = ~np.isnan(ref)
        if finite.any():
            assert np.abs(ours[finite] - ref[finite]).max() <= TOLERANCE * np.abs(ref[finite]).max()


# ---------------------------------------------------------------- clear one-line errors

def test_pt2_input_shape_is_checked(tmp_path, capsys):
    path = tmp_path / "r18.pt2"
    torch.export.save(torch.export.export(models.from_spec("resnet18"), (torch.zeros(SHAPE),)), path)
    assert fscnn_tvm.compile(str(path), SHAPE).input_shape == SHAPE  # the exported shape is accepted
    assert main(["compile", str(path), "--input-shape", "1,3,64,64", "-o", str(tmp_path / "x.so")]) == 1
    err = capsys.readouterr().err
    assert "input_shape (1, 3, 64, 64) does not match the exported program's input shape (1, 3, 32, 32)" in err
    assert not (tmp_path / "x.so").exists()


def test_module_of_an_exported_program_compiles():
    model = models.from_spec("resnet18")
    ep = torch.export.export(model, (torch.zeros(SHAPE),))
    compiled = fscnn_tvm.compile(ep.module(), SHAPE)
    x = random_input(SHAPE)
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE


@pytest.mark.parametrize("shape", [(1, 3, -1, 16), (1, 3, 0, 16), (1, 3, 2.5, 16), ()])
def test_bad_input_shape_is_named(shape):
    with pytest.raises(ValueError, match=r"input_shape must be positive integers like \(1, 3, 224, 224\)"):
        fscnn_tvm.compile(models.from_spec("resnet18"), shape)


@pytest.mark.parametrize("spec, match", [("resnet18@0.9.1", "sparsity '0.9.1' is not a number"),
                                         ("resnet18@1.5", r"sparsity must be in \[0, 1\), got 1.5")])
def test_bad_zoo_spec(spec, match):
    with pytest.raises(ValueError, match=match):
        fscnn_tvm.compile(spec, SHAPE)


def test_unknown_cpu_is_refused(capsys, tmp_path):
    assert main(["compile", "resnet18", "--input-shape", "1,3,32,32", "-o", str(tmp_path / "x.so"),
                 "--target", '{"kind":"llvm","mcpu":"nonexistent"}']) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LLVM does not know the CPU 'nonexistent'" in err


def test_output_paths(tmp_path, capsys):
    assert main(["compile", "resnet18", "--input-shape", "1,3,32,32", "-o", str(tmp_path)]) == 1
    assert f"{tmp_path}: is a directory; -o takes the path of the .so to write" in capsys.readouterr().err
    missing = tmp_path / "nowhere" / "x.pt2"
    assert main(["prune", "resnet18", "--sparsity", "0.5", "-o", str(missing)]) == 1
    assert f"output folder {missing.parent} does not exist" in capsys.readouterr().err


def test_prune_with_a_wrong_channel_count(tmp_path, capsys):
    assert main(["prune", "resnet18", "--sparsity", "0.5", "--input-shape", "1,4,32,32",
                 "-o", str(tmp_path / "x.pt2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fscnn-tvm: error: resnet18: torch.export failed for input shape (1, 4, 32, 32)")
    assert err.count("\n") == 1


def test_run_cli_inputs(library, tmp_path, capsys):
    path = str(library[0])
    x = random_input(SHAPE)
    np.savez(tmp_path / "one.npz", x=x)
    assert main(["run", path, "--input", str(tmp_path / "one.npz")]) == 0
    assert "output shape (1, 1000)" in capsys.readouterr().out
    np.savez(tmp_path / "two.npz", a=x, b=x)
    assert main(["run", path, "--input", str(tmp_path / "two.npz")]) == 1
    assert "an .npz with 2 arrays (a, b)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", path, "--repeat", "-3"])
    assert exit_info.value.code == 2 and "must be >= 0, got -3" in capsys.readouterr().err


def test_tune_log_dir_that_is_a_file(tmp_path, capsys):
    log = tmp_path / "log"
    log.write_text("not a folder")
    assert main(["tune", "resnet18", "--input-shape", "1,3,32,32", "--log-dir", str(log)]) == 1
    assert f"{log}: is a file; the tuning log is a folder" in capsys.readouterr().err


def test_corrupt_pt2_gives_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"PK\x03\x04 cut short")
    assert main(["compile", str(bad), "-o", str(tmp_path / "x.so")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.pt2: not a readable torch.export .pt2 file" in err


def test_importer_failure_names_the_op_and_node():
    """A positional encoding with floor division on a float tensor: TVM's importer raised a
    TypeError from deep inside; now one error names the op and the node."""

    class PositionalEncoding(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y + y // x.shape[-1]

    with pytest.raises(ImporterError, match=r"PositionalEncoding: cannot import op div.Tensor_mode at node div"):
        fscnn_tvm.compile(PositionalEncoding().eval(), (1, 3, 8, 8))


# ---------------------------------------------------------------- compile-time verification

def test_verify_reports_every_output(tmp_path, capsys):
    compiled = fscnn_tvm.compile("resnet18@0.5", SHAPE, verify=True)
    assert compiled.verification.ok and compiled.verification.reference == "PyTorch"
    assert len(compiled.verification.errors) == 1 and compiled.verification.errors[0] <= TOLERANCE
    assert main(["compile", "resnet18", "--input-shape", "1,3,32,32", "--verify", "-o", str(tmp_path / "x.so")]) == 0
    assert "verified resnet18 against PyTorch: output 0:" in capsys.readouterr().err


def test_verify_fails_above_the_tolerance():
    from fscnn_tvm.verify import verify

    compiled = fscnn_tvm.compile(models.from_spec("resnet18", seed=0), SHAPE)
    with pytest.raises(VerificationError, match="ABOVE the tolerance"):
        verify(compiled, models.from_spec("resnet18", seed=1))  # other weights: must not pass


def test_verify_onnx_against_onnxruntime(tmp_path):
    model = models.from_spec("resnet18")
    path = tmp_path / "r18.onnx"
    torch.onnx.export(model, (torch.zeros(SHAPE),), str(path), input_names=["x"], dynamo=False)
    compiled = fscnn_tvm.compile(str(path), SHAPE, verify=True)
    assert compiled.verification.reference == "ONNX Runtime" and compiled.verification.ok


def test_shape_subgraphs_fold(tmp_path):
    """A flatten exported with a dynamic batch: Shape -> Gather -> Unsqueeze -> Concat -> Reshape,
    which TVM's importer refused; folded once the input shape is fixed."""
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.reshape(y.shape[0], -1))

    model = randomize_(Head())
    path = tmp_path / "flatten.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, 8, 8),), str(path), input_names=["x"], dynamo=False,
                      dynamic_axes={"x": {0: "batch"}})
    import onnx

    assert "Shape" in {n.op_type for n in onnx.load(path).graph.node}
    for batch in (1, 3):
        x = random_input((batch, 3, 8, 8))
        compiled = fscnn_tvm.compile(str(path), (batch, 3, 8, 8))
        assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True),
                                  nn.MaxPool2d(3, 1, padding=1, dilation=2), nn.MaxPool2d((2, 3), (1, 2))],
                         ids=["2x2", "3x3s2p1", "3x3s2-ceil", "3x3-dilation2", "2x3s1x2"])
def test_max_pool_matches_torch_with_and_without_nan(pool):
    """max_pool2d is our NaN-keeping window max (nan_safe.legalize_max_pool2d) for every shape."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), pool).eval()
    compiled = fscnn_tvm.compile(model, (1, 3, 11, 13))
    x = random_input((1, 3, 11, 13))
    assert relative_error(compiled(x), torch_reference(model, x)) <= TOLERANCE
    x[0, 1, 5, 6] = np.nan
    assert np.array_equal(np.isnan(compiled(x)), np.isnan(torch_reference(model, x)))


@pytest.mark.parametrize("mcpu", ["znver3", "znver4"])
@pytest.mark.parametrize("shape", [(2, 5, 9, 15), (1, 3, 70, 66)], ids=["batch2-small-planes", "large-planes"])
def test_max_pool_padded_per_plane_group(mcpu, shape):
    """The pool pads its planes a group at a time (small planes several, a group within one
    image; large planes one each), for both vector widths, with NaN kept."""
    model = nn.Sequential(nn.Conv2d(shape[1], shape[1], 1), nn.MaxPool2d(3, 2, padding=1)).eval()
    compiled = fscnn_tvm.compile(model, shape, target={"kind": "llvm", "mcpu": mcpu})
    x = random_input(shape)
    x[-1, -1, 4, 7] = np.nan
    out, ref = compiled(x), torch_reference(model, x)
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    assert relative_error(np.nan_to_num(out), np.nan_to_num(ref)) <= TOLERANCE
