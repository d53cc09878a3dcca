"""Read the pickle inside a PyTorch zip archive (`torch.save`, `torch.jit.save`) without torch.

A PyTorch archive is a zip file whose members all lie under one top folder `<prefix>/`:

- `<prefix>/data.pkl`: a pickle (protocol 2) of the saved object. A tensor is pickled as a call
  of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`
  whose storage is a *persistent id* `("storage", <torch.XStorage>, key, location, numel)`;
- `<prefix>/data/<key>`: the raw bytes of each storage, `numel` items of the storage's dtype in
  the byte order of `<prefix>/byteorder` ("little" when absent);
- a TorchScript archive (`torch.jit.save`) adds `<prefix>/code/` (the compiled Python of its
  module classes), `<prefix>/constants.pkl` and possibly `<prefix>/extra/`. Its data.pkl holds
  the module tree: each module is an object of class `__torch__.<module>.<Class>` whose
  attribute dict is given to `__setstate__`.

The unpickler here never imports or calls anything the file names: `find_class` answers a short
allow list (OrderedDict, the tensor and storage rebuilders, TorchScript's list/type-tag helpers)
and maps every `__torch__.*` class to a `ScriptObject` record; any other global is refused.
Tensors come back as numpy arrays (copies).
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, one_line

# torch storage class name -> numpy item type (byte order added from the archive)
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "b1",
}


class ForbiddenGlobal(Exception):
    """data.pkl asked for a Python global outside the allow list."""


class UnsupportedStorage(Exception):
    """A tensor storage type without a numpy dtype here (bfloat16, complex, quantised)."""


class ScriptObject:
    """A TorchScript module or class instance from data.pkl: `torch_class` ("__torch__.a.b.C",
    with TorchScript's `___torch_mangle_N` parts kept) and `state` (what `__setstate__` got,
    normally the attribute dict)."""

    torch_class = "__torch__"

    def __init__(self, *args):
        self.state: Any = args or None

    def __setstate__(self, state):
        self.state = state

    @property
    def class_name(self) -> str:
        """The class name without module path, e.g. "EnergyModel"."""
        return self.torch_class.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"<{self.torch_class}>"


@dataclass(frozen=True)
class _StorageType:
    name: str


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> np.ndarray:
    """Tensor of shape `size` with element strides `stride` starting at item `offset` of the
    storage (a 1-D numpy array), as a fresh contiguous array."""
    if not isinstance(storage, np.ndarray):
        raise ValueError("a tensor without a storage")
    size = tuple(int(n) for n in size)
    stride = tuple(int(s) for s in stride)
    offset = int(offset)
    if len(size) != len(stride) or any(n < 0 for n in size) or any(s < 0 for s in stride) or offset < 0:
        raise ValueError(f"bad tensor layout size={size} stride={stride} offset={offset}")
    if any(n == 0 for n in size):
        return np.empty(size, dtype=storage.dtype.newbyteorder("="))
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise ValueError(f"tensor of size {size} at offset {offset} runs past its storage of {storage.size} items")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * storage.itemsize for s in stride), writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")  # a copy; keeps 0-d


def _rebuild_parameter(data, *_unused):
    return data


def _restore_type_tag(value, _type_str):
    return value


def _identity(value):
    return value


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    ("torch.jit._pickle", "build_intlist"): _identity,
    ("torch.jit._pickle", "build_doublelist"): _identity,
    ("torch.jit._pickle", "build_boollist"): _identity,
    ("torch.jit._pickle", "build_tensorlist"): _identity,
}


class _Unpickler(pickle.Unpickler):
    """Restricted unpickler: see the module docstring."""

    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._order = zf, prefix, "<" if byteorder == "little" else ">"
        self._storages: dict[str, np.ndarray] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name.endswith("Storage"):
            raise UnsupportedStorage(name)
        if module == "__torch__" or module.startswith("__torch__."):
            full = f"{module}.{name}"
            if full not in self._classes:
                self._classes[full] = type(name, (ScriptObject,), {"torch_class": full})
            return self._classes[full]
        raise ForbiddenGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ValueError(f"unknown persistent id {str(pid)[:80]}")
        _, stype, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            dtype = np.dtype(self._order + STORAGE_DTYPES[stype.name])
            raw = self._zf.read(f"{self._prefix}/data/{key}")
            if len(raw) != int(numel) * dtype.itemsize:
                raise ValueError(f"storage data/{key} holds {len(raw)} bytes, expected {numel} x {dtype.itemsize}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype)
        return self._storages[key]


@dataclass
class TorchArchive:
    """The unpickled data.pkl of a PyTorch archive; `scripted` for a TorchScript archive."""

    root: Any
    scripted: bool


def is_torch_archive(path: Path) -> bool:
    """True when `path` is a zip file with a `<prefix>/data.pkl` member under its one top folder."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            return _prefix(zf.namelist()) is not None
    except (OSError, zipfile.BadZipFile):
        return False


def _prefix(names: list[str]) -> str | None:
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1:
        return None
    top = tops.pop()
    return top if f"{top}/data.pkl" in names else None


def read_torch_archive(path) -> TorchArchive:
    """Unpickle the data.pkl of the PyTorch archive `path`; InputError (one line, naming the file)
    when it is not one, is damaged, or asks for a global outside the allow list."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            prefix = _prefix(names)
            if prefix is None:
                raise InputError(f"{path}: a zip file but not a PyTorch archive (no <folder>/data.pkl member)")
            order = "little"
            if f"{prefix}/byteorder" in names:
                order = zf.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
                if order not in ("little", "big"):
                    raise InputError(f"{path}: PyTorch archive with unknown byte order '{order[:20]}'")
            scripted = f"{prefix}/constants.pkl" in names or any(n.startswith(f"{prefix}/code/") for n in names)
            root = _Unpickler(zf.read(f"{prefix}/data.pkl"), zf, prefix, order).load()
    except InputError:
        raise
    except ForbiddenGlobal as exc:
        raise InputError(f"{path}: refused: its data.pkl asks for the Python object '{exc}', which no "
                         f"DeePMD-kit model file needs (numdp never runs code from a model file)") from None
    except UnsupportedStorage as exc:
        raise InputError(f"{path}: holds torch.{exc} tensors, which numdp does not read "
                         f"(float64, float32, float16 and integer tensors only)") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise InputError(f"{path}: damaged zip archive ({one_line(exc)})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any failure inside a foreign pickle is a bad file
        raise InputError(f"{path}: damaged PyTorch archive, data.pkl cannot be read "
                         f"({type(exc).__name__}: {one_line(exc)})") from None
    return TorchArchive(root=root, scripted=scripted)
