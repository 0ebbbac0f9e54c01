"""``compile(..., verify=True)``: the compiled model against its source on the same random input.

In the spirit of TVM's ``verify_model_numerically``: the source model runs in PyTorch (modules,
ExportedPrograms, ``.pt2`` files, zoo specs) or in ONNX Runtime (``.onnx``, when installed), the
compiled one here, on one seeded random input; the largest error of every output, relative to
that output's max |reference|, must stay within the project's tolerance.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import VerificationError
from .testing import TOLERANCE, random_input, relative_error


@dataclass
class Verification:
    source: str
    reference: str  # what ran the source model: "PyTorch" | "ONNX Runtime"
    errors: list[float]  # per output: max |ours - reference| / max |reference|
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return all(e <= self.tolerance for e in self.errors)

    def format(self) -> str:
        parts = ", ".join(f"output {i}: {e:.2e}" for i, e in enumerate(self.errors))
        verdict = "OK" if self.ok else f"ABOVE the tolerance {self.tolerance:g}"
        return f"verified {self.source} against {self.reference}: {parts} of max |output| ({verdict})"


def _reference(model):
    """A function running the source model on a numpy input, and the name of what runs it."""
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".onnx"):
        try:
            import onnxruntime as ort  # noqa: PLC0415
        except ImportError:
            raise VerificationError(f"{model}: verify needs onnxruntime to run the ONNX model "
                                    "(pip install onnxruntime)") from None
        sess = ort.InferenceSession(os.fspath(model), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return (lambda x: sess.run(None, {name: x})), "ONNX Runtime"
    import torch  # noqa: PLC0415

    from . import models  # noqa: PLC0415

    if isinstance(model, (str, os.PathLike)):
        model = models.resolve(os.fspath(model))
    if type(model).__name__ == "ExportedProgram":
        model = model.module()

    def run(x):
        with torch.no_grad():
            out = model(torch.from_numpy(x))
        return [o.numpy() for o in out] if isinstance(out, (tuple, list)) else [out.numpy()]

    return run, "PyTorch"


def verify(compiled, model, seed: int = 0) -> Verification:
    """Run both on one seeded input; :class:`VerificationError` (with the report) above the tolerance."""
    run, reference = _reference(model)
    x = random_input(compiled.input_shape, seed)
    ours = compiled(x)
    ours = list(ours) if isinstance(ours, tuple) else [ours]
    refs = [np.asarray(r) for r in run(x)]
    if len(ours) != len(refs) or any(a.shape != b.shape for a, b in zip(ours, refs)):
        raise VerificationError(f"{compiled.source}: outputs {[a.shape for a in ours]} but {reference} gives "
                                f"{[b.shape for b in refs]}")
    report = Verification(compiled.source, reference, [relative_error(a, b) for a, b in zip(ours, refs)])
    if not report.ok:
        raise VerificationError(report.format())
    return report
