"""Read DeePMD-kit's TensorFlow frozen models (`.pb`, se_e2_a + energy fitting) without TensorFlow.

A frozen model is a serialised TensorFlow GraphDef (Protocol Buffers, numdp.io.protobuf) whose
trained variables became `Const` nodes.  The messages and fields read (TensorFlow's
graph.proto, node_def.proto, attr_value.proto, tensor.proto, tensor_shape.proto):

    GraphDef     node = 1 (NodeDef, repeated)
    NodeDef      name = 1, op = 2, attr = 5 (map entry: key = 1, value = 2 AttrValue)
    AttrValue    tensor = 8 (TensorProto), the attribute "value" of a Const node
    TensorProto  dtype = 1, tensor_shape = 2, tensor_content = 4 (raw little-endian values), or
                 float_val = 5, double_val = 6, int_val = 7, string_val = 8, int64_val = 10,
                 bool_val = 11 (fewer values than the shape holds: the last one repeats)
    TensorShapeProto  dim = 2 (Dim: size = 1)

The nodes DeePMD-kit's TensorFlow backend writes, and what numdp makes of them (the module paths
of numdp.io.pt_read, which builds the model through the `.dp` reader, so every format shares
every check):

    train_attr/training_script               JSON whose "model" is the model section
    model_attr/tmap                          "O H": the type map (when the JSON has none)
    model_attr/model_type                    "ener" (others refused)
    descrpt_attr/rcut, descrpt_attr/sel      the graph's cutoff and sel (they override the JSON's)
    descrpt_attr/t_avg, t_std (nt, nnei*4)   davg, dstd
    filter_type_all/{matrix,bias,idt}_L_J    embedding net of neighbour type J, layer L (from 1):
                                             type_one_side
    filter_type_I/{matrix,bias,idt}_L_J      embedding net of centre type I, neighbour type J
    layer_L_type_T/{matrix,bias,idt}         fitting net of type T, hidden layer L (from 0)
    final_layer_type_T/{matrix,bias}         its output layer
    fitting_attr/t_bias_atom_e (nt,)         bias_atom_e (graphs of DeePMD-kit < 2.2 have none:
                                             their bias is inside final_layer's, so 0)
    fitting_attr/dfparam, daparam            numb_fparam, numb_aparam (override the JSON's)
    fitting_attr/t_fparam_avg, t_fparam_istd (numb_fparam,)  fparam_avg, fparam_inv_std
    fitting_attr/t_aparam_avg, t_aparam_istd (numb_aparam,)  aparam_avg, aparam_inv_std
    model_attr/[model_attr/]t_out_bias, t_out_std (1, nt, 1)   out_bias, out_std (written by
                                             DeePMD-kit 3's conversion from other backends)
    train_attr/min_nbor_dist                 recorded minimum neighbour distance

A compressed graph (`dp --tf compress`: TabulateFusion ops) is refused: numdp compresses the
uncompressed model itself (`numdp compress`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.params import ModelParams
from . import protobuf as pb
from .pt_read import ATOMIC, FIT, SEA, WHAT, refuse, check_model_section, params_from_torch

MALFORMED = "malformed DeePMD-kit TensorFlow model"

# TensorFlow DataType -> numpy dtype and the TensorProto field of its listed values
_DTYPES = {1: (np.float32, 5), 2: (np.float64, 6), 3: (np.int32, 7), 9: (np.int64, 10),
           10: (np.bool_, 11), 7: (None, 8)}
_EMBED = re.compile(r"filter_type_(all|\d+)/(matrix|bias|idt)_(\d+)_(\d+)")
_FITTING = re.compile(r"(?:layer_(\d+)|(final)_layer)_type_(\d+)/(matrix|bias|idt)")


def looks_like_graph(head: bytes) -> bool:
    """Whether `head` (a file's first bytes) can start a GraphDef: field 1 (node, length-delimited)
    whose message starts with field 1 (the node's name, length-delimited)."""
    if len(head) < 4 or head[0] != 0x0A:
        return False
    try:
        _, pos = pb.varint(memoryview(head), 1)
    except ValueError:
        return False
    return pos < len(head) and head[pos] == 0x0A


class Graph:
    """The nodes of a GraphDef: every node's op, and the TensorProto bytes of every Const."""

    def __init__(self, data: bytes):
        self.ops: dict[str, str] = {}
        self._const: dict[str, memoryview] = {}
        for number, wire, node in pb.fields(memoryview(data)):
            if number != 1 or wire != pb.BYTES:
                continue
            name = op = None
            value = None
            for f, w, v in pb.fields(node):
                if f == 1 and w == pb.BYTES:
                    name = bytes(v).decode()
                elif f == 2 and w == pb.BYTES:
                    op = bytes(v).decode()
                elif f == 5 and w == pb.BYTES and value is None:
                    key, attr = None, None
                    for ef, ew, ev in pb.fields(v):
                        if ef == 1 and ew == pb.BYTES:
                            key = bytes(ev).decode()
                        elif ef == 2 and ew == pb.BYTES:
                            attr = ev
                    if key == "value" and attr is not None:
                        value = pb.first(attr, 8, pb.BYTES)   # AttrValue.tensor
            if name is None or op is None:
                raise ValueError("a node without a name or an op")
            self.ops[name] = op
            if op == "Const" and value is not None:
                self._const[name] = value

    def names(self) -> list[str]:
        """Names of the Const nodes."""
        return list(self._const)

    def has(self, name: str) -> bool:
        return name in self._const

    def array(self, name: str) -> np.ndarray | list[bytes]:
        """The value of Const node `name`: an array, or a list of byte strings for a string tensor
        (shape ignored)."""
        return _tensor(self._const[name])


def _tensor(buf: memoryview):
    """Decode a TensorProto."""
    dtype_code, shape, content = 1, [], None
    listed: dict[int, list] = {}
    for f, w, v in pb.fields(buf):
        if f == 1 and w == pb.VARINT:
            dtype_code = v
        elif f == 2 and w == pb.BYTES:
            for df, dw, dv in pb.fields(v):
                if df == 2 and dw == pb.BYTES:
                    shape.append(pb.signed(pb.first(dv, 1, pb.VARINT, 0)))   # Dim.size
        elif f == 4 and w == pb.BYTES:
            content = v
        elif f in (5, 6, 7, 8, 10, 11):
            listed.setdefault(f, []).append((w, v))
    if dtype_code not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype code {dtype_code}")
    dtype, field = _DTYPES[dtype_code]
    if dtype is None:  # strings
        return [bytes(v) for w, v in listed.get(8, [])]
    dtype = np.dtype(dtype).newbyteorder("<")
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=dtype)
    else:
        arr = _listed(listed.get(field, []), dtype)
        if 0 < arr.size < count:  # TensorFlow's shorthand: the last value fills the tensor
            arr = np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype=arr.dtype)])
        elif arr.size == 0:
            arr = np.zeros(count, dtype=dtype)
    if arr.size != count:
        raise ValueError(f"a tensor of shape {shape} holds {arr.size} values")
    return arr.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _listed(items: list, dtype: np.dtype) -> np.ndarray:
    """The values of a repeated scalar field, packed (wire type 2) or not."""
    out = []
    for wire, value in items:
        if wire == pb.BYTES:
            if dtype.kind == "f":
                out.append(np.frombuffer(value, dtype=dtype))
            else:
                out.append(np.array([pb.signed(x) for x in pb.packed_varints(value)], dtype=np.int64))
        elif dtype.kind == "f":
            width = dtype.itemsize
            out.append(np.frombuffer(value.to_bytes(width, "little"), dtype=dtype))
        else:
            out.append(np.array([pb.signed(value)], dtype=np.int64))
    if not out:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(out).astype(dtype)


def _text(graph: Graph, name: str) -> str | None:
    if not graph.has(name):
        return None
    values = graph.array(name)
    return values[0].decode() if values else ""


def _model_section(graph: Graph, path: Path) -> dict:
    script = _text(graph, "train_attr/training_script")
    if script is None:
        raise InputError(f"{path}: {WHAT}: a TensorFlow graph without DeePMD-kit's train_attr/training_script")
    try:
        jdata = json.loads(script)
    except ValueError:
        raise InputError(f"{path}: {MALFORMED}: its train_attr/training_script is not valid JSON") from None
    model = jdata.get("model") if isinstance(jdata, dict) else None
    if not isinstance(model, dict):
        raise InputError(f"{path}: {MALFORMED}: its train_attr/training_script has no model section")
    return model


def _scalar(graph: Graph, name: str, default=0):
    return np.asarray(graph.array(name)).ravel()[0].item() if graph.has(name) else default


def _tensors(graph: Graph, model: dict, path: Path, names: dict) -> dict:
    """The graph's constants under numdp.io.pt_read's module paths; adjusts `model` to the graph;
    records id(array) -> "node <name>" in `names` for messages."""
    desc, fit = model["descriptor"], model["fitting_net"]
    type_map = model.get("type_map")
    if not type_map:
        tmap = _text(graph, "model_attr/tmap")
        if not tmap:
            raise InputError(f"{path}: {MALFORMED}: no type map (model.type_map, model_attr/tmap)")
        model["type_map"] = type_map = tmap.split()
    nt = len(type_map)
    if graph.has("descrpt_attr/rcut"):
        desc["rcut"] = float(_scalar(graph, "descrpt_attr/rcut"))
    if graph.has("descrpt_attr/sel"):
        desc["sel"] = [int(s) for s in np.asarray(graph.array("descrpt_attr/sel")).ravel()]
    nnei = sum(int(s) for s in desc["sel"])
    out: dict[str, np.ndarray] = {}
    for name, key in (("descrpt_attr/t_avg", "mean"), ("descrpt_attr/t_std", "stddev")):
        if not graph.has(name):
            raise InputError(f"{path}: {MALFORMED}: node {name} is missing")
        arr = graph.array(name)
        if arr.size != nt * nnei * 4:
            raise InputError(f"{path}: {MALFORMED}: {name} has shape {arr.shape}, expected ({nt}, {nnei * 4})")
        out[SEA + key] = arr.reshape(nt, nnei, 4)
        names[id(out[SEA + key])] = f"node {name}"
    one_side = two_side = False
    embed_idt = fit_idt = False
    for name in graph.names():
        m = _EMBED.fullmatch(name)
        if m:
            ti, kind, layer, tj = m.groups()
            one_side |= ti == "all"
            two_side |= ti != "all"
            embed_idt |= kind == "idt"
            k = int(tj) if ti == "all" else int(ti) + int(tj) * nt
            value = graph.array(name)
            value = value.ravel() if kind != "matrix" else value
            out[f"{SEA}filter_layers.networks.{k}.layers.{int(layer) - 1}.{kind}"] = value
            names[id(value)] = f"node {name}"
            continue
        m = _FITTING.fullmatch(name)
        if m:
            layer, final, t, kind = m.groups()
            fit_idt |= kind == "idt"
            index = len(fit["neuron"]) if final else int(layer)
            value = graph.array(name)
            value = value.ravel() if kind != "matrix" else value
            out[f"{FIT}filter_layers.networks.{t}.layers.{index}.{kind}"] = value
            names[id(value)] = f"node {name}"
    if one_side and two_side:
        raise InputError(f"{path}: {MALFORMED}: both one-sided (filter_type_all) and two-sided embedding nets")
    if not one_side and not two_side:
        raise InputError(f"{path}: {MALFORMED}: no embedding net (filter_type_*/matrix_*) in the graph")
    desc["type_one_side"] = one_side
    desc["resnet_dt"] = embed_idt
    fit["resnet_dt"] = fit_idt
    n_embed = nt if one_side else nt * nt
    for k in range(n_embed):
        if f"{SEA}filter_layers.networks.{k}.layers.0.matrix" not in out:
            pair = f"neighbour type {k}" if one_side else f"centre type {k % nt}, neighbour type {k // nt}"
            raise InputError(f"{path}: embedding net of {pair} is missing (numdp needs every net, also "
                             f"those of excluded type pairs, whose padding slots still use it; a graph "
                             f"of DeePMD-kit's TensorFlow backend with exclude_types leaves them out)")
    for t in range(nt):
        for name in [f"layer_{l}_type_{t}/matrix" for l in range(len(fit["neuron"]))] + [f"final_layer_type_{t}/matrix"]:
            if not graph.has(name):
                raise InputError(f"{path}: {MALFORMED}: node {name} (fitting net of type {t}, "
                                 f"{type_map[t]}) is missing")
    bias = graph.array("fitting_attr/t_bias_atom_e") if graph.has("fitting_attr/t_bias_atom_e") else np.zeros(nt)
    out[FIT + "bias_atom_e"] = np.asarray(bias, dtype=np.float64).reshape(nt, 1)
    for key, default in (("t_out_bias", 0.0), ("t_out_std", 1.0)):
        name = next((n for n in (f"model_attr/{key}", f"model_attr/model_attr/{key}") if graph.has(n)), None)
        value = graph.array(name) if name else np.full((1, nt, 1), default)
        out[ATOMIC + key[2:]] = np.asarray(value, dtype=np.float64).reshape(1, nt, 1)
    for what in ("fparam", "aparam"):   # the graph's numbers override the JSON's
        n = fit[f"numb_{what}"] = int(_scalar(graph, f"fitting_attr/d{what}"))
        if what == "aparam" and fit.get("use_aparam_as_mask"):
            continue   # no statistics in the graph; the .dp reader refuses the mask
        for stat, node in (("avg", f"fitting_attr/t_{what}_avg"), ("inv_std", f"fitting_attr/t_{what}_istd")):
            if n:
                if not graph.has(node):
                    raise InputError(f"{path}: {MALFORMED}: node {node} is missing (numb_{what} {n}, "
                                     f"fitting_attr/d{what})")
                out[f"{FIT}{what}_{stat}"] = np.asarray(graph.array(node), dtype=np.float64).ravel()
                names[id(out[f"{FIT}{what}_{stat}"])] = f"node {node}"
    if graph.has("train_attr/min_nbor_dist"):
        out["min_nbor_dist"] = np.asarray(graph.array("train_attr/min_nbor_dist"), dtype=np.float64)
    return out


def read_pb(path) -> ModelParams:
    """Load a DeePMD-kit TensorFlow frozen model (.pb), whatever its name."""
    path = Path(path)
    try:
        graph = Graph(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {MALFORMED}: not a readable TensorFlow GraphDef ({exc})") from None
    tabulated = sorted({op for op in graph.ops.values() if op.startswith("TabulateFusion")})
    if tabulated:
        raise refuse(path, f"a compressed model ({', '.join(tabulated)}: dp compress); give numdp the "
                            f"uncompressed model and compress it with numdp compress")
    try:
        model = _model_section(graph, path)
        mtype = _text(graph, "model_attr/model_type")
        if mtype not in (None, "ener", "original_model"):
            raise refuse(path, f"a '{mtype}' model")
        if "type_embedding" in model:
            raise refuse(path, "a type embedding (type_embedding)")
        check_model_section(model, path)   # before the nodes are read as se_e2_a's
        names: dict = {}
        tensors = _tensors(graph, model, path, names)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: {MALFORMED} ({type(exc).__name__}: {exc})") from None
    return params_from_torch(model, tensors, path, "deepmd-kit tensorflow frozen model", kind="TensorFlow",
                             names=names)
