"""Compiled libraries: export, load in a fresh process without torch, input checks, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import fscnn_tvm
from fscnn_tvm import models, profiles, targets
from fscnn_tvm.cli import main
from fscnn_tvm.errors import InputError, ModelLoadError
from fscnn_tvm.testing import TOLERANCE, random_input, relative_error, torch_reference

SHAPE = (1, 3, 32, 32)
CLI = [sys.executable, "-m", "fscnn_tvm.cli"]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """resnet18@0.9 compiled through the CLI (a subprocess), with the PyTorch reference."""
    folder = tmp_path_factory.mktemp("lib")
    path = folder / "resnet18.so"
    # an explicit profile: the committed ones cover only some CPUs, and a missing one warns
    profile = profiles.builtin_profile(targets.parse("llvm")).save(folder / "profile.json")
    done = subprocess.run(CLI + ["compile", "resnet18@0.9", "--input-shape", "1,3,32,32", "-o", str(path),
                                 "--profile", profile],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # quiet by default
    x = random_input(SHAPE, seed=3)
    np.save(folder / "x.npy", x)
    return path, x, torch_reference(models.from_spec("resnet18@0.9"), x)


def test_cli_run_in_fresh_process(library, tmp_path):
    path, x, expected = library
    out = tmp_path / "y.npy"
    done = subprocess.run(CLI + ["run", str(path), "--input", str(path.parent / "x.npy"), "--output", str(out),
                                 "--repeat", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "median" in done.stdout and "min" in done.stdout
    assert done.stderr == ""  # loading prints nothing (TVM logs a line per constant otherwise)
    assert relative_error(np.load(out), expected) <= TOLERANCE


def test_runtime_needs_no_torch(library):
    path, x, expected = library
    # torch made unimportable, as on a machine without it (TVM itself imports torch if present)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import json, numpy as np, fscnn_tvm\n"
        f"r = fscnn_tvm.load({str(path)!r})\n"
        f"y = r(np.load({str(path.parent / 'x.npy')!r}))\n"
        "print(json.dumps({'torch': sys.modules['torch'] is not None, 'y': y.tolist(), 'layers': len(r.plan)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["torch"] is False
    assert result["layers"] == 21
    assert relative_error(np.array(result["y"], dtype="float32"), expected) <= TOLERANCE


def test_input_checks(library):
    runner = fscnn_tvm.load(str(library[0]))
    with pytest.raises(InputError, match=r"input has shape \(1, 3, 31, 32\), expected \(1, 3, 32, 32\)"):
        runner(np.zeros((1, 3, 31, 32), "float32"))
    with pytest.raises(InputError, match="input has dtype float64, expected float32"):
        runner(np.zeros(SHAPE))


def test_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="missing.so: no such file"):
        fscnn_tvm.load(str(tmp_path / "missing.so"))
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not a library")
    with pytest.raises(ModelLoadError, match="junk.so: cannot load: not a 64-bit ELF shared library"):
        fscnn_tvm.load(str(junk))


def test_export_roundtrip_in_process(tmp_path):
    compiled = fscnn_tvm.compile("alexnet", input_shape=(1, 3, 64, 64))
    path = compiled.export_library(str(tmp_path / "alexnet.so"))
    x = random_input((1, 3, 64, 64))
    np.testing.assert_array_equal(fscnn_tvm.load(path)(x), compiled(x))
    assert [r.name for r in fscnn_tvm.load(path).plan][:2] == ["features.0", "features.3"]


def test_cli_errors(tmp_path, capsys):
    assert main(["compile", "nope.onnx", "-o", str(tmp_path / "x.so")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "fscnn-tvm: error: nope.onnx: no such file, and not a zoo model spec (NAME[@SPARSITY], e.g. resnet50@0.9)"
    assert main(["run", str(tmp_path / "missing.so")]) == 1
    assert "missing.so: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["compile", "resnet18", "-o", "x.so", "--input-shape", "1,a"])
    assert usage.value.code == 2
    assert main(["compile", "resnet18", "-o", str(tmp_path / "x.so"), "--target", "tpu"]) == 1
    assert "unknown target 'tpu'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["compile"], ["run"], ["prune"], ["explain"], ["tune"], ["calibrate"]])
def test_cli_help(command):
    """Every subcommand has --help: exit 0, usage on stdout, nothing on stderr (quiet by default)."""
    done = subprocess.run(CLI + command + ["--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: fscnn-tvm") and done.stderr == ""
    if not command:
        assert all(name in done.stdout for name in ("compile", "run", "tune", "explain", "demo"))


def test_cli_prune_block_then_compile(tmp_path):
    """prune --block 8 writes a .pt2 whose weights are block-pruned; compile picks BSR (8, or 4 where
    the CPU has 16 vector registers)."""
    out = tmp_path / "r18.pt2"
    assert main(["prune", "resnet18", "--sparsity", "0.9", "--block", "8", "--input-shape", "1,3,32,32",
                 "-o", str(out)]) == 0
    # the built-in profile: which sparse kind wins on this CPU's own profile is not the point here
    compiled = fscnn_tvm.compile(str(out), profile=profiles.builtin_profile(targets.parse("llvm")))
    assert compiled.plan[0].kernel == "dense"
    kinds = {r.kernel for r in compiled.plan if r.op == "conv2d"} - {"dense"}
    wide = targets.vector_lanes(targets.parse("llvm")) >= 16
    assert (kinds == {"bsr8"}) if wide else (bool(kinds) and kinds <= {"bsr8", "bsr4"}), kinds
    assert all(abs(r.sparsity - 0.9) < 0.02 for r in compiled.plan[1:])
    again = tmp_path / "again.pt2"  # a .pt2 can be pruned further (parameters of ep.module())
    assert main(["prune", str(out), "--sparsity", "0.95", "-o", str(again)]) == 0
    assert fscnn_tvm.compile(str(again)).plan[1].sparsity == pytest.approx(0.95, abs=0.01)


def test_cli_prune_errors(tmp_path, capsys):
    assert main(["prune", "nope.onnx", "--sparsity", "0.5", "-o", str(tmp_path / "x.pt2")]) == 1
    assert "nope.onnx: prune works on torch models (a zoo name or a .pt2 file), not ONNX" in capsys.readouterr().err
    assert main(["prune", "nope.pt2", "--sparsity", "0.5", "-o", str(tmp_path / "x.pt2")]) == 1
    assert "nope.pt2: no such file, and not a zoo model spec" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt2"  # the spec-or-.pt2 branch is models.resolve's, errors and all
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["prune", str(corrupt), "--sparsity", "0.5", "-o", str(tmp_path / "x.pt2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"fscnn-tvm: error: {corrupt}: not a readable torch.export .pt2 file") and err.count("\n") == 1
    assert main(["prune", "resnet18", "--sparsity", "1.5", "-o", str(tmp_path / "x.pt2")]) == 1
    assert "--sparsity must be in [0, 1), got 1.5" in capsys.readouterr().err
