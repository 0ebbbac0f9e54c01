"""Every workaround for a behaviour of TVM 0.27.0.post1 (apache-tvm-ffi 0.1.14.post1), in one place.

Each entry says the symptom it works around. On a TVM upgrade, re-check this file: drop what the
new release fixed, and nothing else in the package needs a look for TVM quirks.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import types

import numpy as np

import tvm


def fresh_copy(func: tvm.tirx.PrimFunc) -> tvm.tirx.PrimFunc:
    """A deep copy of ``func``.

    Symptom: ``s_tir.Schedule`` rewrote the statements of the PrimFunc it was given in place (seen
    with the sparse conv's TVMScript function and with MetaSchedule's replayed traces): a second
    schedule of one kernel then failed to build. Whatever may be scheduled more than once is
    scheduled from a copy.
    """
    return tvm.ir.load_json(tvm.ir.save_json(func))


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide TVM's C++ log lines on file descriptor 2.

    Symptom: ``export_library`` and ``load_module`` print one warning line per bound constant
    (hundreds for a model), which Python's warning filters cannot reach.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def no_tensor_intrinsics():
    """A placeholder for ``tvm.s_tir.tensor_intrin`` while a MetaSchedule ``TuneContext`` is made.

    Symptom: ``ms.TuneContext`` imports ``tvm.s_tir.tensor_intrin``, which parses ~250 TVMScript
    intrinsics: 30-80 s here (the parser walks ``inspect.stack()`` and every frame scans
    ``sys.modules``). Our spaces tensorize nothing. The placeholder is removed after, so a real
    import later still works.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        sys.modules.pop(name, None)


@contextlib.contextmanager
def plain_text_statistics():
    """MetaSchedule's task statistics as text.

    Symptom: inside a Jupyter kernel MetaSchedule prints its statistics as a pandas table, and
    fails where pandas is not installed.
    """
    name = "s_tir.meta_schedule.using_ipython"
    original = tvm.get_global_func(name)
    tvm.register_global_func(name, lambda: False, override=True)
    try:
        yield
    finally:
        tvm.register_global_func(name, original, override=True)


def in_process_builder():
    """A MetaSchedule builder that builds each candidate in this process, one after another.

    Symptom: ``ms.builder.LocalBuilder`` starts two fresh worker pools per ``build`` call (~3 s
    each on 2 cores), more than most measurements take.
    """
    from tvm.ir.utils import derived_object  # noqa: PLC0415
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415
    from tvm.support.tar import tar  # noqa: PLC0415

    from . import fast_math  # noqa: PLC0415 - the builds must lower exp as the model build does

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    lib = fast_math.compile(item.mod, item.target)
                    path = os.path.join(tempfile.mkdtemp(prefix="fscnn-tune-"), "kernel." + tar.output_format)
                    lib.export_library(path, fcompile=tar)
                    results.append(ms.builder.BuilderResult(path, None))
                except Exception as err:  # noqa: BLE001 - a candidate that fails to build is skipped
                    results.append(ms.builder.BuilderResult(None, f"{type(err).__name__}: {err}"))
            return results

    return InProcessBuilder()


def records_of(db, func: tvm.tirx.PrimFunc) -> list:
    """Every tuning record of ``func``'s workload in a MetaSchedule database.

    Symptom: ``Database.get_top_k`` returned nothing for workloads that held records, so they are
    filtered from ``get_all_tuning_records`` by hand.
    """
    mod = tvm.IRModule({"main": func})
    if not db.has_workload(mod):
        return []
    workload = db.commit_workload(mod)
    return [r for r in db.get_all_tuning_records() if r.workload.same_as(workload)]


_SUBROUTINE_LOWERING = ("CanonicalizeLoop", "LowerInitBlock", "PlanAndUpdateBufferAllocationLocation",
                        "ConvertBlocksToOpaque", "CompactBufferAllocation", "LowerMatchBuffer",
                        "LowerOpaqueBlock", "FlattenBuffer", "LoopPartition")
_ALLOC = re.compile(r'^( +)(\w+) = T\.alloc_buffer\(\((\d+),\)(?:, "(\w+)")?(?:, annotations=\{(.*)\})?\)$', re.M)


def as_subroutine(func: tvm.tirx.PrimFunc, shapes: list[tuple], symbol: str) -> tuple[tvm.tirx.PrimFunc, list[tuple]]:
    """A scheduled PrimFunc as a function another PrimFunc of the module calls by its GlobalVar
    (``tvm.ir.Call(gv, [a.data, b.data, ..., w.data, ...], ret_ty="int32")``: one data pointer
    per buffer parameter, in order, then one per workspace). ``shapes``: each parameter's shape;
    ``symbol``: its global symbol (its symbolic sizes take their values from ``shapes``).
    Returns the function and its workspaces, ``(elements, dtype)`` each, which the caller
    allocates.

    Symptoms, each worked around here:

    - a private PrimFunc with buffer parameters failed to build ("This pass must be called after
      MakePackedAPI": only public functions get the packed calling convention that unpacks
      buffers), so the parameters are data pointers with the buffers declared over them;
    - a Relax build gives every PrimFunc a global symbol (``AttachGlobalSymbol``), and a call to a
      public one becomes a packed call with one argument more than the function takes (a null
      resource handle: "Expected 3 arguments"), and failed untyped ("Packed calls may return
      only primitive or pointer types"). So the function is public from the start (the same call
      in a kernel built alone and in a model) and takes that trailing handle;
    - one whose body is not a block at its root failed in the s_tir lowering (the declarations
      sit above the root block), so the function is lowered past its blocks first (the s_tir
      passes up to ``LowerOpaqueBlock``, then flattened: plain loops, which the rest of the
      pipeline takes like our TVMScript kernels) and re-read from its TVMScript;
    - a workspace too large for the stack failed to lower without a device ("Unknown device id
      in current IR"; pointer parameters give the packed API none to read), and one declared in
      the body was not enough: ``StorageRewrite`` hoists the allocations outside parallel loops
      above it. So those become the caller's (pointer parameters), and the device (the CPU) is
      declared for the per-thread ones inside parallel loops, which stay; their
      ``buffer_dim_align`` (the padded strides, already in the flattened indices) named an axis
      the flat buffer no longer has and failed the second lowering.
    """
    from tvm import s_tir  # noqa: PLC0415

    lower = tvm.ir.transform.Sequential([(getattr(s_tir.transform, name, None) or getattr(tvm.tirx.transform, name))()
                                         for name in _SUBROUTINE_LOWERING])
    text = lower(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}))["main"].script()
    head = re.search(r"^def main\((.*)\):$", text, re.M)
    names = re.findall(r'(\w+): T\.Buffer\(\(', head.group(1)) if head else []
    if len(names) != len(func.params) or len(shapes) != len(names):
        raise RuntimeError("internal: as_subroutine could not read the parameters of a kernel")
    dtypes = re.findall(r'T\.Buffer\(\([^)]*\), "(\w+)"\)', head.group(1))
    body = _bind_sizes(text[head.end():], re.findall(r'T\.Buffer\(\(([^)]*)\)', head.group(1)), shapes)
    body, workspaces = _caller_workspaces(body)
    names += [name for name, _, _ in workspaces]
    dtypes += [dtype for _, _, dtype in workspaces]
    shapes = list(shapes) + [(size,) for _, size, _ in workspaces]
    signature = ", ".join([f'{name}_ptr: T.handle("{dtype}")' for name, dtype in zip(names, dtypes)]
                          + ["resource_handle: T.handle"])
    decls = "".join(f'\n    {name} = T.decl_buffer({tuple(shape)}, "{dtype}", data={name}_ptr)'
                    for name, shape, dtype in zip(names, shapes, dtypes))
    attrs = re.match(r"\n    T\.func_attr\(.*\)", body)  # must stay the first statement
    at = attrs.end() if attrs else 0
    text = (re.sub(r"@T\.prim_func(\(.*\))?\n", "@T.prim_func\n", text[:head.start()])
            + f"def main({signature}):" + body[:at] + decls
            + '\n    T.attr("default", "device_id", 0)\n    T.attr("default", "device_type", 1)'  # kDLCPU
            + body[at:])
    return tvm.script.from_source(text).with_attr("global_symbol", symbol), [(n, d) for _, n, d in workspaces]


def _bind_sizes(body: str, dims: list[str], shapes: list[tuple]) -> str:
    """``body`` with each symbolic size of the parameters' shapes (``dims``: their printed
    dimensions; the sparse kernels' nonzero count) replaced by its value in ``shapes``."""
    for printed, shape in zip(dims, shapes):
        for dim, value in zip([d.strip().strip('"') for d in printed.split(",") if d.strip()], shape):
            if dim.isidentifier():
                body = re.sub(rf"^    {dim} = T\.int32\(\)\n", "", body, flags=re.M)
                body = re.sub(rf"\b{dim}\b", str(int(value)), body)
    return body


def _caller_workspaces(body: str) -> tuple[str, list[tuple]]:
    """``body`` without its allocations outside parallel loops (allocated once per call), and
    those as ``(name, elements, dtype)``; the per-thread ones inside parallel loops stay."""
    workspaces, lines, parallel = [], [], []  # parallel: the indents of the enclosing parallel loops
    for line in body.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        while line.strip() and parallel and indent <= parallel[-1]:
            parallel.pop()
        m = _ALLOC.match(line)
        if m and not parallel:
            _, name, size, dtype, _ = m.groups()
            workspaces.append((name, int(size), dtype or "float32"))
            continue
        if m:  # its padded strides are in the flat indices already
            line = re.sub(r', "buffer_dim_align": \[(\[[^\]]*\](, )?)*\]', "", line)
        if re.match(r" *for .* in T\.parallel\(", line):
            parallel.append(indent)
        lines.append(line)
    return "\n".join(lines), workspaces


def winograd_matrices(m: int, r: int):
    """(A, B, G) of Winograd F(m, r) as float64 numpy arrays: the Cook-Toom matrices topi uses,
    with the interpolation points of Barabasz et al. (the most accurate in fp32). topi only
    exposes them as TE constants; its numpy helpers are private, so they are reached here."""
    from tvm.topi.nn import winograd_util  # noqa: PLC0415

    points = winograd_util._interpolation_points(m + r - 2)  # noqa: SLF001
    return winograd_util._cook_toom_convolution(points, m, r)  # noqa: SLF001


def torch_convert_map() -> dict:
    """The torch ops TVM's ExportedProgram importer converts (a private table: no public listing
    exists, and we list every unsupported op at once before importing)."""
    from tvm.relax.frontend.torch.exported_program_translator import (  # noqa: PLC0415
        ExportedProgramImporter,
    )

    return ExportedProgramImporter().convert_map


def onnx_convert_map() -> set:
    """The ONNX ops TVM's importer converts (private, as for torch). ``Constant`` and ``If`` are
    handled by the importer itself, outside its table."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map  # noqa: PLC0415

    return set(_get_convert_map()) | {"Constant", "If"}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def torch_to_relax(ep, source: str):
    """TVM's ExportedProgram importer, naming the node it failed on.

    Symptom: a converter that fails (e.g. ``floor_divide`` on a float tensor: a ``TypeError``
    from inside a converter) surfaces as a bare traceback from deep in TVM. Each converter is
    wrapped to remember its node, and a failure becomes an :class:`ImporterError` naming the op,
    the node and the torch module it came from.
    """
    from tvm.relax.frontend.torch.exported_program_translator import (  # noqa: PLC0415
        ExportedProgramImporter,
    )

    from .errors import ImporterError  # noqa: PLC0415

    importer = ExportedProgramImporter()
    current = {}

    def remembering(convert):
        def run(node, *rest):
            current["node"] = node
            return convert(node, *rest)
        return run

    importer.convert_map = {k: remembering(v) for k, v in importer.convert_map.items()}
    try:
        return importer.from_exported_program(ep, False, False, False, None)
    except Exception as err:  # noqa: BLE001 - any converter failure becomes one error naming the node
        node = current.get("node")
        if node is None:
            raise ImporterError(f"{source}: TVM's torch importer failed: {_first_line(err)}") from None
        stack = node.meta.get("nn_module_stack") or {}
        layer = next(reversed(stack.values()))[0] if stack else "?"
        op = getattr(node.target, "__name__", str(node.target))
        raise ImporterError(f"{source}: cannot import op {op} at node {node.name} (layer {layer or 'top level'}): "
                            f"{type(err).__name__}: {_first_line(err)}") from None


def _constant_clip(inputs):
    """``relax.clip`` for an ONNX Clip (opset 11+) whose bounds are absent or scalar constants,
    else ``None``. TVM's converter writes every Clip as ``maximum``/``minimum`` kernels, which
    neither fuse into a conv's epilogue (relu6, hardswish) nor keep NaN (``nan_safe`` rewrites
    ``relax.clip``)."""
    from tvm import relax  # noqa: PLC0415

    x, *bounds = (list(inputs) + [None, None])[:3]
    values = []
    for bound, missing in zip(bounds, (-np.inf, np.inf)):
        value = bound.value.numpy() if isinstance(bound, tvm.ir.expr.Constant) else None
        if bound is None:
            values.append(missing)
        elif value is not None and value.size == 1 and np.issubdtype(value.dtype, np.floating):
            values.append(float(value.reshape(-1)[0]))
        else:
            return None
    if any(np.isnan(v) for v in values):
        return None  # ONNX reads a NaN bound as no bound: TVM's converter handles that
    return relax.op.clip(x, *values)


def onnx_to_relax(model, shape_dict: dict, source: str):
    """TVM's ONNX importer, naming the node it failed on.

    Symptom: a converter failure prints the node's inputs to stdout and re-raises whatever the
    converter raised (``AssertionError`` from ``emit_te``, ``TypeError`` from ``Reshape``), with no
    node name. The print is captured and the failure becomes an :class:`ImporterError` naming the
    op and the node.
    """
    from tvm.relax.frontend.onnx import onnx_frontend  # noqa: PLC0415

    from .errors import ImporterError  # noqa: PLC0415

    class NamingImporter(onnx_frontend.ONNXGraphImporter):
        current = None

        def _convert_operator(self, op_name, inputs, attrs, opset):
            self.current = (op_name, attrs.get("tvm_custom", {}).get("name"))
            if op_name == "Clip" and opset >= 11 and (clip := _constant_clip(inputs)) is not None:
                return self.bb.normalize(clip)  # as TVM's own _convert_operator returns it
            return super()._convert_operator(op_name, inputs, attrs, opset)

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = NamingImporter(shape_dict, "float32", keep_params_in_input=False, sanitize=True)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importer.from_onnx(model.graph, opset)
    except Exception as err:  # noqa: BLE001 - any converter failure becomes one error naming the node
        op, node = importer.current or ("?", "?")
        raise ImporterError(f"{source}: cannot import op {op} at node {node}: "
                            f"{type(err).__name__}: {_first_line(err)}") from None
