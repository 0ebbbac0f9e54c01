"""``fscnn-tvm``: the command line over the Python API. Quiet by default, ``-v`` for more.

Exit codes: 0 success, 1 a domain error (bad model, input or option value; one line on stderr),
2 a usage error (argparse), 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

DEMO_MODEL = "resnet18@0.9"
DEMO_SHAPE = (1, 3, 224, 224)


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,3,224,224, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"dimensions must be positive, got {text!r}")
    return dims


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _output_file(path: str, what: str) -> str:
    """``path`` as an output file: its folder must exist and it must not be a folder itself."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory; -o takes the path of the {what} to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{path}: output folder {folder} does not exist")
    return path


def _add_compile_options(p: argparse.ArgumentParser, tuning_log: bool = True) -> None:
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W",
                   help="input shape (default: 1,3,224,224 for zoo models; from the file otherwise)")
    p.add_argument("--target", default="llvm",
                   help="'llvm' (this CPU, the default), 'cuda', or a TVM target as JSON")
    p.add_argument("--sparse", choices=("auto", "always", "never"), default="auto",
                   help="per-layer sparse kernel choice (default: auto, by the performance model)")
    _add_winograd_option(p)
    _add_profile_option(p)
    _add_calibration_option(p)
    if tuning_log:
        p.add_argument("--tuning-log", metavar="DIR",
                       help="apply the tuning records in DIR (from `fscnn-tvm tune`); per kernel a "
                            "record is used only where it measured faster than the hand schedule")


def _add_calibration_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration-data", metavar="X.npy",
                   help="sample inputs (N,C,H,W float32 .npy): each layer's input zeros are measured "
                        "on them and the plan weighs the activation-sparse kernel there")


def _add_winograd_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-winograd", dest="winograd", action="store_false",
                   help="keep dense 3x3 layers on the direct convolution (its numerics) instead of "
                        "Winograd where that is predicted faster")


def _add_profile_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", metavar="PROFILE.json",
                   help="performance profile (default: tuning_logs/<target>/profile.json, else built-in)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fscnn-tvm", description="Compile pruned CNNs to fast sparse/dense code with Apache TVM.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show progress (-v) and details (-vv) on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="compile a model to a shared library",
                       description="MODEL is a zoo spec (resnet50, resnet50@0.9), a .pt2 or an .onnx file.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", required=True, help="path of the .so to write")
    p.add_argument("--verify", action="store_true",
                   help="run the source model (torch, or ONNX Runtime for .onnx) and the compiled one on the "
                        "same random input; fail if they differ by more than 1e-4 of max |output|")
    _add_compile_options(p)

    p = sub.add_parser("tune", help="tune a model's kernels and write tuning records",
                       description="MODEL is a zoo spec, a .pt2 or an .onnx file. Measures configurations "
                                   "of every distinct kernel of the model's plan (MetaSchedule, XGBoost "
                                   "cost model) and writes the records to DIR; `compile --tuning-log DIR` "
                                   "applies them. An interrupted run keeps its records; rerun to resume.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--trials", type=int, default=8, metavar="N",
                   help="MetaSchedule trials per dense conv kernel (default 8; sparse kernels measure "
                        "a fixed handful of configurations)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="where the records go (default: tuning_logs/<target-tag>/<model>/)")
    p.add_argument("--rpc-tracker", metavar="HOST:PORT",
                   help="measure on the devices registered with this TVM RPC tracker (builds stay local)")
    p.add_argument("--rpc-key", metavar="KEY", help="device key of the RPC servers (with --rpc-tracker)")
    _add_compile_options(p, tuning_log=False)

    p = sub.add_parser("run", help="run a compiled library")
    p.add_argument("library", metavar="LIBRARY.so")
    p.add_argument("--input", help=".npy input (default: seeded random data of the model's shape)")
    p.add_argument("--output", help="write the output to this .npy file")
    p.add_argument("--repeat", type=_count, default=0, metavar="N",
                   help="time N runs and print the median and min latency")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")

    p = sub.add_parser("prune", help="magnitude-prune a model and save it as a .pt2",
                       description="MODEL is a zoo name (resnet50) or a .pt2 file; every conv and "
                                   "linear weight but the first conv is pruned to SPARSITY.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", required=True, help="path of the .pt2 to write")
    p.add_argument("--sparsity", type=float, metavar="S",
                   help="fraction of zeros, 0..1 (with --guided: the most any layer gets, default 0.9)")
    p.add_argument("--block", type=int, default=1, metavar="R",
                   help="share each zero pattern across R output channels (BSR-friendly, e.g. 8)")
    p.add_argument("--guided", action="store_true",
                   help="prune only the layers the performance model says will run faster, each to "
                        "its useful sparsity; prints the per-layer prediction")
    p.add_argument("--target", default="llvm", help="target the guided pruning predicts for")
    _add_profile_option(p)
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W",
                   help="example input for torch.export (default: 1,3,224,224 or the .pt2's)")

    p = sub.add_parser("explain", help="show the per-layer plan with predicted (and measured) times",
                       description="MODEL is a zoo spec, a .pt2 or an .onnx file. Prints, per conv/linear, "
                                   "the predicted time of each kernel kind, the choice and why.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W")
    p.add_argument("--target", default="llvm", help="'llvm' (this CPU, the default) or a TVM target as JSON")
    _add_winograd_option(p)
    _add_profile_option(p)
    _add_calibration_option(p)
    p.add_argument("--measure", action="store_true",
                   help="also time every candidate kernel of every layer on this machine")

    p = sub.add_parser("calibrate", help="measure this machine and write a performance profile",
                       description="Times a fixed set of layers with every kernel kind and fits the "
                                   "performance model's rates (about a minute; --quick: seconds).")
    p.add_argument("--target", default="llvm", help="'llvm' (this CPU, the default) or a TVM target as JSON")
    p.add_argument("-o", "--output", help="profile path (default: tuning_logs/<target-tag>/profile.json)")
    p.add_argument("--quick", action="store_true", help="fewer layers: a rough profile in seconds")

    p = sub.add_parser("demo", help=f"compile {DEMO_MODEL}, run it, check it against PyTorch")
    p.add_argument("--model", default=DEMO_MODEL, help=f"zoo spec (default {DEMO_MODEL})")
    p.add_argument("--input-shape", type=_shape, default=DEMO_SHAPE, metavar="N,C,H,W")
    p.add_argument("--repeat", type=_count, default=10, metavar="N")
    return parser


def _cmd_compile(args) -> int:
    import fscnn_tvm  # noqa: PLC0415

    _output_file(args.output, ".so")
    compiled = fscnn_tvm.compile(args.model, input_shape=args.input_shape, target=args.target,
                                 sparse=args.sparse, profile=args.profile, tuning_log=args.tuning_log,
                                 verify=args.verify, winograd=args.winograd,
                                 calibration_data=args.calibration_data)
    if args.verify:
        print(compiled.verification.format(), file=sys.stderr)
    compiled.export_library(args.output)
    if args.verbose:
        print(compiled.explain(), file=sys.stderr)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _cmd_tune(args) -> int:
    from . import tuning  # noqa: PLC0415

    report = tuning.tune(args.model, input_shape=args.input_shape, target=args.target, trials=args.trials,
                         log_dir=args.log_dir, sparse=args.sparse, profile=args.profile,
                         rpc_tracker=args.rpc_tracker, rpc_key=args.rpc_key,
                         progress=args.verbose > 0 or sys.stderr.isatty(), winograd=args.winograd,
                         calibration_data=args.calibration_data)
    print(report.format())
    return 0


def _cmd_run(args) -> int:
    import numpy as np  # noqa: PLC0415

    from . import runtime  # noqa: PLC0415 - no torch on this path

    runner = runtime.load(args.library, device=args.device)
    if args.input:
        if not os.path.isfile(args.input):
            raise ValueError(f"{args.input}: no such file")
        try:
            x = np.load(args.input, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ValueError(f"{args.input}: not a .npy array ({err})") from None
        if isinstance(x, np.lib.npyio.NpzFile):  # an .npz archive: one array in it is the input
            names = list(x.files)
            if len(names) != 1:
                raise ValueError(f"{args.input}: an .npz with {len(names)} arrays ({', '.join(names) or 'none'}); "
                                 "give a .npy file, or an .npz holding exactly the input")
            x = x[names[0]]
    else:
        x = np.random.default_rng(0).standard_normal(runner.input_shape).astype(runner.input_dtype)
    y = runner(x)
    if args.output:
        np.save(_output_file(args.output, ".npy"), y)
    else:
        first = y if isinstance(y, np.ndarray) else y[0]
        print(f"output shape {first.shape}, argmax {int(first.reshape(first.shape[0], -1).argmax(1)[0])}")
    if args.repeat > 0:
        times = np.array(runner.benchmark(x, repeat=args.repeat)) * 1e3
        print(f"latency over {args.repeat} runs: median {np.median(times):.3f} ms, min {times.min():.3f} ms")
    return 0


def _cmd_demo(args) -> int:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import models  # noqa: PLC0415
    from fscnn_tvm.testing import time_torch  # noqa: PLC0415

    print(f"compiling {args.model} for this CPU, input {args.input_shape} ...", flush=True)
    start = time.perf_counter()
    model = models.from_spec(args.model)
    compiled = fscnn_tvm.compile(model, input_shape=args.input_shape)
    print(f"compiled in {time.perf_counter() - start:.1f} s\n")
    print(compiled.explain(), "\n")
    x = np.random.default_rng(0).standard_normal(args.input_shape).astype("float32")
    y = compiled(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    err = float(np.abs(y - ref).max() / np.abs(ref).max())
    print(f"max abs error vs PyTorch: {err:.2e} of max |output| ({'OK' if err <= 1e-4 else 'MISMATCH'})")
    ours = np.median(compiled.benchmark(x, repeat=args.repeat)) * 1e3
    theirs = np.median(time_torch(model, x, repeat=args.repeat)) * 1e3
    print(f"latency (median of {args.repeat}, {torch.get_num_threads()} torch threads): "
          f"fscnn-tvm {ours:.2f} ms, PyTorch {theirs:.2f} ms, speedup {theirs / ours:.2f}x")
    return 0 if err <= 1e-4 else 1


def _cmd_prune(args) -> int:
    import torch  # noqa: PLC0415

    from . import frontend, models, prune  # noqa: PLC0415

    if args.block < 1:
        raise ValueError(f"--block must be >= 1, got {args.block}")
    if args.sparsity is None and not args.guided:
        raise ValueError("prune: give --sparsity S, or --guided")
    if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
        raise ValueError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    _output_file(args.output, ".pt2")
    if args.model.endswith(".onnx"):
        raise ValueError(f"{args.model}: prune works on torch models (a zoo name or a .pt2 file), not ONNX")
    model = models.resolve(args.model)
    if isinstance(model, torch.nn.Module):
        shape = args.input_shape or models.DEFAULT_INPUT_SHAPE
    else:  # an ExportedProgram from a .pt2
        shape = args.input_shape or frontend.input_shape_of(model)
        model = model.module()
    block = None if args.block == 1 else (args.block, 1)
    if args.guided:
        from .guided import prune as guided_prune  # noqa: PLC0415

        report = guided_prune(model, shape, args.target, args.profile,
                              max_sparsity=args.sparsity if args.sparsity is not None else 0.9, block=block)
        print(report.format())
    else:
        prune.magnitude(model, args.sparsity, block=block)
    frontend.check_shape(shape, "--input-shape")
    try:
        ep = torch.export.export(model, (torch.zeros(shape),))
    except Exception as err:  # torch raises many error types from tracing (a guard, a shape mismatch)
        raise ValueError(f"{args.model}: torch.export failed for input shape {tuple(shape)}: "
                         f"{str(err).strip().splitlines()[0]}") from None
    torch.export.save(ep, args.output)
    if args.verbose:
        for name, sparsity in prune.weight_sparsity(model).items():
            print(f"{name:40s} {sparsity:.3f}", file=sys.stderr)
    return 0


def _cmd_explain(args) -> int:
    from .explain import explain  # noqa: PLC0415

    report = explain(args.model, args.input_shape, args.target, args.profile, measure=args.measure,
                     progress=args.verbose > 0, winograd=args.winograd, calibration_data=args.calibration_data)
    print(report.format())
    return 0


def _cmd_calibrate(args) -> int:
    from . import calibrate, profiles, targets  # noqa: PLC0415

    target = targets.parse(args.target)
    profile = calibrate.calibrate(target, quick=args.quick, progress=args.verbose > 0)
    path = profile.save(args.output or profiles.default_profile_path(target))
    print(f"wrote {path}: {profile.meta['samples']} measurements, fit median relative error "
          f"{profile.meta['fit_median_relative_error']:.1%}")
    return 0


COMMANDS = {"compile": _cmd_compile, "tune": _cmd_tune, "run": _cmd_run, "prune": _cmd_prune, "demo": _cmd_demo,
            "explain": _cmd_explain, "calibrate": _cmd_calibrate}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(format="fscnn-tvm: %(message)s", stream=sys.stderr,
                        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)])
    if not args.verbose:
        import warnings  # noqa: PLC0415

        from .errors import ProfileWarning, TuningLogWarning  # noqa: PLC0415

        warnings.filterwarnings("ignore")  # torch.export's deprecation chatter
        warnings.filterwarnings("default", category=ProfileWarning)  # but say when a guess is used
        warnings.filterwarnings("default", category=TuningLogWarning)  # or records are left out
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        kept = "; finished tuning records are kept, rerun to resume" if args.command == "tune" else ""
        print(f"fscnn-tvm: interrupted{kept}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, NotImplementedError, OSError) as err:
        if args.verbose >= 2:
            raise
        print(f"fscnn-tvm: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
