"""ONNX models made static before import: the input shape fixed, shape subgraphs folded to constants.

Real exported models compute shapes at run time (``Shape -> Gather -> Concat -> Reshape``,
``Range``, ``ConstantOfShape``...). Once the user fixes the input shape those subgraphs are
constants, but TVM's importer sees tensors where it needs shapes and fails ("Reshape requires the
input new shape to be Shape", an ``AssertionError`` from ``emit_te``). :func:`make_static` does
what an ONNX simplifier does, with nothing but the ``onnx`` package:

1. the graph input's dynamic dimensions (``-1``, ``?``, named) take the user's values, and a
   static one that differs is refused;
2. shapes are inferred (``onnx.shape_inference``, with data propagation);
3. every node whose value is known becomes an initializer: ``Shape``/``Size`` of a tensor of known
   shape, and any deterministic node whose inputs are all constants (evaluated by
   ``onnx.reference``), up to :data:`MAX_FOLDED` elements;
4. 2-3 repeat until nothing changes (a folded ``Reshape`` shape makes the next ``Shape`` static).

Nodes are only ever replaced by the values they compute, so the model's function is unchanged.
"""
from __future__ import annotations

import numpy as np

MAX_FOLDED = 1 << 22  # elements: larger constant results stay nodes (folding would bloat the model)
_NEVER = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
          "If", "Loop", "Scan"}


def input_dims(model) -> tuple[str, tuple]:
    """(name, dims) of the model's one graph input (dims: ints, ``None`` where dynamic)."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"expected one input tensor, got {len(inputs)} ({', '.join(i.name for i in inputs)})")
    dims = inputs[0].type.tensor_type.shape.dim
    return inputs[0].name, tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)


def shape_text(dims) -> str:
    """``(?, 3, ?, ?)``: a shape with its dynamic dimensions shown as ``?``."""
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def fix_input_shape(model, shape: tuple[int, ...]) -> None:
    """Set the graph input's dimensions to ``shape`` (in place); dynamic ones take any value."""
    name, dims = input_dims(model)
    if len(dims) != len(shape) or any(d is not None and d != s for d, s in zip(dims, shape)):
        raise ValueError(f"input_shape {tuple(shape)} does not match the model's input {name} of shape "
                         f"{shape_text(dims)} (? = dynamic: any value)")
    graph_input = next(i for i in model.graph.input if i.name == name)
    for dim, value in zip(graph_input.type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = int(value)


def _static_shapes(model) -> dict[str, tuple[int, ...]]:
    import onnx  # noqa: PLC0415

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = info.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[info.name] = tuple(int(d.dim_value) for d in t.shape.dim)
    return shapes


def _shape_value(node, shape: tuple[int, ...]) -> np.ndarray:
    """What ``Shape`` (with its opset-15 ``start``/``end``) or ``Size`` returns for ``shape``."""
    if node.op_type == "Size":
        return np.array(int(np.prod(shape)), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.array(shape[slice(start, end)], dtype=np.int64)


def _evaluate(node, values: dict, opset) -> list[np.ndarray] | None:
    """The outputs of one node whose inputs are all known (``None`` if onnx.reference cannot run it)."""
    import onnx  # noqa: PLC0415
    from onnx import helper  # noqa: PLC0415
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

    inputs = [n for n in node.input if n]
    graph = helper.make_graph(
        [node], "fold", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(values[n].dtype),
                                                        values[n].shape) for n in inputs],
        [helper.make_empty_tensor_value_info(n) for n in node.output if n])
    one = helper.make_model(graph, opset_imports=list(opset), ir_version=onnx.IR_VERSION)
    try:
        return ReferenceEvaluator(one).run(None, {n: values[n] for n in inputs})
    except Exception:  # noqa: BLE001 - an op the reference cannot run is simply left in the graph
        return None


def make_static(model, shape: tuple[int, ...], max_rounds: int = 20):
    """A copy of ``model`` with its input fixed to ``shape`` and every computable value folded.
    Returns ``(model, folded)``: the new model and how many nodes became constants."""
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    model = onnx.ModelProto.FromString(model.SerializeToString())
    fix_input_shape(model, shape)
    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    folded = 0
    for _ in range(max_rounds):
        shapes = _static_shapes(model)
        changed = False
        keep = []
        for node in graph.node:
            result = None
            if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
                result = [_shape_value(node, shapes[node.input[0]])]
            elif (node.domain in ("", "ai.onnx") and node.op_type not in _NEVER
                  and all(n in values for n in node.input if n)):
                result = _evaluate(node, values, model.opset_import)
            if result is None or any(np.asarray(r).size > MAX_FOLDED for r in result) or \
                    any(n in outputs for n in node.output):
                keep.append(node)
                continue
            for name, value in zip(node.output, result):
                if name:
                    values[name] = np.asarray(value)
                    graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            folded += 1
            changed = True
        if not changed:
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {n for node in graph.node for n in node.input} | outputs
    kept_init = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_init)
    names = {i.name for i in kept_init}
    kept_inputs = [i for i in graph.input if i.name not in values or i.name in names]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    del graph.value_info[:]
    return model, folded
