"""Relax rewrite: every conv2d / linear with a constant weight becomes a call of our own kernel.

:func:`find_layers` reads the ``main`` function and returns one :class:`Layer` per conv2d or
matmul whose weight is a constant, together with the epilogue it can absorb: the chain
``op -> add(bias const) -> add(residual tensor) -> relu | clip(0, 6) | silu | hardswish``, where
each step is optional and every intermediate value has exactly one user (SiLU written as
``y * sigmoid(y)`` and hardswish as ``y * clip(y + 3, 0, 6) / 6`` are the two-user steps).
:func:`apply_plan` replaces each chain by one ``call_tir`` to the kernel the plan chose for that layer (see ``plan.py``), built by
``kernels.build_kernel``. This module only rewrites; scheduling is the next stage
(``schedules.schedule_module``).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .layer import Layer

CONV2D = tvm.ir.Op.get("relax.nn.conv2d")
MATMUL = tvm.ir.Op.get("relax.matmul")
ADD = tvm.ir.Op.get("relax.add")
SUBTRACT = tvm.ir.Op.get("relax.subtract")
MULTIPLY = tvm.ir.Op.get("relax.multiply")
DIVIDE = tvm.ir.Op.get("relax.divide")
RELU = tvm.ir.Op.get("relax.nn.relu")
CLIP = tvm.ir.Op.get("relax.clip")
SILU = tvm.ir.Op.get("relax.nn.silu")
SIGMOID = tvm.ir.Op.get("relax.sigmoid")


def _const_array(expr) -> np.ndarray | None:
    if isinstance(expr, tvm.ir.expr.Constant):
        return expr.value.numpy()
    return None


def static_shape(expr) -> tuple[int, ...] | None:
    """The static shape of a tensor expression (``None``: not a tensor, or symbolic)."""
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return tuple(int(d) for d in ty.shape)
    except TypeError:  # symbolic dimension
        return None


def _dtype(expr) -> str | None:
    ty = expr.ty
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def _as_channel_vector(arr: np.ndarray, channels: int, op: str) -> np.ndarray | None:
    """``arr`` as a per-output-channel vector if it broadcasts along the channel axis only."""
    if arr.size != channels:
        return None
    if op == "linear":  # (M,), (1, M), (1, 1, M)...: along the last axis
        ok = arr.ndim >= 1 and arr.shape[-1] == channels
    else:
        ok = arr.shape in [(channels,), (channels, 1, 1), (1, channels, 1, 1)]
    return arr.reshape(channels).astype("float32") if ok else None


def _bindings(func: relax.Function) -> list[relax.VarBinding]:
    out = []
    for block in func.body.blocks:
        out.extend(b for b in block.bindings if isinstance(b, relax.VarBinding))
    return out


def _head_layer(binding: relax.VarBinding, index: int) -> Layer | None:
    call = binding.value
    if not isinstance(call, relax.Call) or _dtype(binding.var) != "float32":
        return None
    if call.op == CONV2D:
        weight = _const_array(call.args[1])
        a = call.attrs
        if weight is None or weight.ndim != 4 or (str(a.data_layout), str(a.kernel_layout),
                                                  str(a.out_layout)) != ("NCHW", "OIHW", "NCHW"):
            return None
        in_shape, out_shape = static_shape(call.args[0]), static_shape(binding.var)
        if in_shape is None or out_shape is None:
            return None
        attrs = {"stride": tuple(int(s) for s in a.strides),
                 "padding": tuple(int(p) for p in a.padding),
                 "dilation": tuple(int(d) for d in a.dilation), "groups": int(a.groups)}
        return Layer(index, "conv2d", binding.var, binding.var, [binding.var], call.args[0],
                     weight.astype("float32"), in_shape, out_shape, attrs)
    if call.op == MATMUL:
        weight = _const_array(call.args[1])
        in_shape, out_shape = static_shape(call.args[0]), static_shape(binding.var)
        if weight is None or weight.ndim != 2 or in_shape is None or len(in_shape) < 2 or out_shape is None:
            return None
        rows = int(np.prod(in_shape[:-1]))  # (..., K) x (K, M): a linear over the leading dims
        return Layer(index, "linear", binding.var, binding.var, [binding.var], call.args[0],
                     np.ascontiguousarray(weight.T).astype("float32"), (rows, in_shape[-1]),
                     (rows, out_shape[-1]), graph_shape=out_shape if len(in_shape) > 2 else None)
    return None


def _fold_affine(layer: Layer, op, const: np.ndarray, const_first: bool) -> bool:
    """Fold ``y op c`` (c per output channel) into the layer's weight and bias."""
    vec = _as_channel_vector(const, layer.out_shape[1], layer.op)
    if vec is None or (const_first and op in (SUBTRACT, DIVIDE)):
        return False
    bias = layer.bias_or_zeros()
    if op in (ADD, SUBTRACT):
        layer.bias = bias + vec if op == ADD else bias - vec
        return True
    scale = vec if op == MULTIPLY else 1.0 / vec
    if not np.all(np.isfinite(scale)):
        return False
    layer.weight = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    layer.bias = None if layer.bias is None else layer.bias * scale
    return True


def _extend(layer: Layer, binding: relax.VarBinding) -> bool:
    """Absorb ``binding`` into ``layer``'s epilogue if it is the next legal step of the chain.

    Order of the epilogue: per-channel affine ops (bias, batch norm) -> residual add -> activation.
    """
    call = binding.value
    if not isinstance(call, relax.Call) or static_shape(binding.var) != layer.graph_out_shape:
        return False
    affine_open = layer.act == "none" and layer.residual is None
    if call.op in (ADD, SUBTRACT, MULTIPLY, DIVIDE) and layer.act == "none":
        const_first = not call.args[0].same_as(layer.tail)
        other = call.args[0] if const_first else call.args[1]
        if other.same_as(layer.tail):  # y + y: not an epilogue of y
            return False
        arr = _const_array(other)
        if arr is not None:
            if not (affine_open and _fold_affine(layer, call.op, arr, const_first)):
                return False
        elif call.op == ADD and layer.residual is None and static_shape(other) == layer.graph_out_shape \
                and _dtype(other) == "float32":
            layer.residual = other
        else:
            return False
    elif call.op == RELU and layer.act == "none":
        layer.act = "relu"
    elif call.op == SILU and layer.act == "none":
        layer.act = "silu"
    elif call.op == CLIP and layer.act == "none":
        lo, hi = (float(v.value) for v in call.args[1:3])
        if (lo, hi) != (0.0, 6.0):
            return False
        layer.act = "relu6"
    else:
        return False
    layer.tail = binding.var
    layer.absorbed.append(binding.var)
    return True


def _silu_pair(layer: Layer, users: dict) -> tuple | None:
    """The two bindings ``s = sigmoid(y); out = y * s`` computing SiLU of the layer's output (as
    ONNX exports it: ``y`` has two users), or ``None``."""
    found = users.get(layer.tail, [])
    if layer.act != "none" or len(found) != 2:
        return None
    sig = next((b for b in found if isinstance(b.value, relax.Call) and b.value.op == SIGMOID), None)
    mul = next((b for b in found if b is not sig), None)
    if sig is None or mul is None or not isinstance(mul.value, relax.Call) or mul.value.op != MULTIPLY:
        return None
    a, b = mul.value.args
    if not ((a.same_as(layer.tail) and b.same_as(sig.var)) or (b.same_as(layer.tail) and a.same_as(sig.var))):
        return None
    if len(users.get(sig.var, [])) != 1 or static_shape(mul.var) != layer.graph_out_shape:
        return None
    return sig, mul


def _scalar(expr) -> float | None:
    """The value of a scalar (or one-element) constant, or ``None``."""
    arr = _const_array(expr)
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


def _only_user(var, users: dict, op) -> relax.VarBinding | None:
    """The single binding reading ``var``, if it calls ``op``."""
    found = users.get(var, [])
    if len(found) == 1 and isinstance(found[0].value, relax.Call) and found[0].value.op == op:
        return found[0]
    return None


def _clip_run(var, users: dict) -> list:
    """The single-user clips that follow ``var`` one after another (torch's export writes
    ``clamp(x, 0, 6)`` as a clip to [0, inf) and then one to (-inf, 6])."""
    run = []
    while (clip := _only_user(var, users, CLIP)) is not None:
        run.append(clip)
        var = clip.var
    return run


def _bounds(clips: list) -> tuple[float, float]:
    """The interval a run of clips maps into."""
    lows, highs = zip(*((float(c.value.args[1].value), float(c.value.args[2].value)) for c in clips))
    return max(lows), min(highs)


def _hardswish_chain(layer: Layer, users: dict) -> list | None:
    """The bindings computing hardswish of the layer's output ``y``, ``y * clip(y + 3, 0, 6) / 6``,
    in the two orders importers write it: ``y * (clip(..) / 6)`` (torch, ONNX HardSwish) and
    ``(y * clip(..)) / 6`` (Paddle exports); ``None`` if it is not that. ``y`` has two users."""
    y = layer.tail
    found = users.get(y, [])
    if layer.act != "none" or len(found) != 2:
        return None
    add = next((b for b in found if isinstance(b.value, relax.Call) and b.value.op == ADD
                and b.value.args[0].same_as(y) and _scalar(b.value.args[1]) == 3.0), None)
    mul = next((b for b in found if b is not add), None)
    if add is None or mul is None or not isinstance(mul.value, relax.Call) or mul.value.op != MULTIPLY:
        return None
    clips = _clip_run(add.var, users)
    if not clips or _bounds(clips) != (0.0, 6.0):
        return None
    clip = clips[-1]
    div = _only_user(clip.var, users, DIVIDE)
    if div is not None and _scalar(div.value.args[1]) == 6.0 and div.value.args[0].same_as(clip.var):
        if _only_user(div.var, users, MULTIPLY) is not mul:
            return None
        chain, factor = [add, *clips, div, mul], div.var  # y * (clip / 6)
    elif len(users.get(clip.var, [])) == 1 and users[clip.var][0] is mul:
        div = _only_user(mul.var, users, DIVIDE)
        if div is None or _scalar(div.value.args[1]) != 6.0:
            return None
        chain, factor = [add, *clips, mul, div], clip.var  # (y * clip) / 6
    else:
        return None
    if not any(a.same_as(factor) for a in mul.value.args) or not any(a.same_as(y) for a in mul.value.args):
        return None
    if static_shape(chain[-1].var) != layer.graph_out_shape:
        return None
    return chain


def find_layers(mod: tvm.IRModule, names: list[str] | None = None) -> list[Layer]:
    """The conv2d/linear layers of ``mod["main"]`` with their fusable epilogues, in graph order."""
    func = mod["main"]
    bindings = _bindings(func)
    users: dict = {}  # var -> bindings reading it (a DataflowVar is never read outside its block)
    for b in bindings:
        for var in relax.analysis.free_vars(b.value):
            users.setdefault(var, []).append(b)
    layers: list[Layer] = []
    claimed: set = set()  # a binding joins at most one chain (two convs meet at a residual add)
    for binding in bindings:
        layer = _head_layer(binding, len(layers))
        if layer is None:
            continue
        while isinstance(layer.tail, relax.DataflowVar):
            if (len(users.get(layer.tail, [])) == 1 and users[layer.tail][0].var not in claimed
                    and _extend(layer, users[layer.tail][0])):
                continue
            pair = _silu_pair(layer, users)
            act = "silu"
            if pair is None:
                pair, act = _hardswish_chain(layer, users), "hardswish"
            if pair is None or any(b.var in claimed for b in pair):
                break
            layer.act = act
            layer.absorbed += [b.var for b in pair]
            layer.tail = pair[-1].var
        claimed.update(layer.absorbed)
        layers.append(layer)
    for layer in layers:
        if names is not None and layer.index < len(names) and len(names) == len(layers):
            layer.name = names[layer.index]
        else:
            layer.name = f"{layer.op}_{layer.index}"
    return layers


@relax.expr_functor.mutator
class _ReplaceLayers(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.replacements: dict = {}  # tail var -> (GlobalVar, args, Layer, kernels.Kernel, index)
        self.absorbed: set = set()
        self.order: list[int] = []  # the layer index of each kernel call, in emission order

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        var = binding.var
        if var in self.replacements:
            gv, args, layer, kernel, index = self.replacements[var]
            self.order.append(index)
            args = [self.visit_expr(a) for a in args]
            emit = self.builder_.emit if isinstance(var, relax.DataflowVar) else self.builder_.emit_output
            in_shape, out_shape = kernel.shapes(layer)
            out_ty = relax.TensorType(list(out_shape), "float32")
            if layer.graph_shape is None and kernel.view is None:
                self.set_var_remap(var, emit(relax.call_tir(gv, args, out_ty), name_hint=var.name))
                return
            # An N-D matmul: the kernel sees (rows, K) and gives (rows, M); a kernel with a view
            # (the pointwise conv: flattened maps) sees its own shapes. Reshape (a view) around it.
            args[0] = self.builder_.emit(relax.op.reshape(args[0], in_shape))
            if layer.residual is not None:
                args[-1] = self.builder_.emit(relax.op.reshape(args[-1], out_shape))
            flat = self.builder_.emit(relax.call_tir(gv, args, out_ty))
            self.set_var_remap(var, emit(relax.op.reshape(flat, layer.graph_shape or layer.out_shape),
                                         name_hint=var.name))
        elif var in self.absorbed:
            return  # folded into the fused kernel call emitted at the chain's tail
        else:
            super().visit_var_binding_(binding)


def apply_plan(mod: tvm.IRModule, layers: list[Layer], kernels: list) -> tuple[tvm.IRModule, list[int]]:
    """Replace each layer whose plan entry has a kernel by a ``call_tir`` to it. Returns the
    module and the index in ``layers`` of each kernel call in the order the model makes them:
    not the layers' order where a residual's producer must run first (ResNet's downsample
    runs after its block's second conv, before the third that adds it).

    ``kernels[i]`` is a ``kernels.Kernel`` (PrimFunc plus its constant arguments) for
    ``layers[i]``, or ``None`` to leave that layer to TVM's legalisation. The PrimFuncs go in as
    the kernel builder made them (a tuned one already scheduled); the schedule stage schedules
    the rest, with every other PrimFunc of the module.
    """
    mutator = _ReplaceLayers(mod)
    funcs: dict = {}  # kernel key -> GlobalVar, so identical layer shapes share one PrimFunc
    for index, (layer, kernel) in enumerate(zip(layers, kernels)):
        if kernel is None:
            continue
        gv = funcs.get(kernel.key)
        if gv is None:
            # Drop the "main" symbol create_prim_func gives; the module names it after the GlobalVar.
            func = kernel.func.without_attr("global_symbol")
            gv = funcs[kernel.key] = mutator.builder_.add_func(func, kernel.symbol)
            for sub_gv, sub in kernel.subroutines.items():  # the PrimFuncs it calls by GlobalVar
                mutator.builder_.update_func(sub_gv, sub)
        args = [layer.data] + [relax.const(a) for a in kernel.constants]
        if layer.residual is not None:
            args.append(layer.residual)
        if layer.tail in mutator.replacements:
            raise RuntimeError(f"internal: {layer.name} ends where another layer ends")
        mutator.replacements[layer.tail] = (gv, args, layer, kernel, index)
        mutator.absorbed.update(layer.absorbed)
    main_gv = mutator.builder_.get().get_global_var("main")
    mutator.builder_.update_func(main_gv, mutator.visit_expr(mod["main"]))
    out = relax.transform.DeadCodeElimination(["main"])(mutator.builder_.get())
    emitted = _count_calls(out["main"], set(funcs.values()))
    if emitted != len(mutator.replacements):
        raise RuntimeError(f"internal: {len(mutator.replacements)} layers planned, {emitted} "
                           "kernel calls emitted")
    return out, mutator.order


def _count_calls(func: relax.Function, gvs: set) -> int:
    call_tir = tvm.ir.Op.get("relax.call_tir")
    return sum(1 for b in _bindings(func) if isinstance(b.value, relax.Call)
               and b.value.op == call_tir and b.value.args[0] in gvs)
