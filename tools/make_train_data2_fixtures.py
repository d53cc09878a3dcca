"""Make tests/data/train_data2/ (tests/test_sweep_train_data2.py): small awkward training systems
cut from the shared data, and the copper model the label tests start from.

    python tools/make_train_data2_fixtures.py [SHARED_DATA]     # default /work/shared/data

Systems (frames as stored; float32 water, float64 copper and alloy5):
- alloy_noau_a, alloy_noau_b: alloy5 train fcc_300K frames 0-2 and strain frames 0-1 with the Au
  atoms taken out (87 atoms; type_map.raw still lists Au): a type_map type no training atom has.
  Their labels are the 108-atom frames' (only the statistics and the run are compared).
- alloy_full: alloy5 fcc_300K frame 50, all five elements.
- cu_full, cu_e, cu_ef, cu_fv: copper fcc_300K frame 0 with all labels, energy only, no virial,
  no energy.
- w_crlf: water data_3 frames 2-3 with CRLF type.raw (and a trailing blank line) and type_map.raw.

base_cu.h5 is DeePMD-kit 3.2's model of one step on cu_full, converted:
    dp --pt train input.json --skip-neighbor-stat      # the input below, cu_full, numb_steps 1
    dp --pt freeze -c model.ckpt-1.pt -o base.pth
    numdp convert base.pth base_cu.h5
with se_e2_a rcut 4, rcut_smth 1, sel [40], neuron [4, 8], axis_neuron 2, type_one_side false,
fitting [8, 8] resnet_dt, seeds 1 / training 10, batch_size 1 (tests/test_sweep_train_data2.py
`dp_input` writes the same input).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "train_data2"


def read(sysdir: Path):
    arrays = {n.stem: np.load(n) for n in sorted((sysdir / "set.000").glob("*.npy"))}
    types = np.loadtxt(sysdir / "type.raw", dtype=int).ravel()
    return types, (sysdir / "type_map.raw").read_text().split(), arrays


def frames(arrays: dict, idx: list[int], atoms=None, names=None) -> dict:
    """The frames idx of `arrays` (names: those arrays only), the atoms `atoms` (bool mask) only."""
    out = {}
    for k, v in arrays.items():
        if names is not None and k not in names:
            continue
        v = v[idx]
        if atoms is not None and k in ("coord", "force"):
            v = v.reshape(len(idx), -1, 3)[:, atoms].reshape(len(idx), -1)
        out[k] = v
    return out


def write(name: str, types, type_map, arrays: dict) -> Path:
    dst = OUT / name
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "set.000").mkdir(parents=True)
    (dst / "type.raw").write_text("\n".join(map(str, types)) + "\n")
    (dst / "type_map.raw").write_text("\n".join(type_map) + "\n")
    for k, v in arrays.items():
        np.save(dst / "set.000" / f"{k}.npy", v)
    return dst


def main(src: Path) -> None:
    t, m, d = read(src / "alloy5/train/fcc_300K")
    write("alloy_noau_a", t[t != 4], m, frames(d, [0, 1, 2], t != 4))
    write("alloy_full", t, m, frames(d, [50]))
    t2, m2, d2 = read(src / "alloy5/train/strain")
    write("alloy_noau_b", t2[t2 != 4], m2, frames(d2, [0, 1], t2 != 4))
    t, m, d = read(src / "cu/train/fcc_300K")
    write("cu_full", t, m, frames(d, [0]))
    write("cu_e", t, m, frames(d, [0], names=("coord", "box", "energy")))
    write("cu_ef", t, m, frames(d, [0], names=("coord", "box", "energy", "force")))
    write("cu_fv", t, m, frames(d, [0], names=("coord", "box", "force", "virial")))
    t, m, d = read(src / "water/data_3")
    crlf = write("w_crlf", t, m, frames(d, [2, 3]))
    (crlf / "type.raw").write_bytes(("\r\n".join(map(str, t)) + "\r\n\r\n").encode())
    (crlf / "type_map.raw").write_bytes(b"O\r\nH\r\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"))
