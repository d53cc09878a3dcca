"""Write DeePMD-kit LMDB datasets for the tests (numdp.io.lmdb_system gives the layout): NumPy,
lmdb and msgpack only, so that tools/make_lmdb_fixtures.py runs it beside DeePMD-kit."""
from __future__ import annotations

import pathlib

import lmdb
import msgpack
import numpy as np


def encode(arr) -> dict:
    """An array as DeePMD-kit's LMDB frames store it (msgpack-numpy's map)."""
    arr = np.asarray(arr)
    return {"nd": None, "type": str(arr.dtype), "kind": "", "shape": list(arr.shape), "data": arr.tobytes()}


def write_lmdb(path, frames: list[dict], meta: dict | None = None, fmt: str = "012d") -> pathlib.Path:
    """Write `frames` (maps of name -> array or plain value; arrays encoded) to a new LMDB dataset
    at `path` with metadata nframes, frame_idx_fmt and `meta`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=64 << 20)
    try:
        with env.begin(write=True) as txn:
            head = {"nframes": len(frames), "frame_idx_fmt": fmt, **(meta or {})}
            txn.put(b"__metadata__", msgpack.packb(head, use_bin_type=True))
            for i, frame in enumerate(frames):
                record = {k: encode(v) if isinstance(v, np.ndarray) else v for k, v in frame.items()}
                txn.put(format(i, fmt).encode(), msgpack.packb(record, use_bin_type=True))
    finally:
        env.close()
    return path
