"""Import: a torch module, an ExportedProgram, a ``.pt2`` or ``.onnx`` file, or a zoo spec -> Relax.

The result has every weight bound as a constant and batch norm folded into the preceding conv
(folding scales output channels, so zeros stay zeros) before any sparse decision is made.
Unsupported operators are listed all at once. Files are never unpickled as code: ``.pt2`` goes
through ``torch.export.load`` and ONNX through ``onnx.load``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import tvm
from tvm import relax

from . import tvm_compat
from .canonicalize import canonicalize
from .errors import ModelLoadError, UnsupportedOperatorError

_TORCH_LAYER_OPS = {"conv2d.default": 1, "convolution.default": 1, "linear.default": 1,
                    "addmm.default": 2, "mm.default": 1}
_TORCH_TRANSPOSES = {"permute.default", "t.default", "transpose.int"}
_ONNX_LAYER_OPS = {"Conv", "Gemm", "MatMul"}


@dataclass
class ImportedModel:
    """A model as a Relax module ready for planning."""

    mod: tvm.IRModule
    input_shape: tuple[int, ...]
    layer_names: list[str]  # conv/linear names in graph order (torch module paths when known)
    source: str  # what was imported, for messages


def _fold(mod: tvm.IRModule) -> tvm.IRModule:
    # Order matters: batch norm must be folded into constant conv weights before FoldConstant
    # computes the folded arrays; the plan then sees the weights the kernels will run.
    # Batch norms TVM cannot fold (e.g. after a conv with bias) become per-channel
    # subtract/divide/multiply/add by constants, which find_layers folds into the layer.
    mod = relax.transform.FoldBatchnormToConv2D()(mod)
    mod = relax.transform.DecomposeOpsForInference()(mod)
    mod = relax.transform.FoldConstant()(mod)
    mod = relax.transform.CanonicalizeBindings()(mod)  # (y, mean, var)[0] -> y
    mod = canonicalize(mod)  # after folding: the rewrites need constant weights
    return relax.transform.DeadCodeElimination(["main"])(mod)


def check_shape(shape, source: str) -> None:
    """``shape`` must be a sequence of positive integers."""
    try:
        ok = len(shape) > 0 and all(int(d) == d and int(d) > 0 for d in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{source}: input_shape must be positive integers like (1, 3, 224, 224), got {shape!r}")


# ----------------------------------------------------------------------------- torch
def _torch_layer_names(ep) -> list[str]:
    params = dict(ep.graph_signature.inputs_to_parameters)
    names = []
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        pos = _TORCH_LAYER_OPS.get(getattr(node.target, "__name__", ""))
        if pos is None or len(node.args) <= pos:
            continue
        weight = node.args[pos]
        while getattr(weight, "op", None) == "call_function" and getattr(
                weight.target, "__name__", "") in _TORCH_TRANSPOSES:
            weight = weight.args[0]
        name = params.get(getattr(weight, "name", ""), "")
        names.append(name[: -len(".weight")] if name.endswith(".weight") else name or node.name)
    return names


def input_shape_of(ep) -> tuple[int, ...]:
    user_inputs = ep.graph_signature.user_inputs
    if len(user_inputs) != 1:
        raise ValueError(f"expected a model with one input tensor, got {len(user_inputs)} inputs "
                         f"({', '.join(user_inputs)})")
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
    val = node.meta.get("val")
    try:
        return tuple(int(d) for d in val.shape)
    except (AttributeError, TypeError):
        raise ValueError("the exported program's input has a dynamic shape; export it with a "
                         "static example input") from None


def from_exported_program(ep, source: str = "ExportedProgram", input_shape=None) -> ImportedModel:
    """``input_shape``, if given, must be the program's: an ExportedProgram is fixed at export."""
    ep = ep.run_decompositions()
    convert_map = tvm_compat.torch_convert_map()
    missing = sorted({getattr(n.target, "__name__", str(n.target)) for n in ep.graph.nodes
                      if n.op == "call_function"
                      and getattr(n.target, "__name__", str(n.target)) not in convert_map})
    if missing:
        raise UnsupportedOperatorError(source, missing)
    exported = input_shape_of(ep)
    if input_shape is not None and tuple(int(d) for d in input_shape) != exported:
        raise ValueError(f"{source}: input_shape {tuple(input_shape)} does not match the exported program's input "
                         f"shape {exported}; a .pt2 is fixed at export (export it again with that shape)")
    input_shape = exported
    mod = tvm_compat.torch_to_relax(ep, source)
    return ImportedModel(_fold(mod), input_shape, _torch_layer_names(ep), source)


def from_torch(model, input_shape: tuple[int, ...], source: str = "torch module") -> ImportedModel:
    import torch  # noqa: PLC0415 - torch is needed only to import models

    if input_shape is None:
        raise ValueError(f"{source}: input_shape is required to import a torch.nn.Module "
                         "(e.g. input_shape=(1, 3, 224, 224))")
    check_shape(input_shape, source)
    example = torch.zeros(tuple(int(d) for d in input_shape))
    try:
        model.eval()
    except NotImplementedError:  # the module of an ExportedProgram (ep.module()): already traced for inference
        pass
    try:
        ep = torch.export.export(model, (example,))
    except Exception as err:  # torch raises many error types from tracing user code
        raise ValueError(f"{source}: torch.export failed for input shape {tuple(input_shape)}: "
                         f"{str(err).splitlines()[0]}") from None
    return from_exported_program(ep, source)


# ----------------------------------------------------------------------------- ONNX
def from_onnx(path: str, input_shape: tuple[int, ...] | None = None) -> ImportedModel:
    """An ONNX file: its input fixed to ``input_shape`` (dynamic dimensions take any value), its
    shape subgraphs folded (``onnx_fold``), then TVM's importer (a failure names the node)."""
    import onnx  # noqa: PLC0415 - optional dependency, only for .onnx files

    from . import onnx_fold  # noqa: PLC0415

    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as err:  # protobuf decode errors, checker errors
        raise ModelLoadError(f"{path}: not a valid ONNX model ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if input_shape is not None:
        check_shape(input_shape, path)
    try:
        name, dims = onnx_fold.input_dims(model)
        if input_shape is None and any(d is None for d in dims):
            raise ValueError(f"input {name} has dynamic dimensions {onnx_fold.shape_text(dims)}; pass "
                             "input_shape (--input-shape) to fix them")
        shape = tuple(int(d) for d in (input_shape if input_shape is not None else dims))
        model, _ = onnx_fold.make_static(model, shape)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    known = tvm_compat.onnx_convert_map()
    missing = sorted({n.op_type for n in model.graph.node if n.op_type not in known})
    if missing:
        raise UnsupportedOperatorError(path, missing)
    mod = tvm_compat.onnx_to_relax(model, {name: list(shape)}, path)
    names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)
             if n.op_type in _ONNX_LAYER_OPS]
    return ImportedModel(_fold(mod), shape, names, path)


# ----------------------------------------------------------------------------- dispatch
def import_model(model, input_shape: tuple[int, ...] | None = None) -> ImportedModel:
    """Import ``model``: an ``nn.Module`` (with ``input_shape``), an ``ExportedProgram``, a path
    to a ``.pt2`` or ``.onnx`` file, or a zoo spec such as ``"resnet50@0.9"`` (strings other than
    ``.onnx`` paths are resolved by ``models.resolve``)."""
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if text.endswith(".onnx") and os.path.exists(text):
            return from_onnx(text, input_shape)
        from . import models  # noqa: PLC0415 - imports torch

        resolved = models.resolve(text)
        if type(resolved).__name__ == "ExportedProgram":
            return from_exported_program(resolved, text, input_shape)
        return from_torch(resolved, input_shape or models.DEFAULT_INPUT_SHAPE, source=text)
    type_name = type(model).__name__
    if type_name == "ExportedProgram":
        return from_exported_program(model, input_shape=input_shape)
    import torch  # noqa: PLC0415

    if isinstance(model, torch.nn.Module):
        return from_torch(model, input_shape, source=type_name)
    raise TypeError(f"cannot import a {type_name}; expected an nn.Module, an ExportedProgram, "
                    "a .pt2/.onnx path or a zoo spec")
